"""The real MMU, TLB and vm edits agree with the mapping transitions z3 proves.

The hardware cannot import the kernel library, so the transitions of
:mod:`pagingcheck.impl.lib.mapping` that describe the MMU are checked here:
random sequences of kernel edits (through :mod:`~pagingcheck.impl.lib.vm` on a
real machine port) and user accesses (through the real MMU) are run on a
machine, and after every step the hardware's PTE words and TLB entries,
read back, equal what the transitions compute from the state before.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagingcheck.impl.lib import mapping as mp
from pagingcheck.impl.lib import vm
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.pagetable import make_editor
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig, PageTableKind
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MachinePort
from pagingcheck.model.traps import Access, Fault

ASID = 1
PROTS = (bits.READ | bits.USER, bits.READ | bits.WRITE | bits.USER)


@dataclass
class Rig:
    """A machine with one address space loaded, the kernel's tools, and the abstract
    state the transitions say it is in."""

    config: HardwareConfig
    machine: Machine
    port: MachinePort
    editor: object
    kalloc: KernelAllocator
    space: vm.Space
    prot: dict[int, int]
    state: mp.MappingState


def rig(page_table: PageTableKind) -> Rig:
    config = HardwareConfig(
        page_words=4,
        va_pages=8,
        kernel_frames=32,
        user_frames=4,
        page_table=page_table,
        tlb_entries=2,
    )
    machine = Machine(config)
    port = MachinePort(machine)
    editor = make_editor(config)
    kalloc = KernelAllocator(config)
    port.open = True
    system_root = editor.boot(port, kalloc)
    assert system_root is not None
    root = editor.create(port, kalloc, ASID, system_root)
    assert root is not None
    space = vm.Space(root, ASID)
    prot = {vpn: PROTS[vpn % 2] for vpn in range(config.va_pages)}
    for vpn in range(config.va_pages):
        assert vm.prepare(editor, port, kalloc, space, vpn, prot[vpn])
    port.register_space(ASID, root)
    port.load_context(root, ASID)
    r = Rig(config, machine, port, editor, kalloc, space, prot, mp.empty())
    r.state = observed(r, mp.empty())
    return r


def observed(r: Rig, ghost: mp.MappingState) -> mp.MappingState:
    """The hardware's PTE words and TLB entries, with the kernel and ghost fields of
    ``ghost`` (the hardware has none)."""
    state = ghost
    for vpn in range(r.config.va_pages):
        user = (ASID, vpn)
        hit = r.machine.mmu.tlb.lookup(ASID, vpn)
        entry = state.entry(user)
        state = state.with_entry(
            user,
            mp.Entry(
                vm.pte(r.port, r.editor, r.space, vpn),  # type: ignore[arg-type]
                hit is not None,
                0 if hit is None else hit[1].pte,
                entry.dirty,
                entry.written,
                entry.lost,
                entry.copied,
            ),
        )
    return state


def hardware(state: mp.MappingState) -> dict[object, tuple[int, bool, int]]:
    """The part of the state the hardware holds: each user's PTE, and its TLB entry."""
    users = {*state.pte, *state.cached, *state.snapshot}
    result = {}
    for user in users:
        e = state.entry(user)
        result[user] = (int(e.pte), bool(e.cached), int(e.snapshot) if e.cached else 0)
    return result


def apply(state: mp.MappingState, name: str, user: object, *args: object) -> mp.MappingState:
    op, _ = mp.TRANSITIONS[name]
    guard, after = op(state, user, *args)
    assert guard, (name, user, args, state.entry(user))
    return after


