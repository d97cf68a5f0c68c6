"""The kernel library's table editors: all four formats translate alike, allocate and free
exactly, and fail cleanly.

The reference is a plain dict ``(asid, vpn) -> PTE``. Every format's editor
runs the same operations in its own memory, and the hardware's walk must
then find the PTE the dict holds (the inverted table holds only present
PTEs: for it a non-present PTE reads as no entry, which faults the same way).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory
from pagingcheck.impl.lib.pagetable import (
    EDITORS,
    InvertedEditor,
    MultilevelEditor,
    TableEditor,
    make_editor,
)
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.pagetable import Entry, InvertedFormat, MultilevelFormat
from pagingcheck.model.pagetable.multilevel import split_vpn_bits

KINDS = ("linear", "multilevel", "hashed", "inverted")
ASIDS = (0, 1, 6)
RWXU = bits.READ | bits.WRITE | bits.EXEC | bits.USER

Model = dict[tuple[int, int], int]


def config_for(kind: str, **changes: Any) -> HardwareConfig:
    base = HardwareConfig(page_words=16, va_pages=16, kernel_frames=16, user_frames=8)
    return base.replace(page_table=kind, **changes)


@dataclass
class Rig:
    """One format with its own memory, allocator and a table per asid."""

    fmt: TableEditor
    memory: PhysicalMemory
    kalloc: KernelAllocator
    system_root: int
    booted: KernelAllocator
    roots: dict[int, int] = field(default_factory=dict)

    @property
    def config(self) -> HardwareConfig:
        return self.fmt.config

    def set(self, asid: int, vpn: int, pte: int) -> bool:
        return self.fmt.set_pte(self.memory, self.kalloc, self.roots[asid], asid, vpn, pte)

    def clear(self, asid: int, vpn: int) -> None:
        self.fmt.clear(self.memory, self.kalloc, self.roots[asid], asid, vpn)

    def walk(self, asid: int, vpn: int) -> Entry | None:
        return self.fmt.walk(self.memory, self.roots[asid], asid, vpn)


def make_rig(fmt: TableEditor, asids: tuple[int, ...]) -> Rig:
    memory, kalloc = PhysicalMemory(fmt.config), KernelAllocator(fmt.config)
    system_root = fmt.boot(memory, kalloc)
    assert system_root is not None
    rig = Rig(fmt, memory, kalloc, system_root, kalloc.copy())
    for asid in asids:
        root = fmt.create(memory, kalloc, asid, system_root)
        assert root is not None
        rig.roots[asid] = root
    return rig


def expected_pte(fmt: TableEditor, model: Model, asid: int, vpn: int) -> int:
    """The PTE ``walk`` must find (0: no entry); an inverted table keeps present PTEs only."""
    pte = model.get((asid, vpn), 0)
    if fmt.layout.kind == "inverted" and not bits.is_present(pte):
        return 0
    return pte


def mismatches(rig: Rig, model: Model) -> list[str]:
    """Every way the tables of ``rig`` disagree with ``model``; walks must not write."""
    before = rig.memory.copy()
    problems = []
    for asid in rig.roots:
        walked = {}
        for vpn in range(rig.config.va_pages):
            entry = rig.walk(asid, vpn)
            got = 0 if entry is None else entry.pte
            want = expected_pte(rig.fmt, model, asid, vpn)
            if got != want:
                problems.append(f"asid {asid} vpn {vpn}: walk gives {got:#x}, want {want:#x}")
            if entry is not None:
                walked[vpn] = entry
                assert type(entry.pte) is int and type(entry.pte_addr) is int
                assert entry.vpn == vpn
                assert rig.memory.read(entry.pte_addr) == entry.pte
        listed = rig.fmt.layout.entries(rig.memory, rig.roots[asid], asid)
        if listed != sorted(walked.values(), key=lambda entry: entry.vpn):
            problems.append(f"asid {asid}: entries() {listed} disagree with the walks {walked}")
    assert rig.memory == before, "walk or entries wrote memory"
    return problems


def check_table_words(rig: Rig) -> None:
    """Tables of different (and the same) address spaces use disjoint, allocated kernel words."""
    kernel_words = rig.config.kernel_frames * rig.config.page_words
    used: list[tuple[int, int, int]] = []
    for asid, root in rig.roots.items():
        for start, length in rig.fmt.layout.table_words(rig.memory, root, asid):
            assert start >= 1 and start + length <= kernel_words and length > 0
            used.append((start, start + length, asid))
    free = [(start, start + length, -1) for start, length in rig.kalloc.free_extents]
    spans = sorted(used + free)
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        assert end <= start, f"table words of asid {first} and {second} overlap (-1: free)"


# -- all formats translate like the model -------------------------------------------

PROTS = st.one_of(st.just(RWXU), st.integers(0, 15).map(lambda p: p << 1))
OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "set", "clear"]),
        st.integers(0, 2),  # which of the drawn asids
        st.integers(0, 15),  # vpn
        st.integers(0, 7),  # user frame index
        PROTS,
        st.booleans(),  # present
        st.booleans(),  # referenced and modified
    ),
    max_size=40,
)
VARIANTS = {
    "levels1-buckets1": {"levels": 1, "hash_buckets": 1},
    "levels2-buckets2": {"levels": 2, "hash_buckets": 2},
    "levels3-buckets8": {"levels": 3, "hash_buckets": 8},
    "split-1-3-buckets3": {"level_bits": (1, 3), "levels": 2, "hash_buckets": 3},
}


def apply(rigs: list[Rig], model: Model, op: tuple[Any, ...], asids: list[int]) -> None:
    """One operation on every rig and on the model, clearing a frame's old page first."""
    action, which, vpn, frame_index, prot, present, used = op
    asid = asids[which % len(asids)]
    if action == "clear":
        model.pop((asid, vpn), None)
        for rig in rigs:
            rig.clear(asid, vpn)
        return
    frame = rigs[0].config.first_user_frame + frame_index
    pte = bits.make_pte(frame, prot, present=present, referenced=used, modified=used)
    holders = [key for key, old in model.items() if bits.is_present(old) and bits.pfn(old) == frame]
    for holder in holders:
        if present and holder != (asid, vpn):
            model.pop(holder)
            for rig in rigs:
                rig.clear(*holder)
    model[(asid, vpn)] = pte
    for rig in rigs:
        assert rig.set(asid, vpn, pte)


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
@given(asids=st.lists(st.sampled_from(ASIDS), min_size=1, max_size=3, unique=True), ops=OPS)
def test_every_format_walks_to_the_model_pte(
    variant: dict[str, int], asids: list[int], ops: list[tuple[Any, ...]]
) -> None:
    rigs = [make_rig(make_editor(config_for(kind, **variant)), tuple(asids)) for kind in KINDS]
    model: Model = {}
    for op in ops:
        apply(rigs, model, op, asids)
    for rig in rigs:
        assert mismatches(rig, model) == [], rig.fmt.layout.kind
        check_table_words(rig)
        for asid in reversed(asids):
            rig.fmt.destroy(rig.memory, rig.kalloc, rig.roots[asid], asid)
        assert rig.kalloc == rig.booted, f"{rig.fmt.layout.kind}: destroy did not free everything"
    inverted = rigs[KINDS.index("inverted")]
    assert isinstance(inverted.fmt, InvertedEditor)
    start, size = inverted.system_root, inverted.fmt.layout.table_size
    assert not inverted.memory.words[start : start + size].any(), "destroy left slots in use"


