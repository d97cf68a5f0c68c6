"""z3 proofs that every page-table format translates as the kernel library edits it.

The code proved is the code that runs: the MMU's walk of each format
(``pagingcheck.model.pagetable``) and the kernel library's ``create``,
``set_pte`` and ``clear`` (``pagingcheck.impl.lib.pagetable``), executed
unchanged on symbolic memory by :mod:`.symbolic`, which explores every
feasible path through their branches. The memory's contents, the root,
the vpn, the other page and the PTE are symbolic; the sizes that fix a
table's shape are the small configurations in :data:`CONFIGS`.

Per format, over a table satisfying the format's well-formedness
(:data:`SHAPES`: the tables lie in the kernel region and do not overlap;
a multi-level tree's upper words point at tables or are zero; a hashed or
inverted chain ends at null, one node per page, in the chain its hash
names), the obligations are:

* ``set_pte gives the new entry`` / ``clear removes the entry``: the walk of
  the edited page afterwards finds the new PTE / none;
* ``... leaves other pages``: every other page walks to what it did before;
* ``... invariant kept by ...``: the well-formedness holds again afterwards;
* ``agrees with an abstract page map``: from a fresh table, after any
  :data:`SEQUENCE_STEPS` maps and unmaps of symbolic pages, the walk gives
  every page the present translation a dictionary updated the same way
  gives (the per-edit obligations carry this to any number of steps);
* ``multilevel split is a bijection``: the levels' indices of a vpn
  determine it, for every split of up to :data:`SPLIT_VPN_BITS` vpn bits
  between levels (``level_bits``: uneven ones, a 1/3 as well as a 2/2).

Each obligation is also refuted by a named seeded mutant (:data:`MUTATIONS`,
:data:`MUTANT_FOR`): with the mutant, z3 finds inputs that break it. An
obligation whose mutant does not refute it is ``unknown``, never proved.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import z3

from pagingcheck.checks.proofs.core import Outcome
from pagingcheck.checks.proofs.symbolic import (
    ADDRESS,
    WIDTH,
    Engine,
    Exploration,
    Range,
    SymbolicAllocator,
    SymbolicMemory,
    Write,
    all_disjoint,
    as_condition,
    explore,
    lift,
    within,
)
from pagingcheck.impl.lib.memory import FREED_PATTERN, fill
from pagingcheck.impl.lib.pagetable import EDITORS
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.pagetable import Entry, PageTableFormat, make_format
from pagingcheck.model.pagetable.hashed import NODE_NEXT, NODE_VPN, NODE_WORDS, HashedFormat, bucket
from pagingcheck.model.pagetable.inverted import (
    SLOT_NEXT,
    SLOT_OWNER,
    SLOT_PTE,
    SLOT_VPN,
    InvertedFormat,
    anchor,
    owner_word,
)
from pagingcheck.model.pagetable.multilevel import MultilevelFormat


def _config(kind: str, **sizes: int) -> HardwareConfig:
    return HardwareConfig(page_words=4, kernel_frames=16, page_table=kind, **sizes)  # type: ignore[arg-type]


#: The configuration each format is proved for: the sizes that fix a table's shape.
CONFIGS: dict[str, HardwareConfig] = {
    "linear": _config("linear", va_pages=4, user_frames=2),
    "multilevel": _config("multilevel", va_pages=4, levels=2, user_frames=2),
    "hashed": _config("hashed", va_pages=2, hash_buckets=1, user_frames=2),
    "inverted": _config("inverted", va_pages=2, hash_buckets=1, user_frames=2),
}
#: Address spaces the inverted table's proofs range over (the others ignore the asid).
ASIDS = 2
#: Formats whose proofs split the vpns (and asids) into cases (see ``Engine.case_split``).
SPLIT_PAGES = {"linear", "multilevel"}
#: Maps and unmaps from a fresh table in ``agrees with an abstract page map``.
SEQUENCE_STEPS = 2
#: The multi-level split is proved a bijection for every ``va_pages`` up to 2**this.
SPLIT_VPN_BITS = 10

#: The name each format's well-formedness goes by in obligations.
INVARIANT_NAMES = {
    "multilevel": "tree invariant",
    "hashed": "chain invariant",
    "inverted": "chain invariant",
}


def region_words(config: HardwareConfig) -> int:
    """Words of the kernel region, where every table must lie."""
    return config.kernel_frames * config.page_words


# -- well-formedness of each format's tables, run on the real walker's primitives ---------

Shape = tuple[list[Any], list[Range]]
"""Conditions a table satisfies when well formed, and the word ranges it occupies."""


def linear_shape(layout: PageTableFormat, memory: SymbolicMemory, root: Any) -> Shape:
    """The one array lies in the kernel region."""
    size = cast(Any, layout).table_size
    return [as_condition(within(root, size, region_words(layout.config)))], [(root, size)]


def tree_shape(layout: PageTableFormat, memory: SymbolicMemory, root: Any) -> Shape:
    """Every table the walk can reach lies in the kernel region, no two overlap, and every
    upper-level word either points at a table (``below``) or is zero."""
    tree = cast(MultilevelFormat, layout)
    conditions: list[Any] = []
    ranges: list[Range] = []

    def visit(table: Any, level: int) -> None:
        ranges.append((table, tree.table_size(level)))
        if level == tree.leaf_level:
            return
        for slot in range(tree.table_size(level)):
            lower = tree.below(memory, table, level, slot)
            if lower is None:
                conditions.append(as_condition(memory.read(table + slot) == 0))
            else:
                visit(lower, level + 1)

    visit(root, 0)
    limit = region_words(layout.config)
    conditions += [as_condition(within(start, words, limit)) for start, words in ranges]
    return [*conditions, all_disjoint(ranges)], ranges


def hashed_shape(layout: PageTableFormat, memory: SymbolicMemory, root: Any) -> Shape:
    """Each bucket's chain (as the walker follows it) ends at a null link, not at the
    walker's length cut; its nodes hold vpns of the address space that hash to that bucket,
    one node per vpn; the bucket array and the nodes lie in the kernel region, disjoint."""
    table = cast(HashedFormat, layout)
    config, limit = layout.config, region_words(layout.config)
    conditions = [as_condition(within(root, table.table_size, limit))]
    ranges: list[Range] = [(root, table.table_size)]
    vpns = []
    for index in range(config.hash_buckets):
        chain = table.chain(memory, root + index)
        end = chain[-1][1] + NODE_NEXT if chain else root + index
        conditions.append(as_condition(memory.read(end) == 0))
        for _, node in chain:
            vpn = memory.read(node + NODE_VPN)
            ranges.append((node, NODE_WORDS))
            conditions += [
                as_condition(within(node, NODE_WORDS, limit)),
                as_condition(vpn < config.va_pages),
                as_condition(bucket(vpn, config.hash_buckets) == index),
            ]
            vpns.append(lift(vpn))
    if len(vpns) > 1:
        conditions.append(z3.Distinct(*vpns))
    return [*conditions, all_disjoint(ranges)], ranges


def inverted_shape(layout: PageTableFormat, memory: SymbolicMemory, root: Any) -> Shape:
    """The table lies in the kernel region; each anchor's chain (as the walker follows it)
    ends at a null link; a chained slot is owned, holds a vpn of the address space that
    hashes (with its owner) to that anchor, and a present PTE of the slot's own frame; no
    slot is chained twice, no page has two slots, and every owned slot is chained."""
    table = cast(InvertedFormat, layout)
    config, limit = layout.config, region_words(layout.config)
    conditions = [as_condition(within(root, table.table_size, limit))]
    chained: list[tuple[Any, Any, Any]] = []
    for index in range(config.hash_buckets):
        # The walker's own chain of anchor ``index``: (asid 0, vpn index) hashes there.
        chain = table.chain(memory, root, 0, index)
        end = (
            table.slot_addr(root, chain[-1][1]) + SLOT_NEXT
            if chain
            else table.anchor_addr(root, 0, index)
        )
        conditions.append(as_condition(memory.read(end) == 0))
        for _, slot_index in chain:
            slot = table.slot_addr(root, slot_index)
            owner, vpn = memory.read(slot + SLOT_OWNER), memory.read(slot + SLOT_VPN)
            pte = memory.read(slot + SLOT_PTE)
            conditions += [
                as_condition(owner != 0),
                as_condition(anchor(owner - 1, vpn, config.hash_buckets) == index),
                as_condition(vpn < config.va_pages),
                as_condition((pte & bits.PRESENT) != 0),
                as_condition(bits.pfn(pte) == config.first_user_frame + slot_index),
            ]
            chained.append((lift(slot_index), lift(owner), lift(vpn)))
    for i, (index_a, owner_a, vpn_a) in enumerate(chained):
        for index_b, owner_b, vpn_b in chained[i + 1 :]:
            conditions += [index_a != index_b, z3.Or(owner_a != owner_b, vpn_a != vpn_b)]
    for index in range(config.user_frames):
        owner = lift(memory.read(table.slot_addr(root, index) + SLOT_OWNER))
        conditions.append(z3.Or(owner == 0, *(index == c[0] for c in chained)))
    return conditions, [(root, table.table_size)]


#: Each format's well-formedness.
SHAPES: dict[str, Callable[[PageTableFormat, SymbolicMemory, Any], Shape]] = {
    "linear": linear_shape,
    "multilevel": tree_shape,
    "hashed": hashed_shape,
    "inverted": inverted_shape,
}


def contract(
    kind: str,
    layout: PageTableFormat,
    memory: SymbolicMemory,
    root: Any,
    asid: Any,
    vpn: Any,
    pte: Any,
) -> Any:
    """What ``set_pte`` with a present PTE requires of its caller: for the inverted table,
    a frame of the user pool whose slot is free or already holds this page (else it raises
    InternalError); nothing for the others."""
    if kind != "inverted":
        return z3.BoolVal(True)
    table = cast(InvertedFormat, layout)
    index = bits.pfn(pte) - layout.config.first_user_frame
    slot = table.slot_addr(root, index)
    owner, slot_vpn = lift(memory.read(slot + SLOT_OWNER)), lift(memory.read(slot + SLOT_VPN))
    mine = z3.And(owner == lift(owner_word(asid)), slot_vpn == lift(vpn))
    return z3.And(
        lift(index) >= 0, lift(index) < layout.config.user_frames, z3.Or(owner == 0, mine)
    )


def translation(entry: Entry | None) -> Any:
    """The PTE a walk found, 0 for none (a z3 term)."""
    return lift(entry.pte) if entry is not None else z3.BitVecVal(0, WIDTH)


def present(pte: Any) -> Any:
    """The PTE if it is present, else 0: what the MMU translates with."""
    return z3.If(pte & bits.PRESENT == bits.PRESENT, pte, z3.BitVecVal(0, WIDTH))


# -- the harness a mutant can change ------------------------------------------------------

Walk = Callable[[PageTableFormat, Any, Any, Any, Any], "Entry | None"]


def real_walk(layout: PageTableFormat, memory: Any, root: Any, asid: Any, vpn: Any) -> Entry | None:
    """The format's hardware walk."""
    return layout.walk(memory, root, asid, vpn)