def kernel_step(r: Rig, action: str, vpn: int, pfn: int) -> None:
    """One vm edit on the machine, and the transition it claims to be."""
    user = (ASID, vpn)
    word = int(r.state.entry(user).pte)
    editor = r.editor
    pfn += r.config.kernel_frames
    if action == "map" and not bits.is_present(word) and shareable(r, pfn):
        vm.map_page(r.port, editor, r.kalloc, r.space, vpn, pfn, r.prot[vpn])  # type: ignore[arg-type]
        expected = apply(r.state, "map_page", user, bits.make_pte(pfn, r.prot[vpn]))
    elif action == "unmap" and bits.is_present(word):
        vm.unmap(r.port, editor, r.kalloc, r.space, vpn, r.prot[vpn])  # type: ignore[arg-type]
        absent = bits.make_pte(0, r.prot[vpn], present=False)
        if not vm.holds_absent_entries(editor):  # type: ignore[arg-type]
            absent = 0
        expected = apply(r.state, "unmap", user, absent)
    elif action == "clear_referenced" and bits.is_referenced(word) and bits.is_present(word):
        vm.clear_referenced(r.port, editor, r.kalloc, r.space, vpn)  # type: ignore[arg-type]
        expected = apply(r.state, "clear_referenced", user)
    elif action == "writeback" and not bits.is_present(word):
        expected = apply(r.state, "start_writeback", user)  # the disk's part: no PTE change
    else:
        return
    assert hardware(observed(r, expected)) == hardware(expected), action
    r.state = expected


def shareable(r: Rig, pfn: int) -> bool:
    """Whether ``pfn`` may take one more mapping: an inverted table holds one per frame."""
    if vm.holds_absent_entries(r.editor):  # type: ignore[arg-type]
        return True
    words = [int(r.state.entry(user).pte) for user in r.state.pte]
    return not any(bits.is_present(w) and bits.pfn(w) == pfn for w in words)


def user_access(r: Rig, vpn: int, write: bool) -> None:
    """One user access through the real MMU, and the fill/access/drop it claims to be."""
    user = (ASID, vpn)
    va = vpn * r.config.page_words + 1
    before = r.state
    result = r.machine.mmu.translate(r.machine.memory, va, Access.WRITE if write else Access.READ)
    after = observed(r, before)
    if isinstance(result, Fault):
        assert hardware(after) == hardware(before), "a refused access changed nothing"
        return
    expected = before
    if not before.entry(user).cached:
        expected = apply(expected, "fill", user)
    expected = apply(expected, "access", user, write)
    for other in {*before.cached}:
        if other != user and before.entry(other).cached and not after.entry(other).cached:
            expected = apply(expected, "drop", other)  # the TLB made room
    assert hardware(after) == hardware(expected)
    r.state = expected


steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["map", "unmap", "clear_referenced", "writeback"]),
            st.integers(0, 7),
            st.integers(0, 3),
        ),
        st.tuples(st.just("access"), st.integers(0, 7), st.booleans()),
    ),
    max_size=40,
)


@pytest.mark.parametrize("page_table", ["linear", "multilevel", "hashed", "inverted"])
def test_the_hardware_and_vm_agree_with_the_mapping_transitions(page_table: PageTableKind) -> None:
    @settings(max_examples=60, deadline=None)
    @given(steps)
    def agree(actions: list[tuple[str, int, object]]) -> None:
        r = rig(page_table)
        for action, vpn, arg in actions:
            if action == "access":
                user_access(r, vpn, bool(arg))
            else:
                kernel_step(r, action, vpn, int(arg))  # type: ignore[call-overload]
            assert mp.violations(r.state) == []

    agree()


def test_a_kernel_that_skips_the_tlb_duty_disagrees() -> None:
    """The agreement is not vacuous: an unmap that leaves the TLB entry is caught."""
    r = rig("linear")
    kernel_step(r, "map", 1, 1)
    user_access(r, 1, True)
    assert r.state.entry((ASID, 1)).cached
    word = vm.pte(r.port, r.editor, r.space, 1)  # type: ignore[arg-type]
    r.editor.set_pte(  # type: ignore[attr-defined]
        r.port, r.kalloc, r.space.root, ASID, 1, bits.make_pte(0, r.prot[1], present=False)
    )
    assert bits.is_modified(word)
    expected = apply(r.state, "unmap", (ASID, 1), bits.make_pte(0, r.prot[1], present=False))
    assert hardware(observed(r, expected)) != hardware(expected)
    stale = observed(r, expected)
    assert mp.violations(stale) == [f"tlb_agrees at {((ASID, 1),)}"]
