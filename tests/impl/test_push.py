"""PUSHM, the instruction that writes more than once: a fault after some of its writes,
memory keeping them, the spec keeping them too, and another process reading them before
the instruction runs again."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.machines import run_campaign
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory, start
from pagingcheck.checks.system import StepRecord
from pagingcheck.model import isa
from pagingcheck.model.config import PAGE_TABLE_KINDS, RESTART_VARIANTS
from tests.impl.test_family import course_example
from tests.impl.test_mmap import drive

PUSHER, READER = 1, 2  # pids of the reference configuration ``pushm``
SHARED_WORD, DATA_WORD = 24, 23  # the PUSHM's first write, and its second


def push_config(**hardware: object) -> CheckConfig:
    """The reference configuration ``pushm`` on other hardware."""
    config = checkconfig.load_reference("pushm")
    return dataclasses.replace(config, hardware=config.hardware.replace(**hardware))


def checker(config: CheckConfig) -> Checker:
    return start(config, resolve_factory(REFERENCE_KERNEL))


def step(checker: Checker, wanted: Callable[[tuple[object, ...]], bool]) -> StepRecord:
    """Take the first enabled choice ``wanted`` accepts, else the first that runs no
    process (the disk finishing a transfer), else any; no violation."""
    enabled = checker.choices()
    others = [c for c in enabled if c[0] != "run"] or enabled
    choice = next((c for c in enabled if wanted(c)), others[0])
    record, violation = checker.step(choice)
    assert violation is None, violation.explain()
    return record


def runs(pid: int) -> Callable[[tuple[object, ...]], bool]:
    return lambda choice: choice == ("run", pid)


def until_partial_write(checker: Checker) -> StepRecord:
    """Run the pusher (and the disk) until its PUSHM faults after a write."""
    for _ in range(200):
        record = step(checker, runs(PUSHER))
        result = record.result
        if record.choice != ("run", PUSHER) or result is None:
            continue
        if result.fault is not None and result.writes:
            return record
    raise AssertionError("the PUSHM never faulted after a write")


def spec_word(checker: Checker, pid: int, va: int) -> int:
    """The word at ``va`` of ``pid``'s memory as the spec holds it."""
    process = checker.spec_state.process(pid)
    assert process is not None
    mapping = process.mapping(va // 8)
    assert mapping is not None
    pages = checker.spec_state.object(mapping.key)
    assert pages is not None
    return pages[mapping.index][va % 8]


@pytest.mark.parametrize("restart", RESTART_VARIANTS)
def test_another_process_reads_a_push_that_has_not_retired(restart: str) -> None:
    system = checker(push_config(restart=restart))
    record = until_partial_write(system)
    assert record.result is not None and not record.result.retired
    assert record.result.fault_point == "push"
    assert record.result.writes == ((SHARED_WORD, 66),)
    # Memory keeps the write, and so does the spec: the data word is not written yet.
    assert spec_word(system, PUSHER, SHARED_WORD) == 66
    assert spec_word(system, PUSHER, DATA_WORD) == 0
    while system.spec_state.process(READER) is not None:
        step(system, runs(READER))
    assert system.system.machine.console == (66,)
    assert spec_word(system, PUSHER, DATA_WORD) == 0  # the PUSHM has still not retired
    while spec_word(system, PUSHER, DATA_WORD) == 0:
        step(system, runs(PUSHER))
    assert spec_word(system, PUSHER, SHARED_WORD) == 66
    drive(system, seed=0)
    assert system.system.machine.console == (66,)


@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
@pytest.mark.parametrize("restart", RESTART_VARIANTS)
def test_a_partial_push_restarts_on_every_format_and_variant(page_table: str, restart: str) -> None:
    reached: set[str] = set()
    for seed in range(3):
        reached |= drive(checker(push_config(page_table=page_table, restart=restart)), seed)
    assert {"partial_write", f"restart:{restart}:push"} <= reached


@pytest.mark.parametrize("refill", ["hardware", "software"])
@pytest.mark.parametrize("tagged", [True, False])
def test_a_partial_push_restarts_on_every_kind_of_tlb(refill: str, tagged: bool) -> None:
    hardware = {"tlb_refill": refill, "tlb_tagged": tagged, "tlb_entries": 4}
    reached: set[str] = set()
    for restart in RESTART_VARIANTS:
        reached |= drive(checker(push_config(restart=restart, **hardware)), seed=1)
    assert "partial_write" in reached
    assert {f"restart:{restart}:push" for restart in RESTART_VARIANTS} <= reached


def _writes_wrongly(real: Callable[..., isa.Outcome]) -> Callable[..., isa.Outcome]:
    """A PUSHM whose first write, when a later one faults, is one more than it should be."""

    def push(
        instruction: isa.Instruction, state: isa.ArchState, next_pc: int, port: isa.MemoryPort
    ) -> isa.Outcome:
        outcome = real(instruction, state, next_pc, port)
        if isinstance(outcome, isa.Faulted) and outcome.writes:
            (va, value), *rest = outcome.writes
            port.store(va, value + 1)
            return isa.Faulted(
                outcome.fault,
                outcome.state,
                outcome.side_effects,
                outcome.fault_point,
                ((va, value + 1), *rest),
            )
        return outcome

    return push


def test_a_write_before_a_fault_that_the_spec_does_not_make_is_refinement_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isa, "_push", _writes_wrongly(isa._push))
    system = checker(push_config())
    found: Violation | None = None
    for _ in range(200):
        enabled = system.choices()
        choice = next((c for c in enabled if c == ("run", PUSHER)), enabled[0])
        _, found = system.step(choice)
        if found is not None:
            break
    assert found is not None and found.property == "refinement"
    assert "wrote 67 at 24 before its fault, the spec writes 66 at 24" in found.explain()


def test_the_course_restart_test_runs_as_printed_on_every_variant() -> None:
    """docs/course.md's instruction-restart test, as printed: a campaign of each variant
    with the reference kernel holds every property and faults after a PUSHM's write."""
    config = course_example("An instruction-restart test")
    variants = config.expand()
    assert [run.hardware.restart for _, run in variants] == list(RESTART_VARIANTS)
    for _, variant in variants:
        campaign, failure = run_campaign(
            variant,
            resolve_factory(REFERENCE_KERNEL),
            REFERENCE_KERNEL,
            examples=10,
            steps=variant.budget.steps,
        )
        assert failure is None, failure.violation
        counts = campaign.coverage.counts
        assert counts["partial_write"] > 0, variant.hardware.restart
        assert counts[f"restart:{variant.hardware.restart}:push"] > 0
        assert counts[f"restart:{variant.hardware.restart}:dst"] > 0