def _same(writes: list[Write]) -> list[Write]:
    return writes


def _nothing(
    layout: PageTableFormat, memory: SymbolicMemory, root: Any, asid: Any, vpn: Any
) -> None:
    return None


@dataclass(frozen=True)
class Harness:
    """How the code under proof is run: the real layout, walk, writes and allocator, unless
    a seeded mutant changes one of them."""

    layout: Callable[[HardwareConfig], PageTableFormat] = make_format
    walk: Walk = real_walk
    #: What memory keeps of an edit's writes.
    writes: Callable[[list[Write]], list[Write]] = _same
    #: Whether allocations avoid every word in use.
    fresh_words: bool = True
    #: Run after each edit.
    after_edit: Callable[[PageTableFormat, SymbolicMemory, Any, Any, Any], None] = _nothing


REAL = Harness()


# -- the explorations ---------------------------------------------------------------------


def _inputs(engine: Engine, kind: str) -> tuple[Any, Any, Any, Any, Any]:
    """asid, vpn, PTE, and another page (asid, vpn): symbolic, in range, distinct pages."""
    config = CONFIGS[kind]
    asid, vpn, pte = engine.word("asid"), engine.word("vpn"), engine.word("pte")
    other_asid = engine.word("other_asid") if kind == "inverted" else asid
    other = engine.word("other_vpn")
    engine.assume(
        vpn < config.va_pages,
        other < config.va_pages,
        asid < ASIDS,
        other_asid < ASIDS,
        z3.Or(lift(other) != lift(vpn), lift(other_asid) != lift(asid)),
    )
    pages, spaces = range(config.va_pages), range(ASIDS)
    if kind not in SPLIT_PAGES:
        return asid, vpn, pte, other_asid, other
    if kind == "inverted":
        asid, other_asid = engine.case_split(asid, spaces), engine.case_split(other_asid, spaces)
    return asid, engine.case_split(vpn, pages), pte, other_asid, engine.case_split(other, pages)


