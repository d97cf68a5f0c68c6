"""Each invariant holds on reachable states and fails on a state with its seeded bug."""

from __future__ import annotations

import dataclasses

from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.invariants import INVARIANTS, check_all
from pagingcheck.checks.observe import Observed
from pagingcheck.checks.refinement import Checker
from pagingcheck.impl.interface import KernelView, Location
from pagingcheck.model import bits
from pagingcheck.model.tlb import TlbEntry
from tests.checks.conftest import drive_until


def corrupt(checker: Checker, **changes: object) -> Observed:
    """The checker's state with fields of the kernel view replaced."""
    state = checker.observed
    view: KernelView = dataclasses.replace(state.view, **changes)  # type: ignore[arg-type]
    return Observed(state.machine.copy(), view)


def test_reachable_states_satisfy_every_invariant(
    busy_state: Checker, shared_state: Checker
) -> None:
    for checker in (busy_state, shared_state):
        assert check_all(checker.observed) is None


def test_every_invariant_has_a_statement() -> None:
    assert len(INVARIANTS) >= 7
    for invariant in INVARIANTS.values():
        assert len(invariant.statement.split()) > 8


def test_busy_frame_on_free_list_is_caught(busy_state: Checker) -> None:
    pfn = next(iter(busy_state.observed.transfers))
    state = corrupt(busy_state, free_frames=(*busy_state.observed.view.free_frames, pfn))
    violation = INVARIANTS["busy_frame_exclusive"].check(state)
    assert violation is not None and ("pfn", pfn) in violation.witness


def test_busy_frame_in_tlb_is_caught(busy_state: Checker) -> None:
    pfn = next(iter(busy_state.observed.transfers))
    state = busy_state.observed
    machine = state.machine.copy()
    machine.mmu.tlb_write(TlbEntry(machine.mmu.asid, 1, 0, bits.make_pte(pfn, bits.READ)))
    violation = INVARIANTS["busy_frame_exclusive"].check(Observed(machine, state.view))
    assert violation is not None and "TLB" in violation.message


def test_shared_frame_freed_early_is_caught(shared_state: Checker) -> None:
    pfn = next(p for p, users in shared_state.observed.mappers.items() if len(users) > 1)
    state = corrupt(shared_state, free_frames=(*shared_state.observed.view.free_frames, pfn))
    violation = INVARIANTS["freed_at_last_reference"].check(state)
    assert violation is not None and ("pfn", pfn) in violation.witness


def test_refcount_off_by_one_is_caught(shared_state: Checker) -> None:
    view = shared_state.observed.view
    frames = tuple(
        dataclasses.replace(f, refcount=f.refcount + 1) if f.status == "in_use" else f
        for f in view.frames
    )
    assert INVARIANTS["refcounts_exact"].check(corrupt(shared_state, frames=frames)) is not None


def test_stale_tlb_entry_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    machine = state.machine.copy()
    user = next(p for p in state.view.processes if p.state != "exited")
    unmapped = next(v for v in range(machine.config.va_pages) if (user.pid, v) not in state.present)
    machine.mmu.load_context(user.root, user.asid)
    machine.mmu.tlb_write(
        TlbEntry(user.asid, unmapped, 0, bits.make_pte(machine.config.first_user_frame, bits.READ))
    )
    violation = INVARIANTS["tlb_agrees"].check(Observed(machine, state.view))
    assert violation is not None and ("vpn", unmapped) in violation.witness


def test_pte_mapping_a_kernel_frame_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    machine = state.machine.copy()
    (pid, vpn), _ = next(iter(state.present.items()))
    proc = state.view.process(pid)
    assert proc is not None
    entry = machine.format.walk(machine.memory, proc.root, proc.asid, vpn)
    assert entry is not None
    machine.memory.write(entry.pte_addr, bits.with_pfn(entry.pte, 1))
    violation = INVARIANTS["page_tables_well_formed"].check(Observed(machine, state.view))
    assert violation is not None and ("pfn", 1) in violation.witness


def test_frame_table_disagreement_is_caught(busy_state: Checker) -> None:
    view = busy_state.observed.view
    frames = tuple(
        dataclasses.replace(f, users=()) if f.status == "in_use" else f for f in view.frames
    )
    frames = tuple(dataclasses.replace(f, refcount=len(f.users)) for f in frames)
    assert INVARIANTS["frame_table_agrees"].check(corrupt(busy_state, frames=frames)) is not None


def test_duplicate_on_free_list_is_caught(busy_state: Checker) -> None:
    view = busy_state.observed.view
    state = corrupt(busy_state, free_slots=(*view.free_slots, view.free_slots[0]))
    violation = INVARIANTS["free_lists_clean"].check(state)
    assert violation is not None and "twice" in violation.message


