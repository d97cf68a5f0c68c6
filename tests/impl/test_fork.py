"""FORK with copy-on-write: the reference kernel against the spec, the copy and the
take-over, the invariant that watches shared frames, and a fork that fails."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.coverage import Tracker
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.observe import Observed
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, KernelFactory, resolve_factory, start
from pagingcheck.checks.system import Choice
from pagingcheck.impl.interface import SpawnRefused
from pagingcheck.impl.reference import process
from pagingcheck.model import bits
from pagingcheck.model.config import PAGE_TABLE_KINDS, RESTART_VARIANTS
from pagingcheck.model.isa import FORK_FAILED, ArchState
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import SpecState

PARENT, CHILD = 1, 2
DATA_VPN = 3  # the reference configuration's data page (8-word pages, 24 words of text)


def fork_config(**hardware: object) -> CheckConfig:
    """The reference configuration ``fork`` on other hardware."""
    config = checkconfig.load_reference("fork")
    return dataclasses.replace(config, hardware=config.hardware.replace(**hardware))


Pick = Callable[[list[Choice], list[str]], Choice]  # the enabled choices, the events so far


def drive(checker: Checker, pick: Pick, limit: int = 2000) -> tuple[list[str], set[str]]:
    """Run to the end, each choice by ``pick``; the kernel's events and the coverage
    situations reached. Fails on the first violated property."""
    events: list[str] = []
    reached: set[str] = set()
    tracker = Tracker()
    for _ in range(limit):
        enabled = checker.choices()
        if not enabled:
            return events, reached
        before = checker.observed
        record, violation = checker.step(pick(enabled, events))
        assert violation is None, violation.explain()
        events += [event.kind for event in record.events]
        reached |= tracker.classify(checker.system.machine.config, record, before, checker.observed)
    raise AssertionError("the processes never finished")


def at_random(seed: int) -> Pick:
    """Any enabled choice, drawn from a generator seeded with ``seed``."""
    rng = random.Random(seed)

    def pick(enabled: list[Choice], events: list[str]) -> Choice:
        return rng.choice(enabled)

    return pick


def prefer(*pids: int) -> Pick:
    """Run the first of ``pids`` that can run, else complete a transfer."""

    def pick(enabled: list[Choice], events: list[str]) -> Choice:
        for pid in pids:
            if ("run", pid) in enabled:
                return ("run", pid)
        return enabled[0]

    return pick


@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
@pytest.mark.parametrize("restart", RESTART_VARIANTS)
def test_parent_and_child_each_see_only_their_own_writes(page_table: str, restart: str) -> None:
    for seed in range(3):
        checker = start(fork_config(page_table=page_table, restart=restart), _reference())
        events, _ = drive(checker, at_random(seed))
        assert sorted(checker.system.machine.console) == [5, 7]
        assert events.count("fork") == 1


def test_a_software_tlb_refills_the_read_only_entry_and_copies_on_the_write() -> None:
    config = fork_config(tlb_refill="software", tlb_entries=4)
    checker = start(config, _reference())
    events, reached = drive(checker, prefer(CHILD, PARENT))
    assert "cow_copy" in events and "cow_break" in reached
    assert sorted(checker.system.machine.console) == [5, 7]


def test_the_first_writer_copies_and_the_last_sharer_takes_the_page_over() -> None:
    checker = start(fork_config(), _reference())

    def child_copies_then_parent_writes(enabled: list[Choice], events: list[str]) -> Choice:
        first = (PARENT, CHILD) if "cow_copy" in events else (CHILD,)
        return prefer(*first)(enabled, events)

    events, reached = drive(checker, child_copies_then_parent_writes)
    assert events.index("cow_copy") < events.index("cow_takeover")
    assert {"fork", "cow_break", "cow_takeover"} <= reached
    assert list(checker.system.machine.console) == [7, 5]


def test_a_page_alone_again_before_its_next_fault_is_mapped_writable_at_once() -> None:
    checker = start(fork_config(), _reference())
    events, reached = drive(checker, prefer(PARENT, CHILD))
    assert "cow_copy" in events and "cow_takeover" not in events
    assert "cow_break" in reached and list(checker.system.machine.console) == [7, 5]


def after_fork(config: CheckConfig) -> Checker:
    """The reference configuration just after the parent's FORK retired."""
    checker = start(config, _reference())
    for _ in range(200):
        enabled = checker.choices()
        record, violation = checker.step(prefer(PARENT)(enabled, []))
        assert violation is None, violation.explain()
        if record.forked:
            return checker
    raise AssertionError("the parent never forked")


def test_a_fork_leaves_the_shared_page_read_only_in_the_parent() -> None:
    state = after_fork(fork_config()).observed
    pte = state.pte(PARENT, DATA_VPN)
    assert pte is not None and bits.is_present(pte) and not pte & bits.WRITE
    assert state.shares_copy(PARENT, DATA_VPN) and state.shares_copy(CHILD, DATA_VPN)


def test_a_writable_pte_of_a_shared_frame_is_caught() -> None:
    state = after_fork(fork_config()).observed
    machine = state.machine.copy()
    asid = state.asid_of[PARENT]
    entry = state.walk(state.spaces[asid], asid, DATA_VPN)
    assert entry is not None
    machine.memory.write(entry.pte_addr, entry.pte | bits.WRITE)
    violation = INVARIANTS["copies_read_only"].check(Observed(machine, state.view))
    assert violation is not None and ("vpn", DATA_VPN) in violation.witness


def test_a_fork_the_kernel_cannot_serve_fails_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = start(fork_config(), _reference())
    monkeypatch.setattr(process, "build_page_table", lambda *args: SpawnRefused("no kernel memory"))
    fork_trapped(checker)
    assert checker.observed.live == (PARENT,)
    assert checker.system.machine.cpu.state.regs[0] == FORK_FAILED


def fork_trapped(checker: Checker) -> None:
    """Run the parent until its FORK trapped (every property checked)."""
    for _ in range(200):
        record, violation = checker.step(prefer(PARENT)(checker.choices(), []))
        assert violation is None, violation.explain()
        if record.result is not None and record.result.syscall == 4:
            return
    raise AssertionError("the parent never called FORK")


def test_spec_fork_copies_private_pages_and_joins_shared_ones() -> None:
    config = fork_config()
    program = config.workload.programs[0]
    state = spec.spawn(SpecState(), PARENT, program, 8, 8)
    regs = ArchState((0, 0, 0, 0, 0, 0, 0, 64), 3, 0)
    forked, parent_regs = spec.fork(state, PARENT, regs, CHILD)
    assert parent_regs.regs[0] == CHILD
    child = forked.process(CHILD)
    assert child is not None and child.regs.regs[0] == 0 and child.regs.pc == 3
    data = child.mapping(DATA_VPN)
    text = child.mapping(0)
    assert data is not None and data.key == ("private", CHILD, DATA_VPN)
    assert forked.page_of(CHILD, DATA_VPN) == forked.page_of(PARENT, DATA_VPN)
    assert text is not None and text == forked.process(PARENT).mapping(0)  # type: ignore[union-attr]
    failed, failed_regs = spec.fork(state, PARENT, regs, None)
    assert failed == state and failed_regs.regs[0] == FORK_FAILED


def _reference() -> KernelFactory:
    return resolve_factory(REFERENCE_KERNEL)
