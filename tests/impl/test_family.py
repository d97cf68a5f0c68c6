"""EXEC and WAIT: the reference kernel against the spec on every page-table format and
restart variant, the spec's family bookkeeping, the program directory the port offers,
and progress while a parent sleeps in a WAIT."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import CheckConfig, Limits
from pagingcheck.checks.contained import contained_factory
from pagingcheck.checks.machines import run_campaign
from pagingcheck.checks.progress import Watchdog
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, KernelFactory, resolve_factory, start
from pagingcheck.checks.system import Choice, StepRecord
from pagingcheck.impl.interface import SpawnRefused
from pagingcheck.impl.reference import process
from pagingcheck.model.config import PAGE_TABLE_KINDS, RESTART_VARIANTS
from pagingcheck.model.errors import PortError
from pagingcheck.model.isa import EXEC_FAILED, KILLED, SYS_EXEC, WAIT_FAILED, ArchState
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import Family, SpecState
from tests.impl.test_fork import at_random, drive, prefer

SHELL, CHILD = 1, 2
ECHO_STATUS = 42
GEOMETRY = spec.Geometry(8, 8)


def family_config(**hardware: object) -> CheckConfig:
    """The reference configuration ``family`` on other hardware."""
    config = checkconfig.load_reference("family")
    return dataclasses.replace(config, hardware=config.hardware.replace(**hardware))


def _reference() -> KernelFactory:
    return resolve_factory(REFERENCE_KERNEL)


@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
@pytest.mark.parametrize("restart", RESTART_VARIANTS)
def test_the_shell_prints_what_its_child_printed_and_the_status_it_waited_for(
    page_table: str, restart: str
) -> None:
    checker = start(family_config(page_table=page_table, restart=restart), _reference())
    events, reached = drive(checker, prefer(SHELL, CHILD))
    assert bytes(checker.system.machine.console) == b"A" + bytes([ECHO_STATUS])
    assert {"fork", "exec", "wait_asleep"} <= reached
    assert events.count("exec") == 1 and events.count("wait") == 3


def test_a_child_that_exits_first_is_waited_for_without_sleeping() -> None:
    for seed in range(4):
        checker = start(family_config(), _reference())
        drive(checker, at_random(seed))
        assert bytes(checker.system.machine.console) == b"A*"

    def child_first(enabled: list[Choice], events: list[str]) -> Choice:
        """The child while it can run, else its transfers, and only then the shell."""
        waiting = [choice for choice in enabled if choice[0] == "disk"]
        return ("run", CHILD) if ("run", CHILD) in enabled else (waiting or enabled)[0]

    checker = start(family_config(), _reference())
    _, reached = drive(checker, child_first)
    assert "exec" in reached and "wait_asleep" not in reached
    assert bytes(checker.system.machine.console) == b"A*"


def test_a_software_tlb_runs_the_new_image_in_its_new_table() -> None:
    checker = start(family_config(tlb_refill="software", tlb_entries=4), _reference())
    _, reached = drive(checker, prefer(SHELL, CHILD))
    assert "exec" in reached and bytes(checker.system.machine.console) == b"A*"


def test_an_exec_the_kernel_cannot_serve_fails_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = start(family_config(), _reference())
    monkeypatch.setattr(process, "plan_creation", lambda *args: SpawnRefused("no memory"))
    trapped = run_until(checker, CHILD, lambda record: _syscall(record) == SYS_EXEC)
    assert trapped.result is not None and trapped.result.retired
    assert checker.observed.view.current == CHILD
    assert checker.system.machine.cpu.state.regs[0] == EXEC_FAILED
    assert checker.system.program_of(CHILD) == family_config().workload.programs[0]


def test_an_exec_of_a_program_the_workload_lacks_fails() -> None:
    state = spec.spawn(SpecState(), SHELL, family_config().workload.programs[0], 8, 8)
    regs = ArchState((0, 9, 0, 0, 0, 0, 0, 64), 5, 0)
    after, returned, program = spec.exec_program(state, SHELL, regs, (), GEOMETRY)
    assert after == state and program is None and returned.regs[0] == EXEC_FAILED


def test_spec_exec_starts_the_program_afresh_and_keeps_pid_family_and_console() -> None:
    shell, echo = family_config().workload.programs
    state = spec.spawn(SpecState(), SHELL, shell, 8, 8)
    regs = ArchState((0, 0, 0, 0, 0, 0, 0, 64), 0, 0)
    state, _ = spec.fork(state, SHELL, regs, CHILD)
    state = dataclasses.replace(state, console=(1, 2))
    child_regs = ArchState((3, 1, 5, 5, 5, 5, 5, 5), 9, 1)
    after, returned, program = spec.exec_program(state, CHILD, child_regs, (shell, echo), GEOMETRY)
    sp = echo.initial_stack_pointer(8, 8)
    assert program is echo and returned == ArchState((0,) * 7 + (sp,), echo.entry, 0)
    assert after.console == (1, 2) and after.family.parent(CHILD) == SHELL
    started = spec.spawn(SpecState(), CHILD, echo, 8, 8).process(CHILD)
    assert started is not None and after.process(CHILD) == started
    assert after.process(SHELL) == state.process(SHELL)


def test_spec_wait_returns_exited_children_blocks_on_live_ones_and_fails_without() -> None:
    program = family_config().workload.programs[0]
    state = spec.spawn(SpecState(), SHELL, program, 8, 8)
    regs = ArchState((0, 0, 0, 0, 0, 0, 0, 64), 0, 0)
    assert spec.wait(state, SHELL, regs, None) == (state, _r0(regs, WAIT_FAILED))
    state, _ = spec.fork(state, SHELL, regs, CHILD)
    state, _ = spec.fork(state, SHELL, regs, CHILD + 1)
    assert spec.wait(state, SHELL, regs, CHILD) is None  # both alive: asleep
    state = spec.exit_process(state, CHILD + 1, 7)
    state = spec.exit_process(state, CHILD)
    assert state.family.statuses(SHELL) == ((CHILD, KILLED), (CHILD + 1, 7))
    waited = spec.wait(state, SHELL, regs, CHILD + 1)
    assert waited is not None
    state, returned = waited
    assert returned.regs[:2] == (CHILD + 1, 7) and state.family.statuses(SHELL) == (
        (CHILD, KILLED),
    )
    wrong = spec.wait(state, SHELL, regs, 99)  # not an exited child: the spec's pick
    assert wrong is not None and wrong[1].regs[:2] == (CHILD, KILLED)


def test_spec_exit_orphans_children_and_drops_the_statuses_nobody_waits_for() -> None:
    program = family_config().workload.programs[0]
    state = spec.spawn(SpecState(), SHELL, program, 8, 8)
    regs = ArchState((0, 0, 0, 0, 0, 0, 0, 64), 0, 0)
    state, _ = spec.fork(state, SHELL, regs, CHILD)
    state, _ = spec.fork(state, SHELL, regs, CHILD + 1)
    state = spec.exit_process(state, CHILD + 1, 3)
    state = spec.exit_process(state, SHELL, 0)
    assert state.family.parent(CHILD) is None and state.family.exited == ()
    state = spec.exit_process(state, CHILD, 5)
    assert state.family.exited == ()


def test_the_family_is_no_part_of_equality_but_is_of_the_explorers_state() -> None:
    program = family_config().workload.programs[0]
    state = spec.spawn(SpecState(), SHELL, program, 8, 8)
    orphaned = dataclasses.replace(state, family=Family(exited=((SHELL, CHILD, 0),)))
    assert orphaned == state
    checker = start(family_config(), _reference())
    twin = checker.copy()
    twin.spec_state = dataclasses.replace(twin.spec_state, family=orphaned.family)
    assert twin.fingerprint() != checker.fingerprint()


def test_a_parent_asleep_in_wait_owes_no_progress_while_its_child_runs() -> None:
    checker = start(family_config(), _reference())
    run_until(checker, SHELL, _asleep)
    checker.watch_progress(2)
    for _ in range(3):  # the child runs on; the parent, asleep, is not starved
        _, violation = checker.step(("run", CHILD))
        assert violation is None, violation.explain()


def test_a_parent_whose_child_has_exited_owes_progress_again() -> None:
    watchdog = Watchdog(2)
    watchdog.start((SHELL,))
    record = StepRecord(("run", CHILD))
    assert watchdog.observe(record, (SHELL,), waiting=(SHELL,)) is None
    assert watchdog.observe(record, (SHELL,), waiting=(SHELL,)) is None
    assert watchdog.observe(record, (SHELL,)) is None
    violation = watchdog.observe(record, (SHELL,))
    assert violation is not None and violation.property == "progress"


def test_the_port_gives_the_installed_programs_and_none_past_them() -> None:
    checker = start(family_config(), _reference())
    port = checker.system.port
    with port.opened():
        assert port.image(1) == checker.system.images[1]
        assert port.image(2) is None
        with pytest.raises(PortError, match="program index"):
            port.image(-1)
    with pytest.raises(PortError):
        port.image(0)  # closed


def run_until(
    checker: Checker, pid: int, done: Callable[[StepRecord], bool], limit: int = 200
) -> StepRecord:
    """Run ``pid`` (else complete transfers) until ``done(record)``; every property checked."""
    for _ in range(limit):
        record, violation = checker.step(prefer(pid)(checker.choices(), []))
        assert violation is None, violation.explain()
        if done(record):
            return record
    raise AssertionError(f"process {pid} never got there")


def _syscall(record: StepRecord) -> int | None:
    return record.result.syscall if record.result is not None else None


def _asleep(record: StepRecord) -> bool:
    """Whether the step put its process to sleep in a WAIT."""
    return any(event.kind == "wait" and event.detail == "asleep" for event in record.events)


def _r0(regs: ArchState, value: int) -> ArchState:
    return dataclasses.replace(regs, regs=(value, *regs.regs[1:]))


def test_a_contained_kernel_asks_the_checker_for_the_program_it_execs() -> None:
    """The ``image`` port operation crosses the process boundary: the reference kernel run
    in a child process gets the image from the checker's machine, encoded and decoded."""
    factory = contained_factory(REFERENCE_KERNEL, Limits())
    try:
        checker = start(family_config(), factory)
        _, reached = drive(checker, prefer(SHELL, CHILD))
    finally:
        factory.host.stop()  # type: ignore[attr-defined]
    assert "exec" in reached and bytes(checker.system.machine.console) == b"A*"


def course_example(heading: str) -> CheckConfig:
    """The first configuration docs/course.md prints under ``heading``."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "course.md").read_text()
    section = page.split(f"## {heading}", 1)[1]
    return checkconfig.load_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_the_course_fork_bomb_runs_as_printed_and_reaches_what_it_requires() -> None:
    """docs/course.md's fork bomb, as printed: a campaign of it with the reference kernel
    holds every property and reaches the situations its configuration requires."""
    config = course_example("A fork bomb under memory pressure")
    _, variant = config.expand()[0]
    campaign, failure = run_campaign(
        variant,
        _reference(),
        REFERENCE_KERNEL,
        examples=variant.budget.examples,
        steps=variant.budget.steps,
    )
    assert failure is None, failure.violation
    assert campaign.coverage.unreached(config.coverage) == []
    assert campaign.coverage.counts["fork"] >= 3
