"""The page-fault path: signals, write-back round trips, I/O at exit, restart backup,
TLB refill, waiting on transfers, the cleaner and prepaging."""

from __future__ import annotations

import numpy as np
import pytest

from pagingcheck.checks.system import System
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.lib.memory import FREED_PATTERN
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.impl.reference.tables import PageId
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig, RestartVariant
from pagingcheck.model.program import Program
from tests.impl.kernel_workloads import (
    Built,
    booted_extents,
    build,
    fill_program,
    fill_sum,
    kill,
    make_system,
    opened,
    read_word,
    record_events,
    registers,
    resources_all_free,
    reverse_expected,
    reverse_program,
    run_until_spinning,
    spawn,
)

PW = 4


def kernel_of(system: System) -> ReferenceKernel:
    assert isinstance(system.kernel, ReferenceKernel)
    return system.kernel


def drain(system: System) -> None:
    """Complete every pending disk request, oldest first."""
    while system.machine.disk.completable():
        system.apply(("disk", system.machine.disk.completable()[0]))


# -- signals ---------------------------------------------------------------------------------

OFFENDERS = {
    "write to text": ("MOV #5, r1\nSTORE r1, @1\ndone: JMP @done", "protection"),
    "read outside every segment": ("LOAD r1, @100\ndone: JMP @done", "invalid"),
    # the data word decodes (a NOP), but data pages have no execute right
    "jump into data": ("JMP @{data}\ndone: JMP @done", "protection"),
    "illegal instruction": ("", "illegal"),  # text is one zero word: it does not decode
}


@pytest.mark.parametrize("name", sorted(OFFENDERS))
def test_a_bad_access_kills_only_the_offender(name: str) -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=6, kernel_frames=64)
    source, reason = OFFENDERS[name]
    if source:
        offender = build("bad", source, PW, data=(0x0100_0000,))
    else:
        offender = Built(Program("bad", (0x0000_0000,)), {})
    values = (1, 2, 3, 4)
    good = reverse_program(PW, values)
    system = make_system(hardware, [good.program, offender.program], [0, 1])
    events = record_events(system)
    run_until_spinning(system, {1: good.addresses["done"], 2: offender.addresses.get("done", -1)})
    signals = [e for e in events if e.kind == "signal"]
    assert [(e.pid, e.detail) for e in signals] == [(2, reason)]
    assert ("exit", 2) in [(e.kind, e.pid) for e in events]
    assert system.live_pids() == [1]
    for va, value in reverse_expected(good, values).items():
        assert read_word(system, 1, va) == value
    kill(system, 1)
    resources_all_free(system, booted_extents(hardware))


# -- write-back round trip -------------------------------------------------------------------


def test_dirty_pages_are_written_back_and_read_back_intact() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4, kernel_frames=64)
    built = fill_program(PW, 28, 1000, 17, 0)
    system = make_system(hardware, [built.program], [0], KernelConfig(policy="fifo"))
    events = record_events(system)
    run_until_spinning(system, {1: built.addresses["done"]})
    kinds = [e.kind for e in events]
    assert kinds.count("evict_dirty") >= 3 and kinds.count("writeback") >= 3
    assert registers(system, 1).regs[0] == fill_sum(28, 1000, 17)
    heap = built.addresses["heap"]
    view = system.kernel.view()
    homes = {p.home.where for p in view.process(1).pages if p.kind == "heap"}  # type: ignore[union-attr]
    assert "slot" in homes  # some heap pages now live on swap only
    for index in range(28):
        assert read_word(system, 1, heap + index, view) == 1000 + 17 * index


# -- termination while I/O is in flight --------------------------------------------------------

TINY = "NOP\nSYS 0"


def test_exit_during_pagein_keeps_the_frame_busy_until_the_read_ends() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=1, kernel_frames=64)
    first = build("first", TINY, PW)
    second = build("second", TINY, PW)
    system = make_system(hardware, [first.program, second.program], [0])
    system.apply(("run", 1))  # faults on its text: a page-in into the only frame
    (request,) = system.machine.disk.pending
    pfn = request.pfn
    assert request.block >= hardware.swap_slots  # text comes from the program's image
    events = kill(system, 1)
    assert "shared_zero" in [e.kind for e in events]
    view = system.kernel.view()
    frame = next(f for f in view.frames if f.pfn == pfn)
    assert frame.status == "busy" and frame.transfer == "read"
    assert pfn not in view.free_frames
    assert spawn(system, second.program) == 2
    system.apply(("run", 2))  # every frame is busy: it waits for the orphaned read
    view = system.kernel.view()
    assert view.process(2).state == "blocked"  # type: ignore[union-attr]
    assert len(system.machine.disk.pending) == 1  # no second transfer into the frame
    completion = system.apply(("disk", 0)).events
    assert ("free_frame", pfn) in [(e.kind, e.pfn) for e in completion]
    assert "ready" in [e.kind for e in completion]
    drain(system)
    while system.kernel.runnable():
        system.apply(("run", 2))
        drain(system)
    assert system.live_pids() == []
    resources_all_free(system, booted_extents(hardware))