def edit_goals(kind: str, op: str, harness: Harness, engine: Engine) -> dict[str, Any]:
    """One path of ``op`` (``set_pte`` or ``clear``) on a well-formed table: its goals."""
    config = CONFIGS[kind]
    layout = harness.layout(config)
    editor = EDITORS[kind](layout)
    memory = SymbolicMemory.fresh(engine)
    root = engine.word("root")
    asid, vpn, pte, other_asid, other = _inputs(engine, kind)
    conditions, ranges = SHAPES[kind](layout, memory, root)
    engine.assume(*conditions)
    before = translation(harness.walk(layout, memory, root, other_asid, other))
    kalloc = cast(Any, SymbolicAllocator(engine, region_words(config), ranges, harness.fresh_words))
    start = len(memory.writes)
    done = True
    if op == "set_pte":
        if kind == "inverted":  # it holds resident pages only: a non-present PTE is a clear
            engine.assume((pte & bits.PRESENT) != 0)
        engine.assume(pte != 0, contract(kind, layout, memory, root, asid, vpn, pte))
        done = editor.set_pte(memory, kalloc, root, asid, vpn, pte)
    else:
        editor.clear(memory, kalloc, root, asid, vpn)
    memory.rewrite(start, harness.writes)
    harness.after_edit(layout, memory, root, asid, vpn)
    mine = translation(harness.walk(layout, memory, root, asid, vpn))
    theirs = translation(harness.walk(layout, memory, root, other_asid, other))
    expected = lift(pte) if op == "set_pte" else z3.BitVecVal(0, WIDTH)
    verb = "gives the new entry" if op == "set_pte" else "removes the entry"
    goals = {
        f"{op} {verb}": z3.And(z3.BoolVal(done is True), mine == expected),
        f"{op} leaves other pages": theirs == before,
    }
    if kind in INVARIANT_NAMES:
        kept, _ = SHAPES[kind](layout, memory, root)
        goals[f"{INVARIANT_NAMES[kind]} kept by {op}"] = z3.And(*kept)
    return goals


