"""The z3 proofs are about the code the kernel runs, and can fail.

Every obligation is proved; every inductive one is refuted by a seeded
mutant of its transition, with a concrete counterexample the runtime
predicates confirm; the runtime and z3 encodings of the invariants agree on
generated states; and the kernel's own run keeps the same invariants.
"""

from __future__ import annotations

import json

import pytest
import z3
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pagingcheck.checks import proofs
from pagingcheck.checks.cli import cli
from pagingcheck.checks.proofs import frames
from pagingcheck.impl.lib import framestate as fs


@pytest.fixture(scope="module")
def outcomes() -> list[proofs.Outcome]:
    return proofs.prove_all()


def test_every_obligation_is_proved(outcomes: list[proofs.Outcome]) -> None:
    steps = len(fs.TRANSITIONS) * len(fs.INVARIANTS)
    framed = [o for o in outcomes if not o.name.startswith("translation: ")]
    assert len(framed) == len(fs.INVARIANTS) + len(fs.TRANSITIONS) + steps
    assert [o.name for o in outcomes if o.verdict != "proved"] == []


def test_every_inductive_obligation_is_refuted_by_a_mutant(
    outcomes: list[proofs.Outcome],
) -> None:
    steps = [o for o in outcomes if " keeps " in o.name]
    assert steps and all(o.detail.startswith("refuted when ") for o in steps)


def test_every_transition_can_be_taken_from_a_reachable_state(
    outcomes: list[proofs.Outcome],
) -> None:
    enabled = [o for o in outcomes if o.name.endswith("can be taken")]
    assert len(enabled) == len(fs.TRANSITIONS)
    assert all(o.verdict == "proved" and o.detail.startswith("after ") for o in enabled)


@pytest.mark.parametrize(
    ("transition", "bug"),
    [
        ("reserve", "a busy frame is taken"),
        ("release", "a frame others still map is freed"),
    ],
)
def test_the_classic_bugs_are_refuted_with_a_state_that_shows_them(
    transition: str, bug: str
) -> None:
    mutant = frames.MUTATIONS["guard dropped"](fs.TRANSITIONS[transition][0])
    refuted = []
    for invariant in fs.INVARIANTS:
        found = frames.bounded_counterexample(transition, invariant, mutant)
        if found is None:
            continue
        before, _, after = found
        assert fs.violations(before) == []
        assert any(v.startswith(invariant.name) for v in fs.violations(after))
        refuted.append(invariant.name)
    assert refuted, bug


def test_a_transition_that_keeps_its_invariants_has_no_bounded_counterexample() -> None:
    for name in ("reserve", "release", "map_user", "evict_user"):
        for invariant in fs.INVARIANTS:
            assert frames.bounded_counterexample(name, invariant) is None


def test_an_unknown_verdict_is_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    outcome = frames.step_obligation("reserve", fs.INVARIANTS[0])
    assert outcome.verdict == "unknown" and outcome.detail.startswith("z3:")
    result = CliRunner().invoke(cli, ["prove", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


# -- two encodings, one truth -----------------------------------------------------------------


@st.composite
def frame_states(draw: st.DrawFn) -> fs.FrameState:
    """States reached by transitions from the empty one, some taken with their guard
    false (so broken states are generated too)."""
    state = fs.empty(range(3))
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(sorted(fs.TRANSITIONS)))
        op, users = fs.TRANSITIONS[name]
        args = [draw(st.integers(0, 2))] + [draw(st.integers(0, 3)) for _ in range(users)]
        guard, after = op(state, *args)
        if guard or draw(st.integers(0, 9)) == 0:
            state = after
    return state


@settings(max_examples=150, deadline=None)
@given(frame_states())
def test_the_runtime_and_z3_invariants_agree(state: fs.FrameState) -> None:
    solver = z3.Solver()
    solver.set("timeout", 10_000)
    solver.add(z3.Not(frames.all_invariants(frames.as_arrays(state))))
    verdict = solver.check()
    assert verdict != z3.unknown
    assert (verdict == z3.unsat) == (fs.violations(state) == []), fs.violations(state)


def test_the_runtime_predicates_catch_a_broken_count() -> None:
    _, state = fs.reserve(fs.empty(range(2)), 0)
    _, state = fs.install(state, 0, (1, 4))
    assert fs.violations(state) == []
    broken = fs.FrameState(**{**state.__dict__, "refcount": {0: 2, 1: 0}})
    assert fs.violations(broken) == ["references_held at (0, 1)"]


# -- the command ------------------------------------------------------------------------------


def test_prove_prints_a_table_and_json() -> None:
    result = CliRunner().invoke(cli, ["prove"])
    assert result.exit_code == 0
    assert "PROVED   release keeps references_held" in result.stdout
    assert "obligations proved" in result.stdout
    data = json.loads(CliRunner().invoke(cli, ["prove", "--json"]).stdout)
    assert data["ok"] is True
    assert {"name", "verdict", "seconds"} <= set(data["obligations"][0])