WRITER = """
        MOV #{heap}, r1
        MOV #40, r3
loop:   MOV r3, (r1)+
        ADDI r3, #-1
        BNE @loop
done:   JMP @done
"""


def test_exit_during_writeback_frees_frame_and_slot_only_when_the_write_ends() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3, kernel_frames=64)
    built = build("writer", WRITER, PW, heap_pages=10)
    system = make_system(hardware, [built.program], [0], KernelConfig(policy="fifo"))
    for _ in range(500):
        if system.machine.disk.pending and system.machine.disk.pending[0].op == "write":
            break
        if system.kernel.runnable():
            system.apply(("run", 1))
        else:
            system.apply(("disk", 0))
    else:
        raise AssertionError("no dirty page was ever evicted")
    write = system.machine.disk.pending[0]
    before = system.machine.memory.frame(write.pfn)
    kill(system, 1)
    view = system.kernel.view()
    frame = next(f for f in view.frames if f.pfn == write.pfn)
    assert frame.status == "busy" and frame.transfer == "write"
    assert write.pfn not in view.free_frames and write.block not in view.free_slots
    assert np.array_equal(system.machine.memory.frame(write.pfn), before)  # not scrubbed
    system.apply(("disk", 0))
    assert np.array_equal(system.machine.disk.read_block(write.block), before)
    assert np.all(system.machine.memory.frame(write.pfn) == FREED_PATTERN)
    resources_all_free(system, booted_extents(hardware))


# -- restart: backing the faulting instruction up ---------------------------------------------

RESTART_PROGRAMS = {
    "fetch0": "MOV #1, r1\ndone: JMP @done",
    "fetch1": "NOP\nNOP\nNOP\nMOV #5, r1\ndone: JMP @done",
    "fetch2": "NOP\nNOP\nMOV @{data}, @{heap}\ndone: JMP @done",
    "src,dst": (
        "MOV #{data}, r1\nMOV #{heap_end}, r2\nMOV (r1)+, -(r2)\nMOV -(r2), (r1)+\ndone: JMP @done"
    ),
}


@pytest.mark.parametrize("restart", ["precise", "state_register", "decode"])
@pytest.mark.parametrize("tlb_refill", ["hardware", "software"])
def test_backup_restores_the_start_of_the_faulting_instruction_at_every_point(
    restart: RestartVariant, tlb_refill: str
) -> None:
    hardware = HardwareConfig(
        page_words=PW,
        user_frames=8,
        kernel_frames=64,
        restart=restart,
        tlb_refill=tlb_refill,  # type: ignore[arg-type]
    )
    seen: set[str] = set()
    with_effects = 0
    for name, source in RESTART_PROGRAMS.items():
        built = build(name, source, PW, data=(0x0100_0000, 7), heap_pages=1)
        system = make_system(hardware, [built.program], [0])
        for _ in range(60):
            if registers(system, 1).pc == built.addresses["done"]:
                break
            if not system.kernel.runnable():
                drain(system)
                continue
            record = system.apply(("run", 1))
            if record.result is None or record.result.fault is None:
                continue
            start = record.start
            assert start is not None and record.result.fault_point is not None
            seen.add(record.result.fault_point)
            if system.machine.cpu.state != start:
                with_effects += 1
            fault_events = [e for e in record.events if e.kind == "fault"]
            if restart == "decode":
                assert f"point={record.result.fault_point}" in fault_events[0].detail
            drain(system)
            assert registers(system, 1) == start, (name, record.result.fault_point)
        else:
            raise AssertionError(f"{name} never finished")
    assert {"fetch0", "fetch1", "fetch2", "src", "dst"} <= seen
    if restart != "precise":
        assert with_effects >= 2  # the src and dst faults left side effects to undo


def test_software_tlb_refill_keeps_the_cpu_and_loads_the_walked_entry() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4, tlb_refill="software")
    built = build("one", "MOV #1, r1\nMOV #2, r2\ndone: JMP @done", PW)
    system = make_system(hardware, [built.program], [0])
    system.apply(("run", 1))  # TLB miss, page not present: a page fault
    drain(system)
    record = system.apply(("run", 1))  # page present now: the miss is refilled
    assert "tlb_refill" in [e.kind for e in record.events]
    assert "pagein" not in [e.kind for e in record.events]
    assert system.kernel.runnable() == (1,)
    assert kernel_of(system).t.current == 1
    assert system.machine.cpu.state == record.start
    assert (1, 0) in {(e.asid, e.vpn) for e in system.machine.mmu.tlb.entries()}
    record = system.apply(("run", 1))
    assert record.result is not None and record.result.retired


