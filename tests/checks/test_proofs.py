"""The z3 proofs are about the code the kernel runs, and can fail.

Every obligation is proved; every inductive one is refuted by a seeded
mutant of its transition, with a concrete counterexample the runtime
predicates confirm; the runtime and z3 encodings of the invariants agree on
generated states; and the kernel's own run keeps the same invariants.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import z3
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pagingcheck.checks import proofs
from pagingcheck.checks.cli import cli
from pagingcheck.checks.proofs import bookkeeping as bk
from pagingcheck.checks.proofs import mappings
from pagingcheck.checks.proofs.bookkeeping import FRAMES, PARTS, SLOTS
from pagingcheck.impl.lib import framestate as fs
from pagingcheck.impl.lib import logic, slotstate
from pagingcheck.impl.lib import mapping as mp
from pagingcheck.impl.lib.counted import NOTHING, Counted, Invariant
from pagingcheck.model import bits


@pytest.fixture(scope="module")
def outcomes() -> list[proofs.Outcome]:
    return proofs.prove_all()


def test_every_obligation_is_proved(outcomes: list[proofs.Outcome]) -> None:
    for part in PARTS:
        mine = [o for o in outcomes if o.name.startswith(f"{part.name}: ")]
        steps = len(part.transitions) * len(part.invariants)
        assert len(mine) == len(part.invariants) + len(part.transitions) + steps
    mine = [o for o in outcomes if o.name.startswith("mappings: ")]
    transitions, invariants = len(mp.TRANSITIONS), len(mp.INVARIANTS)
    assert len(mine) == invariants + transitions + transitions * invariants
    assert [o.name for o in outcomes if o.verdict != "proved"] == []
    assert len({o.name for o in outcomes}) == len(outcomes)


def test_each_part_declares_every_table_of_its_state() -> None:
    for part in PARTS:
        assert {f.name for f in dataclasses.fields(part.state)} == {*part.absent, "owner"}


def test_every_inductive_obligation_is_refuted_by_a_mutant(
    outcomes: list[proofs.Outcome],
) -> None:
    steps = [o for o in outcomes if " keeps " in o.name]
    assert steps and all(o.detail.startswith("refuted when ") for o in steps)


def test_every_transition_can_be_taken_from_a_reachable_state(
    outcomes: list[proofs.Outcome],
) -> None:
    enabled = [o for o in outcomes if o.name.endswith("can be taken")]
    assert len(enabled) == sum(len(part.transitions) for part in PARTS) + len(mp.TRANSITIONS)
    assert all(o.verdict == "proved" and o.detail.startswith("after ") for o in enabled)


@pytest.mark.parametrize(
    ("part", "transition", "bug"),
    [
        (FRAMES, "reserve", "a busy frame is taken"),
        (FRAMES, "release", "a frame others still map is freed"),
        (SLOTS, "release", "a shared slot is freed while another process uses it"),
        (SLOTS, "allocate", "a taken slot is handed to a second page"),
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_the_classic_bugs_are_refuted_with_a_state_that_shows_them(
    part: bk.Part, transition: str, bug: str
) -> None:
    mutant = bk.MUTATIONS["guard dropped"](part, part.transition(transition))
    refuted = []
    for invariant in part.invariants:
        found = bk.bounded_counterexample(part, transition, invariant, mutant)
        if found is None:
            continue
        before, _, after = found
        assert part.violations(before) == []
        assert any(v.startswith(invariant.name) for v in part.violations(after))
        refuted.append(invariant.name)
    assert refuted, bug


@pytest.mark.parametrize(
    ("part", "names"),
    [(FRAMES, ("reserve", "release", "map_user", "evict_user")), (SLOTS, ("release", "orphan"))],
    ids=["frames", "slots"],
)
def test_a_transition_that_keeps_its_invariants_has_no_bounded_counterexample(
    part: bk.Part, names: tuple[str, ...]
) -> None:
    for name in names:
        for invariant in part.invariants:
            assert bk.bounded_counterexample(part, name, invariant) is None


@pytest.mark.usefixtures("first_proofs")
def test_an_unknown_verdict_is_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    outcome = bk.step_obligation(FRAMES, "reserve", fs.INVARIANTS[0])
    assert outcome.verdict == "unknown" and outcome.detail.startswith("z3:")
    result = CliRunner().invoke(cli, ["prove", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


# -- two encodings, one truth -----------------------------------------------------------------


@st.composite
def reached_states(draw: st.DrawFn, part: bk.Part) -> Counted:
    """States reached by transitions from the empty one, some taken with their guard
    false (so broken states are generated too)."""
    state = part.empty(range(3))
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(sorted(part.transitions)))
        op, users = part.transitions[name]
        args = [draw(st.integers(0, 2))] + [draw(st.integers(0, 3)) for _ in range(users)]
        guard, after = op(state, *args)
        if guard or draw(st.integers(0, 9)) == 0:
            state = after
    return state


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.name)
def test_the_runtime_and_z3_invariants_agree(part: bk.Part) -> None:
    @settings(max_examples=120, deadline=None)
    @given(reached_states(part))
    def agree(state: Counted) -> None:
        solver = z3.Solver()
        solver.set("timeout", 10_000)
        solver.add(z3.Not(bk.all_invariants(part, bk.as_arrays(part, state))))
        verdict = solver.check()
        assert verdict != z3.unknown
        assert (verdict == z3.unsat) == (part.violations(state) == []), part.violations(state)

    agree()


def test_the_runtime_predicates_catch_a_broken_count() -> None:
    _, state = fs.reserve(fs.empty(range(2)), 0)
    _, state = fs.install(state, 0, (1, 4))
    assert fs.violations(state) == []
    broken = fs.FrameState(**{**state.__dict__, "refcount": {0: 2, 1: 0}})
    assert fs.violations(broken) == ["references_held at (0, 1)"]


# -- the command ------------------------------------------------------------------------------


@pytest.mark.usefixtures("first_proofs")
def test_prove_prints_a_table_and_json() -> None:
    result = CliRunner().invoke(cli, ["prove"])
    assert result.exit_code == 0
    for part in ("frames", "mappings", "backup", "translation"):
        assert f"PROVED   {part}: " in result.stdout
    assert "prove: 4 of 4 obligations proved" in result.stdout
    # prove --json is run, and checked against its documented shape and the shipped
    # schema, by tests/test_docs.py: one more whole proof run here would only cost time.


def test_the_slot_predicates_catch_a_shared_slot_freed_early() -> None:
    _, state = slotstate.allocate(slotstate.empty(range(2)), 0, (1, 4))
    _, state = slotstate.add_user(state, 0, (2, 4))
    assert slotstate.violations(state) == []
    freed = dataclasses.replace(state, allocated={0: False, 1: False}, free={0: True, 1: True})
    assert "slots_consistent at (0,)" in slotstate.violations(freed)
    assert "slot_users_counted at ((1, 4),)" in slotstate.violations(freed)


# -- PTE words, TLB entries, dirty pages ---------------------------------------------------------


@pytest.mark.parametrize(
    ("transition", "mutation", "broken"),
    [
        ("unmap", "TLB not invalidated", "tlb_agrees"),
        ("unmap", "M bit not harvested", "writes_recorded"),
        ("clear_referenced", "TLB not invalidated", "tlb_agrees"),
        ("discard", "guard dropped", "no_dirty_dropped"),
        ("access", "PTE not written", "tlb_agrees"),
        # A fork's write-protect that leaves the writable TLB entry of a shared page.
        ("protect", "TLB not invalidated", "copies_read_only"),
        # A page mapped shared copy-on-write with its protection, write included.
        ("map_page", "guard dropped", "copies_read_only"),
    ],
)
def test_the_classic_tlb_and_dirty_bugs_are_refuted(
    transition: str, mutation: str, broken: str
) -> None:
    op = mp.TRANSITIONS[transition][0]
    invariant = next(i for i in mp.INVARIANTS if i.name == broken)
    mutant = mappings.MUTATIONS[mutation](op)
    # Refuted by the bounded search, as prove does: z3 may not settle a quantified
    # satisfiable query in time, so unbounded refutation is not asked for.
    found = mappings.bounded_counterexample(transition, invariant, mutant)
    assert found is not None
    before, args, _ = found
    _, after = mutant(before, *args)
    assert mp.violations(before) == []
    assert any(v.startswith(broken + " ") for v in mp.violations(after))
    assert mappings.bounded_counterexample(transition, invariant, op) is None


@st.composite
def mapping_states(draw: st.DrawFn) -> mp.MappingState:
    """Mapping states reached from the empty one, some steps taken against their guard."""
    words = st.sampled_from([*mappings.WITNESS_WORDS, 0, bits.make_pte(6, bits.READ | bits.USER)])
    state = mp.empty()
    for _ in range(draw(st.integers(0, 10))):
        name = draw(st.sampled_from(sorted(mp.TRANSITIONS)))
        op, kinds = mp.TRANSITIONS[name]
        extra = [draw(words) if kind == "word" else draw(st.booleans()) for kind in kinds]
        guard, after = op(state, draw(st.integers(0, 2)), *extra)
        if guard or draw(st.integers(0, 5)) == 0:
            state = after
    return state


@settings(max_examples=150, deadline=None)
@given(mapping_states())
def test_the_runtime_and_z3_mapping_invariants_agree(state: mp.MappingState) -> None:
    solver = z3.Solver()
    solver.set("timeout", 10_000)
    solver.add(z3.Not(mappings.all_invariants(mappings.as_arrays(state))))
    verdict = solver.check()
    assert verdict != z3.unknown
    assert (verdict == z3.unsat) == (mp.violations(state) == []), mp.violations(state)


# -- refuted steps: a concrete counterexample, reachable or not ---------------------------------


def test_a_wrong_transition_is_refuted_with_a_reachable_counterexample() -> None:
    reckless = bk.MUTATIONS["guard dropped"](FRAMES, fs.reserve)
    part = dataclasses.replace(FRAMES, transitions={**fs.TRANSITIONS, "reserve": (reckless, 0)})
    users_counted = next(i for i in fs.INVARIANTS if i.name == "users_counted")
    outcome = bk.step_verdict(part, "reserve", users_counted)
    assert outcome.verdict == "refuted"
    assert outcome.detail.startswith("reachable counterexample: reserve(")
    path = outcome.detail.split("reached by ")[1]
    assert path.startswith("reserve(") and "install(" in path


def test_a_missing_invariant_is_refuted_with_an_unreachable_counterexample() -> None:
    """Alone, "no user maps a free frame" is true of every reachable state but not
    inductive: without the count's bijection, releasing a frame whose last counted
    reference (unreachably) is another user leaves that user mapping a free frame."""
    alone = Invariant(
        "free_unmapped",
        "No user maps a frame on the free list.",
        ("user",),
        lambda s, user: logic.implies(
            s.holding(user) != NOTHING, logic.not_(logic.select(s.free, s.holding(user), False))
        ),
    )
    part = dataclasses.replace(FRAMES, invariants=(alone,))
    outcome = bk.step_verdict(part, "release", alone)
    assert outcome.verdict == "refuted"
    assert outcome.detail.startswith("unreachable-state counterexample: release(")
    _, explored = bk.reachable(part, fs.empty(range(1)))
    assert explored > 100  # the whole bounded space was searched, not a few states


def test_a_refuted_step_is_looked_for_on_the_whole_system_and_its_trace_replays(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The kernel runs the very transition that is refuted, so its bug shows on the
    system: ``prove`` finds it there and writes a trace that ``replay`` reproduces."""
    op, users = fs.TRANSITIONS["unmap_user"]
    buggy = bk.MUTATIONS["put on the free list"](FRAMES, op)
    monkeypatch.setitem(fs.TRANSITIONS, "unmap_user", (buggy, users))
    monkeypatch.setattr(proofs, "obligations", bk.obligations)  # the part that is refuted
    result = CliRunner().invoke(cli, ["prove", "--json", "--traces", str(tmp_path)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    refuted = [o for o in data["results"] if o.get("verdict") == "refuted"]
    assert refuted and all(o["name"].startswith("frames: unmap_user keeps ") for o in refuted)
    assert refuted[0]["detail"].startswith("reachable counterexample: unmap_user(")
    (system,) = [r for r in data["results"] if r["name"] == "reproduced"]
    found = data["violation"]
    assert system["ok"] is True and found == system["violation"]
    assert Path(found["trace"]).exists() and found["step"] >= 1
    replayed = CliRunner().invoke(cli, ["replay", found["trace"], "--json"])
    assert replayed.exit_code == 1
    assert json.loads(replayed.stdout)["violation"]["property"] == found["property"]
