"""Shared pages: program text and named segments, reference counts, reverse maps."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory, run_choices
from pagingcheck.checks.system import Choice, System
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.impl.reference.tables import PageId
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig, PageTableKind
from tests.impl.kernel_workloads import (
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
)

PW = 4
VALUES = (5, 6, 7, 8, 9)


def kernel_of(system: System) -> ReferenceKernel:
    assert isinstance(system.kernel, ReferenceKernel)
    return system.kernel


@pytest.mark.parametrize("page_table", ["linear", "multilevel", "hashed"])
def test_text_is_shared_one_frame_per_page_and_freed_at_the_last_exit(
    page_table: PageTableKind,
) -> None:
    hardware = HardwareConfig(
        page_words=PW, user_frames=32, page_table=page_table, kernel_frames=64
    )
    built = reverse_program(PW, VALUES)
    system = make_system(hardware, [built.program], [0, 0, 0])
    done = built.addresses["done"]
    run_until_spinning(system, {1: done, 2: done, 3: done})
    view = system.kernel.view()
    text = [page for page in view.process(1).pages if page.kind == "text"]  # type: ignore[union-attr]
    frames = {f.pfn: f for f in view.frames}
    for page in text:
        homes = {
            next(p.home for p in view.process(pid).pages if p.vpn == page.vpn)  # type: ignore[union-attr]
            for pid in (1, 2, 3)
        }
        assert len(homes) == 1, f"text page {page.vpn} has several homes: {homes}"
        (home,) = homes
        assert home.where == "frame", "every text page ran, and nothing was evicted"
        frame = frames[home.index]
        assert frame.refcount == 3
        assert set(frame.users) == {(1, page.vpn), (2, page.vpn), (3, page.vpn)}
        record = kernel_of(system).t.record(PageId(f"text:{built.program.name}", page.index))
        assert record.slot is None  # read-only text needs no swap: it pages in from its image
    for pid in (1, 2, 3):
        for va, value in reverse_expected(built, VALUES).items():
            assert read_word(system, pid, va) == value
    events = list(kill(system, 1)) + list(kill(system, 2))
    assert "shared_zero" not in [e.kind for e in events]
    view = system.kernel.view()
    for page in text:
        home = next(p.home for p in view.process(3).pages if p.vpn == page.vpn)  # type: ignore[union-attr]
        frame = next(f for f in view.frames if f.pfn == home.index)
        assert frame.refcount == 1 and frame.users == ((3, page.vpn),)
    last = kill(system, 3)
    assert ("shared_zero", f"text:{built.program.name}") in [(e.kind, e.detail) for e in last]
    resources_all_free(system, booted_extents(hardware))


def test_inverted_tables_give_each_process_its_own_text_frame() -> None:
    hardware = HardwareConfig(
        page_words=PW, user_frames=32, page_table="inverted", kernel_frames=64
    )
    built = reverse_program(PW, VALUES)
    system = make_system(hardware, [built.program], [0, 0])
    done = built.addresses["done"]
    run_until_spinning(system, {1: done, 2: done})
    view = system.kernel.view()
    for page in (p for p in view.process(1).pages if p.kind == "text"):  # type: ignore[union-attr]
        other = next(p for p in view.process(2).pages if p.vpn == page.vpn)  # type: ignore[union-attr]
        assert page.shared_key == other.shared_key == f"text:{built.program.name}"
        if page.home.where == other.home.where == "frame":
            assert page.home.index != other.home.index
    assert all(f.refcount <= 1 for f in view.frames)


SPIN = """
loop:   LOAD r1, @0
        JMP @loop
done:   JMP @done
"""

WALK = """
        MOV #{heap}, r1
        MOV #24, r3
walk:   MOV r3, (r1)+
        ADDI r3, #-1
        BNE @walk