AGREES = "agrees with an abstract page map"


def sequence_goals(kind: str, harness: Harness, engine: Engine) -> dict[str, Any]:
    """One path of a fresh table edited by :data:`SEQUENCE_STEPS` maps or unmaps, beside a
    dictionary (a z3 array from page to PTE) edited the same way: the walk of any page gives
    the dictionary's present translation."""
    config = CONFIGS[kind]
    layout = harness.layout(config)
    editor = EDITORS[kind](layout)
    memory = SymbolicMemory.fresh(engine)
    kalloc = cast(Any, SymbolicAllocator(engine, region_words(config), [], harness.fresh_words))
    first = engine.word("asid")
    engine.assume(first < ASIDS)
    system_root = editor.boot(memory, kalloc)
    root: Any = editor.create(memory, kalloc, first, 0 if system_root is None else system_root)
    abstract = z3.K(ADDRESS, z3.BitVecVal(0, WIDTH))
    for _ in range(SEQUENCE_STEPS):
        asid, vpn, pte = _page(engine, kind, first)
        start = len(memory.writes)
        if engine.flag("map"):
            is_present = (lift(pte) & bits.PRESENT) != 0
            engine.assume(
                z3.Implies(is_present, contract(kind, layout, memory, root, asid, vpn, pte))
            )
            editor.set_pte(memory, kalloc, root, asid, vpn, pte)
            abstract = z3.Store(abstract, page_key(kind, asid, vpn), lift(pte))
        else:
            editor.clear(memory, kalloc, root, asid, vpn)
            abstract = z3.Store(abstract, page_key(kind, asid, vpn), z3.BitVecVal(0, WIDTH))
        memory.rewrite(start, harness.writes)
        harness.after_edit(layout, memory, root, asid, vpn)
    asid, vpn, _ = _page(engine, kind, first)
    found = translation(harness.walk(layout, memory, root, asid, vpn))
    wanted = z3.Select(abstract, page_key(kind, asid, vpn))
    return {AGREES: present(found) == present(wanted)}


