"""The hardware port: what a kernel can do, and a clear error naming the call for what it cannot."""

from __future__ import annotations

import pytest

from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import PortError
from pagingcheck.model.isa import ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MAX_ASID, MachinePort, Port
from pagingcheck.model.traps import Access, Fault, TrapKind

CONFIG = HardwareConfig(
    page_words=4, va_pages=8, kernel_frames=4, user_frames=4, swap_slots=4, image_blocks=2
)
USER = CONFIG.first_user_frame
REGS = (0,) * 8


def machine_and_port(config: HardwareConfig = CONFIG) -> tuple[Machine, Port]:
    machine = Machine(config)
    return machine, MachinePort(machine)


def test_the_port_is_open_only_during_a_kernel_call() -> None:
    machine, port = machine_and_port()
    with pytest.raises(PortError, match="read: the port is open only during a kernel call"):
        port.read(0)
    with port.opened():
        port.write(3, 7)
        assert port.read(3) == 7
    with pytest.raises(PortError, match="write"):
        port.write(3, 8)
    assert machine.memory.read(3) == 7


def test_memory_fill_and_context() -> None:
    machine, port = machine_and_port()
    with port.opened():
        port.fill(USER, 5)
        state = ArchState((1, 2, 3, 4, 5, 6, 7, 8), 9, 1)
        port.resume(state)
        assert port.context() == state
    assert machine.memory.frame(USER).tolist() == [5] * 4
    assert machine.cpu.mode == "user"


def test_mmu_tlb_spaces_timer_and_console_reach_the_hardware() -> None:
    config = CONFIG.replace(tlb_refill="software")
    machine, port = machine_and_port(config)
    pte = bits.make_pte(USER, bits.READ | bits.USER)
    with port.opened():
        port.load_context(8, 3)
        port.tlb_insert(3, 1, 9, pte)
        assert port.probe(1 * config.page_words + 2, Access.READ) == USER * 4 + 2
        assert port.probe(2 * config.page_words, Access.READ) == Fault(
            TrapKind.TLB_MISS, 8, Access.READ
        )
        port.tlb_invalidate(3, 1)
        port.register_space(3, 8)
        port.set_timer(True)
        port.console_write(ord("o"))
        port.console_write(ord("k"))
    assert (machine.mmu.ptbr, machine.mmu.asid) == (8, 3)
    assert machine.mmu.tlb.entries() == ()
    assert machine.spaces == {3: 8} and machine.timer
    assert machine.console == (111, 107)
    with port.opened():
        port.release_space(3)
    assert machine.spaces == {}


def test_console_read_takes_the_typed_bytes_in_order_then_none() -> None:
    machine, port = machine_and_port()
    machine.console_input = (104, 105)
    with port.opened():
        taken = [port.console_read() for _ in range(3)]
    assert taken == [104, 105, None]
    assert not machine.console_input


def test_disk_requests_are_queued_not_copied() -> None:
    machine, port = machine_and_port()
    machine.disk.write_block(CONFIG.swap_slots, [4, 3, 2, 1])
    with port.opened():
        first = port.submit("read", CONFIG.swap_slots, USER)
        second = port.submit("write", 0, USER + 1)
    assert (first, second) == (0, 1)
    assert [(r.op, r.block, r.pfn) for r in machine.disk.pending] == [
        ("read", CONFIG.swap_slots, USER),
        ("write", 0, USER + 1),
    ]
    assert machine.memory.frame(USER).tolist() == [0] * 4  # nothing moved yet


RULES = [
    (lambda p: p.read(CONFIG.memory_words), "read: physical address"),
    (lambda p: p.write(0, -1), "write: word -1"),
    (lambda p: p.write(0, 1 << 32), "write: word"),
    (lambda p: p.write(True, 0), "write: physical address True"),
    (lambda p: p.fill(0, 0), "fill: frame 0 is not a user frame"),
    (lambda p: p.load_context(0, MAX_ASID + 1), "load_context: asid"),
    (lambda p: p.probe(-1, Access.READ), "probe: virtual address -1"),
    (lambda p: p.probe(0, "read"), "probe: access 'read'"),
    (lambda p: p.tlb_insert(0, 0, 0, 0), "tlb_insert: this TLB is refilled by the hardware"),
    (lambda p: p.tlb_invalidate(0, CONFIG.va_pages), "tlb_invalidate: vpn"),
    (lambda p: p.tlb_flush_asid(-1), "tlb_flush_asid: asid -1"),
    (lambda p: p.resume(ArchState(REGS, -1, 0)), "resume:"),
    (lambda p: p.resume(ArchState(REGS, 0, 4)), "resume:"),
    (lambda p: p.resume("state"), "resume:"),
    (lambda p: p.submit("erase", 0, USER), "submit: op 'erase'"),
    (lambda p: p.submit("read", CONFIG.disk_blocks, USER), "submit: disk block"),
    (lambda p: p.submit("write", CONFIG.swap_slots, USER), "images are read-only"),
    (lambda p: p.submit("read", 0, 0), "submit: frame 0 is not a user frame"),
    (lambda p: p.set_timer(1), "set_timer: 1"),
    (lambda p: p.console_write(256), "console_write: byte 256 is not an integer in 0..255"),
    (lambda p: p.console_write("a"), "console_write: byte 'a'"),
    (lambda p: p.register_space(1, CONFIG.memory_words), "register_space: physical address"),
    (lambda p: p.release_space(5), "release_space: address space 5 was never registered"),
]


@pytest.mark.parametrize(("call", "message"), RULES, ids=[m for _, m in RULES])
def test_a_broken_rule_names_the_call_and_changes_nothing(call: object, message: str) -> None:
    machine, port = machine_and_port()
    before = machine.copy()
    with port.opened(), pytest.raises(PortError, match=message.replace("(", r"\(")):
        call(port)  # type: ignore[operator]
    assert machine == before


def test_the_port_hides_what_a_kernel_must_not_reach() -> None:
    _, port = machine_and_port()
    public = {name for name in dir(port) if not name.startswith("_")}
    assert public == {
        "broken",
        "config",
        "console_read",
        "file",
        "console_write",
        "open",
        "words",
        "context",
        "fill",
        "image",
        "load_context",
        "opened",
        "probe",
        "read",
        "register_space",
        "release_space",
        "resume",
        "set_timer",
        "submit",
        "tlb_flush",
        "tlb_flush_asid",
        "tlb_insert",
        "tlb_invalidate",
        "write",
    }
