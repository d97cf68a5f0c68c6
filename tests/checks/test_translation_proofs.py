"""The translation proofs are about the walk and editors that run, and can fail.

Every translation obligation is proved; each is refuted by its named seeded
mutant; an obligation whose mutant does not refute it is unknown; and the
symbolic engine, run on the real code with its inputs pinned to concrete
values, computes exactly what the concrete run computes (on tables the
kernel library built, and on garbage memory).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from pagingcheck.checks.proofs import Outcome, translation
from pagingcheck.checks.proofs.symbolic import (
    ADDRESS,
    WORD,
    Engine,
    SymbolicMemory,
    explore,
    lift,
)
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.pagetable import EDITORS
from pagingcheck.model import bits
from pagingcheck.model.errors import InternalError
from pagingcheck.model.pagetable import MultilevelFormat, make_format


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return [obligation() for obligation in translation.obligations()]


def test_every_translation_obligation_is_proved(outcomes: list[Outcome]) -> None:
    assert len(outcomes) == len(translation.MUTANT_FOR)
    assert [(o.name, o.detail) for o in outcomes if o.verdict != "proved"] == []
    kinds = {o.name.split()[1] for o in outcomes}
    assert kinds == set(translation.CONFIGS)


def test_each_proof_names_the_mutant_that_refutes_it(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        kind, goal = outcome.name.removeprefix("translation: ").split(" ", 1)
        assert outcome.detail.endswith(f"refuted when {translation.MUTANT_FOR[(kind, goal)]}")


EDIT_GOALS = sorted(key for key in translation.MUTANT_FOR if key[1] != "split is a bijection")


@pytest.mark.parametrize(("kind", "goal"), EDIT_GOALS)
def test_every_mutant_refutes_its_obligation(kind: str, goal: str) -> None:
    what = next(
        w for w in ("set_pte", "clear", "sequence") if goal in translation.goals_of(kind, w)
    )
    mutant = translation.MUTANT_FOR[(kind, goal)]
    assert translation.mutant_refutes(kind, what, goal, mutant)


def test_the_split_mutant_is_refuted_with_a_configuration() -> None:
    found = translation.split_counterexample(translation.ShiftedSplit)
    assert found is not None and found.startswith("va_pages=")
    assert translation.split_counterexample(MultilevelFormat) is None


class EvenOnlySplit(MultilevelFormat):
    """A split right for even slices only: every level's shift is counted in the leaf's
    slice width, as code written before uneven splits existed would."""

    def index(self, vpn: int, level: int) -> int:
        shift = (self.leaf_level - level) * self.level_bits[-1]
        return (vpn >> shift) & (self.table_size(level) - 1)


def test_the_split_proof_covers_uneven_splits() -> None:
    found = translation.split_counterexample(EvenOnlySplit)
    assert found is not None and "level_bits=[" in found
    even = [list(s) for s in translation.splits(4) if len(set(s)) == 1]
    assert sorted(even) == [[1, 1, 1, 1], [2, 2], [4]]  # where the bug cannot show
    assert not any(f"level_bits={split}:" in found for split in even)


def test_an_obligation_its_mutant_cannot_refute_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    # Linear set_pte allocates nothing, so an allocator handing out used words changes nothing.
    key = ("linear", "set_pte gives the new entry")
    monkeypatch.setitem(translation.MUTANT_FOR, key, "allocator hands out words in use")
    outcome = translation.goal_verdict("linear", "set_pte", key[1])
    assert outcome.verdict == "unknown" and "does not refute" in outcome.detail


def test_a_real_bug_is_refuted_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    # Run the proof itself on a mutant harness: it must come out refuted, with a model.
    monkeypatch.setattr(translation, "REAL", translation.MUTATIONS["last write dropped"])
    translation.exploration.cache_clear()
    try:
        outcome = translation.goal_verdict("hashed", "set_pte", "set_pte gives the new entry")
    finally:
        translation.exploration.cache_clear()
    assert outcome.verdict == "refuted" and "vpn" in outcome.detail


# -- the engine agrees with concrete execution ---------------------------------------------


class DictMemory:
    """Concrete memory for the comparison: zero where never written, 32-bit words."""

    def __init__(self, words: dict[int, int] | None = None) -> None:
        self.words = dict(words or {})

    def read(self, pa: int) -> int:
        return self.words.get(pa, 0)

    def write(self, pa: int, value: int) -> None:
        self.words[pa] = value & 0xFFFF_FFFF


def symbolic_copy(engine: Engine, words: dict[int, int]) -> SymbolicMemory:
    """Symbolic memory whose contents are pinned to ``words`` (zero elsewhere)."""
    array = z3.K(ADDRESS, z3.BitVecVal(0, WORD))
    for address, value in words.items():
        array = z3.Store(array, address, value)
    return SymbolicMemory(engine, array)


def pinned(engine: Engine, name: str, value: int) -> Any:
    """A symbolic word the path assumes equal to ``value``."""
    word = engine.word(name)
    engine.assume(word == value)
    return word


def translations(layout: Any, memory: Any, root: Any, asids: range) -> dict[tuple[int, int], Any]:
    return {
        (asid, vpn): translation.translation(layout.walk(memory, root, asid, vpn))
        for asid in asids
        for vpn in range(layout.config.va_pages)
    }


Op = tuple[bool, int, int, int]  # map?, asid, vpn, frame index or PTE seed


def ops_strategy() -> st.SearchStrategy[list[Op]]:
    op = st.tuples(st.booleans(), st.integers(0, 1), st.integers(0, 7), st.integers(0, 2**32 - 1))
    return st.lists(op, max_size=6)


def pte_for(kind: str, seed: int, config: Any) -> int:
    """A PTE from a seed: any word, but for the inverted table a PTE of a user frame."""
    if kind != "inverted":
        return seed
    frame = config.first_user_frame + seed % config.user_frames
    return bits.make_pte(frame, seed >> 8, present=seed % 5 != 0)


def apply(editor: Any, memory: Any, kalloc: Any, root: Any, op: tuple[bool, Any, Any, Any]) -> None:
    mapped, asid, vpn, pte = op
    if mapped:
        editor.set_pte(memory, kalloc, root, asid, vpn, pte)
    else:
        editor.clear(memory, kalloc, root, asid, vpn)


def concrete(kind: str, config: Any, op: Op) -> tuple[bool, int, int, int]:
    mapped, asid, vpn, seed = op
    return mapped, asid, vpn % config.va_pages, pte_for(kind, seed, config)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(translation.CONFIGS)),
    history=ops_strategy(),
    last=ops_strategy().map(lambda ops: ops[:1]),
)
def test_the_engine_runs_the_editors_and_walks_as_python_does(
    kind: str, history: list[Op], last: list[Op]
) -> None:
    config = translation.CONFIGS[kind]
    layout = make_format(config)
    editor = EDITORS[kind](layout)
    asids = range(translation.ASIDS if kind == "inverted" else 1)
    memory, kalloc = DictMemory(), KernelAllocator(config)
    system_root = editor.boot(memory, kalloc)
    root = editor.create(memory, kalloc, 0, system_root or 0)
    assert root is not None
    for op in history:
        # A PTE for a frame that holds another page: the editor refuses, memory unchanged.
        with contextlib.suppress(InternalError):
            apply(editor, memory, kalloc, root, concrete(kind, config, op))
    before, allocator = dict(memory.words), kalloc.copy()
    steps = [concrete(kind, config, op) for op in last]
    for step in steps:
        try:
            apply(editor, memory, kalloc, root, step)
        except InternalError:
            return
    expected = translations(layout, memory, root, asids)

    def body(engine: Engine) -> dict[str, Any]:
        symbolic = symbolic_copy(engine, before)
        sym_root = pinned(engine, "root", root)
        for mapped, asid, vpn, pte in steps:
            op = (mapped, asid, pinned(engine, "vpn", vpn), pinned(engine, "pte", pte))
            apply(editor, symbolic, allocator.copy(), sym_root, op)
        found = translations(layout, symbolic, sym_root, asids)
        goals = {f"walk {page}": found[page] == expected[page] for page in expected}
        for address, value in memory.words.items():
            goals[f"word {address}"] = lift(symbolic.read(address)) == value
        return goals

    result = explore(body)
    assert result.paths == 1 and not result.undecided and not result.error
    assert result.refuted == {}


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(translation.CONFIGS)),
    words=st.dictionaries(
        st.integers(0, 40), st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1))
    ),
    root=st.integers(0, 40),
)
def test_the_engine_walks_garbage_as_python_does(
    kind: str, words: dict[int, int], root: int
) -> None:
    layout = make_format(translation.CONFIGS[kind])
    asids = range(translation.ASIDS)
    expected = translations(layout, DictMemory(words), root, asids)

    def body(engine: Engine) -> dict[str, Any]:
        found = translations(
            layout, symbolic_copy(engine, words), pinned(engine, "root", root), asids
        )
        return {f"walk {page}": found[page] == expected[page] for page in expected}

    result = explore(body)
    assert result.paths == 1 and not result.undecided and not result.error
    assert result.refuted == {}