def _page(engine: Engine, kind: str, asid: Any) -> tuple[Any, Any, Any]:
    """asid, vpn and PTE of one edit of the sequence: any page of ``asid``'s address space,
    or for the inverted table of any address space."""
    if kind == "inverted":
        asid = engine.word("asid")
    vpn, pte = engine.word("vpn"), engine.word("pte")
    engine.assume(vpn < CONFIGS[kind].va_pages, asid < ASIDS)
    return asid, vpn, pte


def page_key(kind: str, asid: Any, vpn: Any) -> Any:
    """The dictionary's key of a page: the vpn, and for the inverted table the asid too."""
    if kind != "inverted":
        return lift(vpn)
    return lift(asid) * CONFIGS[kind].va_pages + lift(vpn)


@functools.cache
def exploration(kind: str, what: str, mutant: str = "", target: str = "") -> Exploration:
    """Every path of ``what`` (an edit, or the sequence) for ``kind``, under ``mutant``'s
    harness; with a ``target`` goal, stop at its first counterexample."""
    harness = MUTATIONS[mutant] if mutant else REAL
    if what == "sequence":
        body = functools.partial(sequence_goals, kind, harness)
    else:
        body = functools.partial(edit_goals, kind, what, harness)

    def stop(result: Exploration) -> bool:
        return bool(target) and (target in result.refuted or bool(result.error))

    return explore(body, stop, errors=(InternalError,))


# -- the multi-level split ------------------------------------------------------------------


def split_counterexample(factory: Callable[[HardwareConfig], MultilevelFormat]) -> str | None:
    """A configuration and vpns where the split is no bijection, or None: for every
    ``va_pages`` up to ``2**SPLIT_VPN_BITS`` and every way of splitting its vpn bits
    between levels, each index lies in its table, the tables' sizes multiply to
    ``va_pages``, and distinct vpns differ in some index (so the split is one-to-one onto
    the index tuples)."""
    engine = Engine()
    for vpn_bits in range(1, SPLIT_VPN_BITS + 1):
        for level_bits in splits(vpn_bits):
            config = HardwareConfig(
                page_table="multilevel",
                va_pages=1 << vpn_bits,
                levels=len(level_bits),
                level_bits=level_bits,
            )
            found = _split_fails(engine, factory(config))
            if found is not None:
                return f"va_pages={config.va_pages}, level_bits={list(level_bits)}: {found}"
    return None