def test_a_walk_that_ignores_the_asid_is_caught() -> None:
    class UntaggedWalk(InvertedEditor):
        """Broken on purpose: the walk looks every page up as asid 0's."""

        def walk(self, memory: Memory, root: int, asid: int, vpn: int) -> Entry | None:
            return super().walk(memory, root, 0, vpn)

    rig = make_rig(UntaggedWalk(InvertedFormat(config_for("inverted", hash_buckets=1))), (0, 1))
    model: Model = {}
    for asid, frame in ((0, 16), (1, 17)):
        model[(asid, 3)] = bits.make_pte(frame, RWXU)
        assert rig.set(asid, 3, model[(asid, 3)])
    problems = mismatches(rig, model)
    assert problems and all(problem.startswith("asid 1") for problem in problems)
    honest = make_rig(InvertedEditor(InvertedFormat(rig.config)), (0, 1))
    for (asid, vpn), pte in model.items():
        honest.set(asid, vpn, pte)
    assert mismatches(honest, model) == []


# -- out of kernel memory: a refusal that changes nothing ----------------------------

#: Kernel region of 31 usable words; changes per format so that create and set_pte both run out.
TINY = {"page_words": 4, "va_pages": 64, "kernel_frames": 8, "levels": 3, "hash_buckets": 2}
TINY_CASES = {
    "linear": {"va_pages": 16},
    "multilevel": {},
    "hashed": {},
}