def test_table_with_two_parents_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    machine = state.machine.copy()
    proc = next(p for p in state.view.processes if p.state != "exited")
    # default format is two-level: point a second root entry at the first one's table
    root = [machine.memory.read(proc.root + i) for i in range(4)]
    used = next(i for i, word in enumerate(root) if word & bits.PRESENT)
    spare = next(i for i, word in enumerate(root) if not word & bits.PRESENT)
    machine.memory.write(proc.root + spare, root[used])
    violation = INVARIANTS["page_tables_well_formed"].check(Observed(machine, state.view))
    assert violation is not None and "two parents" in violation.message


# -- the checks grounded in hardware: a view that lies is caught -------------------------------


def test_an_undeclared_or_stale_address_space_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    live = state.live_processes[0]
    machine = state.machine.copy()
    del machine.spaces[live.asid]
    violation = INVARIANTS["spaces_agree"].check(Observed(machine, state.view))
    assert violation is not None and "not declared" in violation.message
    machine = state.machine.copy()
    machine.spaces[live.asid] = live.root + 1
    violation = INVARIANTS["spaces_agree"].check(Observed(machine, state.view))
    assert violation is not None and "root differs" in violation.message
    machine = state.machine.copy()
    machine.spaces[999] = live.root
    violation = INVARIANTS["spaces_agree"].check(Observed(machine, state.view))
    assert violation is not None and ("asid", 999) in violation.witness


def test_a_view_that_misplaces_a_resident_page_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    (asid, vpn), pfn = next(iter(sorted(state.present.items())))
    pid = state.pid_of[asid]
    processes = tuple(
        dataclasses.replace(
            proc,
            pages=tuple(
                dataclasses.replace(page, home=Location("zero")) if page.vpn == vpn else page
                for page in proc.pages
            ),
        )
        if proc.pid == pid
        else proc
        for proc in state.view.processes
    )
    violation = INVARIANTS["homes_agree"].check(corrupt(busy_state, processes=processes))
    assert violation is not None and ("pte_frame", pfn) in violation.witness


def test_two_pages_claiming_one_slot_is_caught(busy_state: Checker) -> None:
    # A shared segment's page and a private page: two private pages may share a slot (a
    # fork's copies), which refinement and copies_read_only judge instead.
    state = busy_state.observed
    view = state.view
    first = next(slot for slot in view.slots if state.shared_key(*slot.users[0]) is not None)
    second = next(slot for slot in view.slots if state.shared_key(*slot.users[0]) is None)
    merged = dataclasses.replace(
        first, refcount=first.refcount + second.refcount, users=first.users + second.users
    )
    slots = (merged, *(slot for slot in view.slots if slot not in (first, second)))
    violation = INVARIANTS["homes_agree"].check(corrupt(busy_state, slots=slots))
    assert violation is not None and ("slot", first.slot) in violation.witness


def test_a_frame_held_for_ever_is_caught(default_config: CheckConfig) -> None:
    busy_state = drive_until(default_config, lambda s: bool(s.view.free_frames))
    view = busy_state.observed.view
    free = view.free_frames[0]
    frames = tuple(
        dataclasses.replace(f, status="busy") if f.pfn == free else f for f in view.frames
    )
    state = corrupt(busy_state, frames=frames, free_frames=view.free_frames[1:])
    violation = INVARIANTS["no_leaks"].check(state)
    assert violation is not None and ("pfn", free) in violation.witness
    frames = tuple(
        dataclasses.replace(f, status="in_use") if f.pfn == free else f for f in view.frames
    )
    state = corrupt(busy_state, frames=frames, free_frames=view.free_frames[1:])
    violation = INVARIANTS["no_leaks"].check(state)
    assert violation is not None and "neither free" in violation.message


def test_a_slot_held_for_ever_is_caught(busy_state: Checker) -> None:
    view = busy_state.observed.view
    idle = next(s for s in view.slots if not busy_state.observed.slot_transfers.get(s.slot))
    slots = tuple(
        dataclasses.replace(s, refcount=0, users=()) if s is idle else s for s in view.slots
    )
    violation = INVARIANTS["no_leaks"].check(corrupt(busy_state, slots=slots))
    assert violation is not None and ("slot", idle.slot) in violation.witness


def test_a_transfer_the_view_does_not_own_up_to_is_caught(busy_state: Checker) -> None:
    state = busy_state.observed
    pfn = next(iter(state.transfers))
    frames = tuple(
        dataclasses.replace(f, transfer=None) if f.pfn == pfn else f for f in state.view.frames
    )
    violation = INVARIANTS["frame_table_agrees"].check(corrupt(busy_state, frames=frames))
    assert violation is not None and ("pfn", pfn) in violation.witness