done:   JMP @done
"""


def step(checker: Checker, choice: tuple[str, int] | tuple[str]) -> list[str]:
    """Apply one choice through the checker; fail on any violated property."""
    record, violation = checker.step(choice)
    assert violation is None, violation.explain()
    return [event.kind for event in record.events]


def run_once(checker: Checker, pid: int) -> None:
    """Run one instruction (or fault) of ``pid``, preempting another process first and
    completing the I/O it starts."""
    kernel = checker.system.kernel
    if pid not in kernel.runnable():
        step(checker, ("timer",))
    if pid in kernel.runnable():
        step(checker, ("run", pid))
    while checker.system.machine.disk.completable():
        step(checker, ("disk", 0))


@pytest.mark.parametrize("tagged", [True, False])
def test_evicting_a_shared_page_invalidates_every_pte_and_tlb_entry(tagged: bool) -> None:
    hardware = HardwareConfig(
        page_words=PW, user_frames=4, tlb_tagged=tagged, tlb_entries=8, kernel_frames=64
    )
    spin = build("spin", SPIN, PW)
    walk = build("walk", WALK, PW, heap_pages=6)
    system = make_system(
        hardware, [spin.program, walk.program], [0, 0], KernelConfig(), max_spawns=1
    )
    checker = Checker(system)
    for pid in (1, 2, 1, 2, 1, 2):  # both map the shared text page; the TLB caches it
        run_once(checker, pid)
    view = system.kernel.view()
    shared = [f.pfn for f in view.frames if set(f.users) == {(1, 0), (2, 0)}]
    assert len(shared) == 1, view.frames
    pfn = shared[0]
    if tagged:
        assert {(e.asid, e.vpn) for e in system.machine.mmu.tlb.entries()} >= {(1, 0), (2, 0)}
    step(checker, ("spawn", 1))
    walker = 3
    for _ in range(200):
        if walker not in system.kernel.runnable() and system.machine.disk.completable():
            step(checker, ("disk", 0))
        else:
            if walker not in system.kernel.runnable():
                step(checker, ("timer",))
            record, violation = checker.step(("run", walker))
            assert violation is None, violation.explain()
            if any(e.kind == "evict_clean" and e.pfn == pfn for e in record.events):
                break
    else:
        raise AssertionError("the walker never evicted the shared text page")
    for pid in (1, 2):
        proc = kernel_of(system).t.processes[pid]
        entry = system.machine.format.walk(system.machine.memory, proc.root, proc.asid, 0)
        assert entry is None or not bits.is_present(entry.pte)
    assert all(bits.pfn(e.pte) != pfn for e in system.machine.mmu.tlb.entries())
    frame = next(f for f in system.kernel.view().frames if f.pfn == pfn)
    assert frame.users == () and frame.refcount == 0


def test_shared_segment_survives_dirty_eviction_and_every_user_sees_it() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=5, kernel_frames=64)
    one = fill_program(PW, 10, 7, 3, 0, name="fill_a")
    two = fill_program(PW, 9, 50, -4, 1, name="fill_b")
    system = make_system(hardware, [one.program, two.program], [0, 1])
    run_until_spinning(system, {1: one.addresses["done"], 2: two.addresses["done"]})
    results = 60 * PW
    for pid in (1, 2):
        assert read_word(system, pid, results) == fill_sum(10, 7, 3)
        assert read_word(system, pid, results + 1) == fill_sum(9, 50, -4)
    segment = kernel_of(system).t.record(PageId("segment:results", 0))
    assert segment.slot is not None
    kill(system, 1)
    assert read_word(system, 2, results) == fill_sum(10, 7, 3)
    kill(system, 2)
    resources_all_free(system, booted_extents(hardware))


STASH = """
        MOV #777, r0
        STORE r0, @{seg_results}
        MOV #{heap}, r1
        MOV #24, r3
walk:   MOV r3, (r1)+
        ADDI r3, #-1
        BNE @walk
        LOAD r2, @{seg_results}
