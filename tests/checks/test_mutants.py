"""Every seeded bug is caught, by the property that names it, and its trace replays.

The mutants run with the reference kernel's own guards off, so what catches
them is the checker; the laundered twins hide the bookkeeping evidence from
the view, and the refinement-only bugs corrupt nothing but data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pagingcheck.checks import minimize, traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.jobs import default_jobs
from pagingcheck.checks.mutants import KillRow, kill_matrix
from pagingcheck.checks.refinement import CONDUCT_PROPERTIES, STEP_PROPERTIES
from pagingcheck.checks.runner import resolve_factory
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.mutants import MUTANTS, MutantKernel, factory
from pagingcheck.model.config import HardwareConfig

#: States the breadth-first searches may visit for each trace of the kill matrix the tests
#: make: enough for searches to shorten several, in less time than the full budget of
#: ``pagingcheck mutants`` (checks/minimize.py) takes.
QUICK_SEARCH_STATES = 600
#: Seconds each campaign of the tests' kill matrix may shrink its trace (minimizing takes
#: up to twice as long again): the matrix is most of the default test run's time.
QUICK_SHRINK_SECONDS = 1


@pytest.fixture(scope="module")
def matrix(default_config: CheckConfig, tmp_path_factory: pytest.TempPathFactory) -> list[KillRow]:
    """The kill matrix of every mutant on the default configuration, on every core, with
    smaller shrinking and search budgets than ``pagingcheck mutants`` (the workers are
    forked, so they inherit them)."""
    budget = dataclasses.replace(default_config.budget, shrink_seconds=QUICK_SHRINK_SECONDS)
    config = dataclasses.replace(default_config, budget=budget)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(minimize, "SEARCH_STATES", QUICK_SEARCH_STATES)
        return kill_matrix(config, tmp_path_factory.mktemp("traces"), jobs=default_jobs())


def test_every_mutant_is_killed_by_its_property(matrix: list[KillRow]) -> None:
    assert [row.name for row in matrix] == [m.name for m in MUTANTS]
    for row in matrix:
        assert row.killed, f"{row.name} survived"
        assert row.by == row.expected, f"{row.name} was caught by {row.by}, not {row.expected}"


def test_every_property_kills_some_mutant(matrix: list[KillRow]) -> None:
    killers = {row.by for row in matrix}
    assert set(INVARIANTS) <= killers
    # A kernel's conduct as a program is shown by hostile kernels (test_containment.py).
    assert set(STEP_PROPERTIES) - CONDUCT_PROPERTIES <= killers


def test_laundered_and_refinement_only_bugs_are_caught_as_pinned(matrix: list[KillRow]) -> None:
    by = {row.name: row.by for row in matrix}
    laundered = {name: killer for name, killer in by.items() if name.endswith("_laundered")}
    assert len(laundered) == 7
    assert set(laundered.values()) <= {
        "busy_frame_exclusive",
        "frame_table_agrees",
        "freed_at_last_reference",
        "homes_agree",
        "no_leaks",
        "refinement",  # one slot for two private pages: the words one of them reads
    }
    for name in ("zero_fill_swapped_page", "pagein_from_image", "writeback_to_wrong_slot"):
        assert by[name] == "refinement"


def test_mutants_run_with_the_kernels_guards_off() -> None:
    for mutant in MUTANTS:
        kernel = factory(mutant)(HardwareConfig(), KernelConfig())
        assert isinstance(kernel, MutantKernel) and kernel.t.guarded is False
        assert kernel.copy().t.guarded is False


def test_killed_mutant_traces_replay_to_the_same_violation(matrix: list[KillRow]) -> None:
    for row in matrix:
        assert row.trace is not None
        trace = traces.load(Path(row.trace).read_text(), row.trace)
        result = traces.replay(trace, resolve_factory(trace.implementation))
        assert result.violation is not None, row.name
        assert result.violation.property == row.by
        assert result.failing_step == row.trace_steps


def test_delta_debugging_shortens_traces_and_the_matrix_shows_by_how_much(
    matrix: list[KillRow],
) -> None:
    lengths = [(row.trace_steps_before, row.trace_steps) for row in matrix if row.killed]
    assert all(before is not None and after is not None for before, after in lengths)
    assert all(after <= before for before, after in lengths)  # type: ignore[operator]
    # Hypothesis's shrinking leaves steps that delta debugging can remove on several.
    assert sum(after < before for before, after in lengths) >= 5  # type: ignore[operator]


def test_the_search_shortens_traces_and_the_matrix_says_which(matrix: list[KillRow]) -> None:
    searched = [row for row in matrix if row.trace_searched]
    assert len(searched) >= 5
    for row in searched:
        assert row.trace_steps is not None and row.trace_steps_before is not None
        assert row.trace_steps < row.trace_steps_before, row.name