def snapshot(rig: Rig) -> tuple[PhysicalMemory, KernelAllocator]:
    return rig.memory.copy(), rig.kalloc.copy()


@pytest.mark.parametrize("kind", list(TINY_CASES))
def test_running_out_of_kernel_memory_changes_nothing(kind: str) -> None:
    fmt = make_editor(config_for(kind, **{**TINY, **TINY_CASES[kind]}))
    rig = make_rig(fmt, ())
    refused = {"create": 0, "set_pte": 0}
    partial = False  # a refused path whose first table alone would have fitted
    for asid in range(8):
        before = snapshot(rig)
        root = fmt.create(rig.memory, rig.kalloc, asid, rig.system_root)
        if root is None:
            assert snapshot(rig) == before
            refused["create"] += 1
            break
        rig.roots[asid] = root
        for vpn in range(fmt.config.va_pages):
            before = snapshot(rig)
            pte = bits.make_pte(fmt.config.first_user_frame, RWXU)
            if not rig.set(asid, vpn, pte):
                assert snapshot(rig) == before
                assert rig.walk(asid, vpn) is None
                refused["set_pte"] += 1
                if isinstance(fmt.layout, MultilevelFormat):
                    partial |= rig.kalloc.free_words >= fmt.layout.table_size(1)
                break
    assert refused["create"] == 1
    assert refused["set_pte"] >= (0 if kind == "linear" else 1)
    assert partial or not isinstance(fmt, MultilevelEditor)


def test_inverted_allocates_only_at_boot() -> None:
    tiny = make_editor(config_for("inverted", **TINY))
    memory, kalloc = PhysicalMemory(tiny.config), KernelAllocator(tiny.config)
    before = memory.copy(), kalloc.copy()
    assert tiny.boot(memory, kalloc) is None
    assert (memory.copy(), kalloc.copy()) == before
    rig = make_rig(make_editor(config_for("inverted")), ASIDS)
    assert set(rig.roots.values()) == {rig.system_root}
    for index, asid in enumerate(ASIDS):
        assert rig.set(asid, index, bits.make_pte(rig.config.first_user_frame + index, RWXU))
    assert rig.kalloc == rig.booted


# -- the drawn layouts ---------------------------------------------------------------


def test_multilevel_gives_remainder_bits_to_the_levels_nearest_the_root() -> None:
    assert split_vpn_bits(6, 4) == (2, 2, 1, 1)
    assert split_vpn_bits(4, 3) == (2, 1, 1)
    assert split_vpn_bits(5, 1) == (5,)
    fmt = MultilevelFormat(config_for("multilevel", va_pages=64, levels=4))
    assert fmt.level_bits == (2, 2, 1, 1)
    assert [fmt.index(0b10_01_1_0, level) for level in range(4)] == [2, 1, 1, 0]