done:   JMP @done
"""


def test_a_dirty_shared_page_is_written_back_when_evicted_and_read_back_intact() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4, kernel_frames=64)
    segment = fill_program(PW, 1, 0, 0, 0).program.shared
    stash = build("stash", STASH, PW, heap_pages=6, shared=segment)
    idle = build("idle", "done: JMP @done", PW, shared=segment)
    system = make_system(hardware, [stash.program, idle.program], [0, 1])
    events = record_events(system)
    run_until_spinning(system, {1: stash.addresses["done"], 2: idle.addresses["done"]})
    assert any(e.kind == "evict_dirty" and "segment:results" in e.detail for e in events)
    assert any(e.kind == "writeback" and "segment:results" in e.detail for e in events)
    assert registers(system, 1).regs[2] == 777  # read back after the round trip
    kill(system, 1)
    assert read_word(system, 2, 60 * PW) == 777


def test_a_dirty_shared_page_left_by_its_last_mapper_is_written_back_for_the_others() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=8, kernel_frames=64)
    writer = fill_program(PW, 3, 11, 1, 0, name="writer")
    idle = build("idle", "done: JMP @done", PW, shared=writer.program.shared)
    system = make_system(hardware, [writer.program, idle.program], [0, 1])
    run_until_spinning(system, {1: writer.addresses["done"], 2: idle.addresses["done"]})
    events = kill(system, 1)  # pid 2 never touched the segment
    assert ("writeback") in [e.kind for e in events]
    view = system.kernel.view()
    page = next(p for p in view.process(2).pages if p.kind == "shared")  # type: ignore[union-attr]
    assert page.home.where == "frame"  # being written back: the frame holds it still
    while system.machine.disk.completable():
        system.apply(("disk", 0))
    assert read_word(system, 2, 60 * PW) == fill_sum(3, 11, 1)
    page = next(
        p
        for p in system.kernel.view().process(2).pages  # type: ignore[union-attr]
        if p.kind == "shared"
    )
    assert page.home.where == "slot"


def test_dirty_check_reads_every_users_modified_bit() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=16, kernel_frames=64)
    writer = fill_program(PW, 2, 3, 1, 0, name="writer")
    reader = build(
        "reader", "LOAD r1, @{seg_results}\ndone: JMP @done", PW, shared=writer.program.shared
    )
    system = make_system(hardware, [reader.program, writer.program], [0, 1])
    run_until_spinning(system, {1: reader.addresses["done"], 2: writer.addresses["done"]})
    kernel = kernel_of(system)
    pfn = kernel.t.record(PageId("segment:results", 0)).frame
    assert pfn is not None and set(kernel.t.users(pfn)) == {(1, 60), (2, 60)}
    reader_pte = system.machine.format.walk(
        system.machine.memory, kernel.t.processes[1].root, 1, 60
    )
    assert reader_pte is not None and not bits.is_modified(reader_pte.pte)
    with opened(system) as port:
        assert kernel.t.frame_dirty(port, pfn)  # only the writer's PTE says so
    kill(system, 2)  # the writer's M bit moves into the page record
    assert kernel.t.record(PageId("segment:results", 0)).dirty
    with opened(system) as port:
        assert kernel.t.frame_dirty(port, pfn)


# -- a shared page is never brought in twice -----------------------------------------------

ISSUE_SEQUENCE: list[Choice] = [
    ("kill", 2), ("run", 3), ("kill", 3), ("run", 1), ("spawn", 1), ("spawn", 3),
    ("kill", 5), ("run", 4), ("disk", 0), ("spawn", 1), ("run", 6),
]  # fmt: skip


def test_a_sharer_spawned_later_faulting_during_a_read_is_a_regression() -> None:
    """The choice sequence of a crash found by a long campaign: a second sharer, spawned
    after boot, faults on a text page whose read is in flight."""
    applied = 0
    for name, config in checkconfig.load(None).expand():
        result = run_choices(config, resolve_factory(REFERENCE_KERNEL), ISSUE_SEQUENCE)
        assert result.violation is None, (name, result.violation)
        applied += result.diverged_at is None
    assert applied >= 1


TEXT_SHARERS = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0]
  max_spawns: 2
  programs:
    - name: sharer
      text: |
        MOV #1, r1
        SYS 0
"""