def splits(vpn_bits: int) -> Iterator[tuple[int, ...]]:
    """Every way of giving ``vpn_bits`` bits to levels, at least one bit each, root first."""
    yield (vpn_bits,)
    for first in range(1, vpn_bits):
        for rest in splits(vpn_bits - first):
            yield (first, *rest)


def _split_fails(engine: Engine, layout: MultilevelFormat) -> str | None:
    sizes = [layout.table_size(level) for level in range(layout.leaf_level + 1)]
    if functools.reduce(lambda a, b: a * b, sizes) != layout.config.va_pages:
        return f"the tables' sizes {sizes} do not multiply to va_pages"
    v, w = engine.word("v"), engine.word("w")
    pages = layout.config.va_pages
    indices = range(layout.leaf_level + 1)
    outside = z3.Or(*(lift(layout.index(v, level)) >= sizes[level] for level in indices))
    same = z3.And(
        *(lift(layout.index(v, level)) == lift(layout.index(w, level)) for level in indices)
    )
    for broken in (outside, z3.And(lift(v) != lift(w), same)):
        solver = z3.Solver()
        solver.add(lift(v) < pages, lift(w) < pages, broken)
        if solver.check() != z3.unsat:
            return str(solver.model()) if solver.check() == z3.sat else "z3: unknown"
    return None


class ShiftedSplit(MultilevelFormat):
    """Seeded bug: every level's index taken one bit too far left."""

    def index(self, vpn: int, level: int) -> int:
        shift = sum(self.level_bits[level + 1 :]) + 1
        return (vpn >> shift) & (self.table_size(level) - 1)


# -- seeded mutants ------------------------------------------------------------------------


def neighbour_walk(
    layout: PageTableFormat, memory: Any, root: Any, asid: Any, vpn: Any
) -> Entry | None:
    """Seeded bug: the walk answers with the next page's entry."""
    return layout.walk(memory, root, asid, (vpn + 1) % layout.config.va_pages)


def free_root_table(
    layout: PageTableFormat, memory: SymbolicMemory, root: Any, asid: Any, vpn: Any
) -> None:
    """Seeded bug: the edit frees the table it started from (fills it with the freed
    pattern) while the address space still uses it."""
    size = (
        layout.table_size(0)
        if isinstance(layout, MultilevelFormat)
        else cast(Any, layout).table_size
    )
    fill(memory, root, size, FREED_PATTERN)


def _misdirect_last(writes: list[Write]) -> list[Write]:
    if not writes:
        return writes
    last = writes[-1]
    return [*writes[:-1], Write(last.address + 1, last.value)]


#: Seeded bugs: each changes the real code's effect in one way a kernel could get wrong.
MUTATIONS: dict[str, Harness] = {
    "last write dropped": replace(REAL, writes=lambda writes: writes[:-1]),
    "first write dropped": replace(REAL, writes=lambda writes: writes[1:]),
    "last write lands one word on": replace(REAL, writes=_misdirect_last),
    "allocator hands out words in use": replace(REAL, fresh_words=False),
    "walk answers for the neighbouring page": replace(REAL, walk=neighbour_walk),
    "root table freed while in use": replace(REAL, after_edit=free_root_table),
    "vpn slices shifted one bit": replace(REAL, layout=ShiftedSplit),
}