def test_multilevel_indexes_each_level_with_the_configured_bits() -> None:
    fmt = MultilevelFormat(config_for("multilevel", va_pages=64, level_bits=(4, 2)))
    assert fmt.level_bits == (4, 2)
    assert [fmt.table_size(level) for level in range(2)] == [16, 4]
    assert [fmt.index(0b1011_01, level) for level in range(2)] == [0b1011, 0b01]


def test_linear_and_multilevel_layout() -> None:
    pte = bits.make_pte(20, RWXU)
    linear = make_rig(make_editor(config_for("linear")), (0,))
    linear.set(0, 5, pte)
    assert linear.memory.read(linear.roots[0] + 5) == pte
    multi = make_rig(make_editor(config_for("multilevel", levels=2)), (0,))
    multi.set(0, 0b01_11, pte)  # level 0 index 1, leaf index 3
    upper = multi.memory.read(multi.roots[0] + 1)
    assert bits.is_present(upper) and upper & bits.FLAG_MASK == bits.PRESENT
    assert multi.memory.read(bits.pfn(upper) + 3) == pte
    multi.clear(0, 0b01_11)
    assert multi.walk(0, 0b01_11) is None
    tables = multi.fmt.layout.table_words(multi.memory, multi.roots[0], 0)
    assert len(tables) == 2  # kept until destroy


def test_hashed_layout_chains_newest_first() -> None:
    rig = make_rig(make_editor(config_for("hashed", hash_buckets=2)), (0,))
    first, second = bits.make_pte(16, RWXU), bits.make_pte(17, RWXU)
    rig.set(0, 3, first)
    rig.set(0, 5, second)  # 3 and 5 share bucket 1
    root, read = rig.roots[0], rig.memory.read
    assert read(root) == 0
    head = read(root + 1)
    assert [read(head), read(head + 1)] == [5, second]
    tail = read(head + 2)
    assert [read(tail), read(tail + 1), read(tail + 2)] == [3, first, 0]
    rig.clear(0, 5)
    assert read(root + 1) == tail


def test_inverted_layout_and_rules() -> None:
    rig = make_rig(make_editor(config_for("inverted", hash_buckets=4)), (1, 2))
    assert isinstance(rig.fmt, InvertedEditor)
    fmt = rig.fmt.layout
    pte = bits.make_pte(rig.config.first_user_frame + 2, RWXU)
    rig.set(1, 5, pte)
    slot, read = fmt.slot_addr(rig.system_root, 2), rig.memory.read
    assert [read(slot + offset) for offset in range(4)] == [2, 5, pte, 0]
    assert read(rig.system_root + (1 + 5) % 4) == 2 + 1
    with pytest.raises(InternalError, match="clear it before"):
        rig.set(2, 5, pte)
    moved = bits.with_pfn(pte, rig.config.first_user_frame + 3)
    rig.set(1, 5, moved)  # the page moves to frame 3's slot; frame 2's slot is free
    assert read(slot) == 0
    assert rig.walk(1, 5) == Entry(5, fmt.slot_addr(rig.system_root, 3) + 2, moved)
    rig.set(1, 5, bits.with_flags(moved, clear_bits=bits.PRESENT))
    assert rig.walk(1, 5) is None and fmt.entries(rig.memory, rig.system_root, 1) == []
    with pytest.raises(InternalError, match="only user frames"):
        rig.set(1, 5, bits.make_pte(0, RWXU))
    with pytest.raises(InternalError, match="boot first"):
        rig.fmt.create(rig.memory, rig.kalloc, 3, 0)


def test_make_editor_picks_the_configured_kind() -> None:
    for kind in KINDS:
        editor = make_editor(config_for(kind))
        assert editor.layout.kind == kind and type(editor) is EDITORS[kind]
        assert editor.walk(PhysicalMemory(editor.layout.config), 0, 0, 0) is None