def test_a_later_sharer_waits_for_the_read_of_shared_text_already_in_flight() -> None:
    config = checkconfig.load_text(TEXT_SHARERS)
    run = Run(config, resolve_factory(REFERENCE_KERNEL), None)
    for choice in [("run", 1), ("spawn", 0)]:
        assert run.take(choice) is None
    assert run.take(("run", 2)) is None
    events = [e.kind for e in run.result.records[-1].events]
    assert "wait_transfer" in events and "pagein" not in events
    assert run.checker is not None and len(run.checker.observed.requests) == 1
    assert run.result.coverage.counts["shared_page_in_transit"] == 1


def test_no_shared_page_is_ever_moved_twice_at_once() -> None:
    """Random runs of the default workload: whenever a process faults on a shared page
    that a transfer is already moving (text, a segment, on its way in or out), that one
    transfer is still the only one moving it afterwards."""
    config = checkconfig.load(None).expand()[0][1]
    seen = 0
    for seed in range(12):
        rng = random.Random(seed)
        run = Run(config, resolve_factory(REFERENCE_KERNEL), None)
        assert run.checker is not None
        for _ in range(400):
            before = run.checker.observed
            enabled = [c for c in run.enabled() if c[0] != "kill"]
            if not enabled:
                break
            choice = rng.choice(enabled)
            assert run.take(choice) is None, run.result.violation
            record = run.result.records[-1]
            fault = None if record.result is None else record.result.fault
            if fault is None:
                continue
            key = (int(choice[1]), fault.va // config.hardware.page_words)
            home = before.homes.get(key)
            request = None if home is None else before.in_transit(home)
            page = before.view.process(key[0])
            shared = page is not None and any(p.vpn == key[1] and p.shared_key for p in page.pages)
            if request is None or not shared:
                continue
            seen += 1
            after = run.checker.observed
            moving = [r for r in after.requests if r.block == request.block]
            assert len(moving) <= 1, (seed, key, after.requests)
    assert seen >= 5


def test_an_old_transfer_ending_does_not_touch_a_shared_object_created_anew() -> None:
    """A campaign found this: the last user of text:straddle dies with its page-in in
    flight; a new straddle process re-creates the text object and starts its own read;
    the old read ends (orphaned) and must leave the new page's record alone, so a second
    new sharer waits for the new read instead of starting a third."""
    config = checkconfig.load(None).expand()[2][1]  # hashed, decode, lru
    # Boot straddle and two sharers only, so the pids are those of the campaign's trace.
    config = dataclasses.replace(
        config, workload=dataclasses.replace(config.workload, initial=(0, 1, 1))
    )
    choices: list[Choice] = [
        ("run", 1), ("kill", 2), ("run", 3), ("kill", 1), ("spawn", 2), ("run", 4),
        ("spawn", 0), ("run", 5), ("kill", 3), ("disk", 0), ("disk", 0), ("spawn", 0),
        ("run", 6),
    ]  # fmt: skip
    result = run_choices(config, resolve_factory(REFERENCE_KERNEL), choices)
    assert result.violation is None and result.diverged_at is None
    assert "free_frame" in [e.kind for e in result.records[9].events]  # the old read ended
    last = [e.kind for e in result.records[-1].events]
    assert "wait_transfer" in last and "pagein" not in last
    run = Run(config, resolve_factory(REFERENCE_KERNEL), None)
    for choice in choices:
        assert run.take(choice) is None
    assert run.checker is not None
    blocks = [r.block for r in run.checker.observed.requests]
    assert len(blocks) == len(set(blocks))  # no block is read twice at once
