"""Every seeded bug is caught, by the property that names it, and its trace replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.mutants import KillRow, kill_matrix
from pagingcheck.checks.refinement import STEP_PROPERTIES
from pagingcheck.impl.mutants import MUTANTS


@pytest.fixture(scope="module")
def matrix(default_config: CheckConfig, tmp_path_factory: pytest.TempPathFactory) -> list[KillRow]:
    """The kill matrix of every mutant on the default configuration."""
    return kill_matrix(default_config, tmp_path_factory.mktemp("traces"))


def test_every_mutant_is_killed_by_its_property(matrix: list[KillRow]) -> None:
    assert [row.name for row in matrix] == [m.name for m in MUTANTS]
    for row in matrix:
        assert row.killed, f"{row.name} survived"
        assert row.by == row.expected, f"{row.name} was caught by {row.by}, not {row.expected}"


def test_every_invariant_kills_some_mutant(matrix: list[KillRow]) -> None:
    killers = {row.by for row in matrix}
    assert set(INVARIANTS) <= killers
    assert {"restart_exact", "no_dirty_dropped"} <= killers & set(STEP_PROPERTIES)


def test_killed_mutant_traces_replay_to_the_same_violation(matrix: list[KillRow]) -> None:
    for row in matrix:
        assert row.trace is not None
        trace = traces.load(Path(row.trace).read_text(), row.trace)
        result = traces.replay(trace)
        assert result.violation is not None, row.name
        assert result.violation.property == row.by
        assert result.failing_step == row.trace_steps