#: The mutant that must refute each obligation, by format and goal.
MUTANT_FOR: dict[tuple[str, str], str] = {
    **{
        (kind, goal): mutant
        for kind in CONFIGS
        for goal, mutant in {
            "set_pte gives the new entry": "last write dropped",
            "set_pte leaves other pages": "last write lands one word on",
            "clear removes the entry": "walk answers for the neighbouring page",
            "clear leaves other pages": "last write lands one word on",
            AGREES: "last write dropped",
        }.items()
    },
    ("hashed", "clear leaves other pages"): "first write dropped",
    ("inverted", "clear leaves other pages"): "first write dropped",
    ("multilevel", "tree invariant kept by set_pte"): "allocator hands out words in use",
    ("multilevel", "tree invariant kept by clear"): "root table freed while in use",
    ("hashed", "chain invariant kept by set_pte"): "allocator hands out words in use",
    ("hashed", "chain invariant kept by clear"): "first write dropped",
    ("inverted", "chain invariant kept by set_pte"): "last write dropped",
    ("inverted", "chain invariant kept by clear"): "first write dropped",
    ("multilevel", "split is a bijection"): "vpn slices shifted one bit",
}


# -- verdicts ------------------------------------------------------------------------------


def goals_of(kind: str, what: str) -> list[str]:
    """The goals an exploration of ``what`` checks for ``kind``, in report order."""
    if what == "sequence":
        return [AGREES]
    verb = "gives the new entry" if what == "set_pte" else "removes the entry"
    goals = [f"{what} {verb}", f"{what} leaves other pages"]
    if kind in INVARIANT_NAMES:
        goals.append(f"{INVARIANT_NAMES[kind]} kept by {what}")
    return goals


def mutant_refutes(kind: str, what: str, goal: str, mutant: str) -> str | None:
    """The counterexample ``mutant`` gives to the goal, or None when it gives none."""
    found = exploration(kind, what, mutant, goal)
    return found.refuted.get(goal) or found.error or None


def goal_verdict(kind: str, what: str, goal: str) -> Outcome:
    """One goal over every path, proved and shown refutable by its seeded mutant."""
    name = f"translation: {kind} {goal}"
    began = time.perf_counter()
    real = exploration(kind, what)
    mutant = MUTANT_FOR[(kind, goal)]
    seconds = time.perf_counter() - began
    if real.undecided:
        return Outcome(name, "unknown", seconds, real.undecided)
    if real.error or goal in real.refuted:
        return Outcome(name, "refuted", seconds, real.error or real.refuted[goal])
    refutation = mutant_refutes(kind, what, goal, mutant)
    seconds = time.perf_counter() - began
    if refutation is None:
        return Outcome(name, "unknown", seconds, f"seeded mutant '{mutant}' does not refute it")
    return Outcome(name, "proved", seconds, f"{real.paths} paths; refuted when {mutant}")


def split_verdict() -> Outcome:
    """The multi-level split is a bijection, and a mutant split is refuted."""
    name = "translation: multilevel split is a bijection"
    began = time.perf_counter()
    found = split_counterexample(MultilevelFormat)
    if found is not None:
        return Outcome(name, "refuted", time.perf_counter() - began, found)
    mutant = MUTANT_FOR[("multilevel", "split is a bijection")]
    refuted = split_counterexample(cast(Any, MUTATIONS[mutant].layout))
    seconds = time.perf_counter() - began
    if refuted is None:
        return Outcome(name, "unknown", seconds, f"seeded mutant '{mutant}' does not refute it")
    return Outcome(
        name, "proved", seconds, f"up to 2**{SPLIT_VPN_BITS} pages; refuted when {mutant}"
    )


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every translation obligation, lazily: per format, each edit's goals, then agreement
    with the abstract page map; then the multi-level split."""
    # The goals of one exploration share it; a new run of the suite explores afresh.
    exploration.cache_clear()
    for kind in CONFIGS:
        for what in ("set_pte", "clear", "sequence"):
            for goal in goals_of(kind, what):
                yield functools.partial(goal_verdict, kind, what, goal)
    yield split_verdict