def test_a_second_process_waits_for_a_page_in_already_under_way() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4)
    built = build("same", "MOV #1, r1\ndone: JMP @done", PW)
    system = make_system(hardware, [built.program], [0, 0])
    system.apply(("run", 1))
    record = system.apply(("run", 2))
    assert [e.kind for e in record.events if e.kind in ("wait_transfer", "pagein")] == [
        "wait_transfer"
    ]
    assert len(system.machine.disk.pending) == 1
    record = system.apply(("disk", 0))
    assert [e.pid for e in record.events if e.kind == "ready"] == [1, 2]
    view = system.kernel.view()
    assert {tuple(sorted(f.users)) for f in view.frames if f.users} == {((1, 0), (2, 0))}


# -- cleaner and prepaging ---------------------------------------------------------------------


def test_cleaner_writes_dirty_pages_back_ahead_of_need() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=8, kernel_frames=64)
    built = fill_program(PW, 6, 40, 2, 0)
    kernel = KernelConfig(cleaner=True, cleaner_threshold=100)
    system = make_system(hardware, [built.program], [0], kernel)
    run_until_spinning(system, {1: built.addresses["done"]})
    events = list(system.apply(("timer",)).events)
    cleaned = [e for e in events if e.kind == "clean"]
    assert len(cleaned) == 1
    pfn = cleaned[0].pfn
    assert pfn is not None
    view = system.kernel.view()
    frame = next(f for f in view.frames if f.pfn == pfn)
    assert frame.status == "busy" and frame.transfer == "write" and frame.users == ()
    (write,) = system.machine.disk.pending
    system.apply(("disk", 0))
    t = kernel_of(system).t
    page = t.frame_page[pfn]
    assert t.record(page).frame == pfn and not t.record(page).dirty
    assert np.array_equal(
        system.machine.disk.read_block(write.block), system.machine.memory.frame(pfn)
    )
    for pid, vpn in t.users(pfn):
        pte = system.machine.format.walk(system.machine.memory, t.processes[pid].root, pid, vpn)
        assert pte is not None and bits.is_present(pte.pte) and not bits.is_modified(pte.pte)
    with opened(system) as port:
        assert not t.frame_dirty(port, pfn)
    for _ in range(10):  # every dirty page gets cleaned in turn, and data stays right
        system.apply(("timer",))
        drain(system)
    with opened(system) as port:
        assert all(not t.frame_dirty(port, f) for f in t.fs.status if t.users(f))
    assert read_word(system, 1, 60 * PW) == fill_sum(6, 40, 2)


def test_prepaging_the_pc_page_starts_its_pagein_at_first_dispatch() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4)
    built = build("pre", "MOV #1, r1\ndone: JMP @done", PW)
    system = make_system(hardware, [built.program], [0], KernelConfig(prepage="pc"))
    record = system.apply(("run", 1))
    kinds = [e.kind for e in record.events]
    assert kinds[:2] == ["dispatch", "prepage"]
    assert "wait_transfer" in kinds  # the first fetch waits for the prepaged page
    assert len(system.machine.disk.pending) == 1


def test_prepaging_a_list_of_pages_maps_them_without_faults() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=16)
    values = (3, 1, 2)
    built = reverse_program(PW, values)
    data_vpn = built.addresses["data"] // PW
    kernel = KernelConfig(prepage=(0, 1, data_vpn, 40))  # vpn 40 is not valid: ignored
    system = make_system(hardware, [built.program], [0], kernel)
    record = system.apply(("run", 1))
    assert [e.vpn for e in record.events if e.kind == "prepage"] == [0, 1, data_vpn]
    drain(system)
    view = system.kernel.view()
    mapped = {u for f in view.frames for u in f.users}
    assert {(1, 1), (1, data_vpn)} <= mapped
    events = record_events(system)
    run_until_spinning(system, {1: built.addresses["done"]})
    assert not [e for e in events if e.kind == "fault" and e.vpn in (1, data_vpn)]
    for va, value in reverse_expected(built, values).items():
        assert read_word(system, 1, va) == value


def test_view_reports_each_page_home_exactly() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3, kernel_frames=64)
    built = fill_program(PW, 12, 5, 5, 0)
    system = make_system(hardware, [built.program], [0], KernelConfig(policy="fifo"))
    kinds_seen: set[str] = set()
    for _ in range(300):
        view = system.kernel.view()
        t = kernel_of(system).t
        for page in view.process(1).pages:  # type: ignore[union-attr]
            entry = t.processes[1].mapping(page.vpn)
            assert entry is not None
            rec = t.record(entry.page)
            kinds_seen.add(page.home.where)
            if page.kind == "text" and rec.frame is None:
                assert page.home.where == "image"
            if page.kind in ("heap", "stack", "shared") and page.home.where == "zero":
                assert rec.slot is not None and rec.frame is None
        if registers(system, 1).pc == built.addresses["done"]:
            break
        if system.kernel.runnable():
            system.apply(("run", 1))
        else:
            drain(system)
    assert kinds_seen == {"frame", "slot", "image", "zero"}
    assert PageId("text:fill", 0) in kernel_of(system).t.pages
