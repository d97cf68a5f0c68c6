"""MMU and TLB: translation through the TLB agrees with the page-table walk, and what breaks it.

The page table here is a tiny linear table in kernel memory (one PTE word
per vpn at ``root + vpn``), so these tests do not depend on the real formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.mmu import MMU
from pagingcheck.model.pagetable.base import Entry, Reader
from pagingcheck.model.tlb import TLB, TlbEntry
from pagingcheck.model.traps import Access, Fault, TrapKind

RWXU = bits.READ | bits.WRITE | bits.EXEC | bits.USER


class TinyLinear:
    """A linear page table of ``va_pages`` words at ``root``; the asid is ignored."""

    kind = "tiny-linear"

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config

    def boot(self, memory: PhysicalMemory, kalloc: KernelAllocator) -> int | None:
        return 0

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        root = kalloc.alloc(self.config.va_pages)
        if root is not None:
            for vpn in range(self.config.va_pages):
                memory.write(root + vpn, 0)
        return root

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        if not 0 <= vpn < self.config.va_pages:
            raise InternalError(f"TinyLinear.walk: vpn {vpn} out of range")
        pte = memory.read(root + vpn)
        return Entry(vpn, root + vpn, pte) if pte else None

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        memory.write(root + vpn, pte)
        return True

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        memory.write(root + vpn, 0)

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        found = [self.walk(memory, root, asid, vpn) for vpn in range(self.config.va_pages)]
        return [entry for entry in found if entry is not None]

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        return [(root, self.config.va_pages)]

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        kalloc.free(root, self.config.va_pages)


def small_config(**changes: object) -> HardwareConfig:
    base = HardwareConfig(page_words=4, va_pages=8, kernel_frames=8, user_frames=8, tlb_entries=2)
    return base.replace(**changes)


@dataclass
class Rig:
    """Memory, a table per asid (asid 1 and 2), and an MMU running asid 1."""

    config: HardwareConfig
    memory: PhysicalMemory
    kalloc: KernelAllocator
    fmt: TinyLinear
    roots: dict[int, int]
    mmu: MMU

    def map(self, asid: int, vpn: int, pte: int) -> None:
        self.fmt.set_pte(self.memory, self.kalloc, self.roots[asid], asid, vpn, pte)

    def pte_addr(self, asid: int, vpn: int) -> int:
        return self.roots[asid] + vpn

    def switch(self, asid: int) -> None:
        self.mmu.load_context(self.roots[asid], asid)


def make_rig(config: HardwareConfig) -> Rig:
    memory = PhysicalMemory(config)
    kalloc = KernelAllocator(config)
    fmt = TinyLinear(config)
    roots = {}
    for asid in (1, 2):
        root = fmt.create(memory, kalloc, asid, 0)
        assert root is not None
        roots[asid] = root
    mmu = MMU(config, fmt)
    mmu.load_context(roots[1], 1)
    return Rig(config, memory, kalloc, fmt, roots, mmu)


def walk_answer(rig: Rig, va: int, access: Access) -> int | TrapKind:
    """What translation must give according to the current page table alone."""
    if not 0 <= va < rig.config.va_words:
        return TrapKind.PAGE_FAULT
    vpn, offset = divmod(va, rig.config.page_words)
    entry = rig.mmu.walk(rig.memory, vpn)
    if entry is None or not bits.is_present(entry.pte):
        return TrapKind.PAGE_FAULT
    needed = {Access.FETCH: bits.EXEC, Access.READ: bits.READ, Access.WRITE: bits.WRITE}[access]
    if entry.pte & (needed | bits.USER) != needed | bits.USER:
        return TrapKind.PROTECTION_FAULT
    return bits.pfn(entry.pte) * rig.config.page_words + offset


def outcome(result: int | Fault) -> int | TrapKind:
    return result.kind if isinstance(result, Fault) else result


def kernel_refill(rig: Rig, va: int) -> None:
    """What a software-refill kernel does on a TLB miss: load the walked PTE if there is one."""
    vpn = va // rig.config.page_words
    entry = rig.mmu.walk(rig.memory, vpn)
    if entry is not None:
        rig.mmu.tlb_write(TlbEntry(rig.mmu.asid, vpn, entry.pte_addr, entry.pte))


def access_with_refill(rig: Rig, va: int, access: Access) -> int | TrapKind:
    result = rig.mmu.translate(rig.memory, va, access)
    if isinstance(result, Fault) and result.kind is TrapKind.TLB_MISS:
        if rig.mmu.walk(rig.memory, va // rig.config.page_words) is None:
            return TrapKind.PAGE_FAULT
        kernel_refill(rig, va)
        result = rig.mmu.translate(rig.memory, va, access)
    return outcome(result)


# -- coherent TLB: translation equals the walk ---------------------------------

ACCESSES = st.sampled_from(list(Access))
#: Protection bits: mostly everything allowed, otherwise any combination of Rd W X U.
PROTS = st.one_of(st.just(RWXU), st.integers(0, 15).map(lambda p: p << 1))
mappings = st.dictionaries(
    st.integers(0, 7),
    st.tuples(st.integers(8, 15), PROTS, st.booleans()),  # pfn, prot, present
    max_size=8,
)


@given(
    tagged=st.booleans(),
    refill=st.sampled_from(["hardware", "software"]),
    maps=st.tuples(mappings, mappings),
    accesses=st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(-2, 33), ACCESSES)),
)
def test_coherent_tlb_translates_like_the_walk(
    tagged: bool,
    refill: str,
    maps: tuple[dict[int, tuple[int, int, bool]], ...],
    accesses: list[tuple[int, int, Access]],
) -> None:
    rig = make_rig(small_config(tlb_tagged=tagged, tlb_refill=refill))
    for asid, mapping in zip((1, 2), maps, strict=True):
        for vpn, (pfn, prot, present) in mapping.items():
            rig.map(asid, vpn, bits.make_pte(pfn, prot, present=present))
    for asid, va, access in accesses:
        if asid != rig.mmu.asid:
            rig.switch(asid)
            if not tagged:
                rig.mmu.tlb.flush()
        expected = walk_answer(rig, va, access)
        assert access_with_refill(rig, va, access) == expected
        if isinstance(expected, int):
            pte = rig.memory.read(rig.pte_addr(asid, va // rig.config.page_words))
            assert bits.is_referenced(pte)
            assert bits.is_modified(pte) or access is not Access.WRITE


@given(
    vpn=st.integers(0, 7),
    old=st.integers(8, 15),
    new=st.integers(8, 15),
    offset=st.integers(0, 3),
    access=ACCESSES,
)
def test_changed_pte_without_invalidate_is_stale_until_invalidated(
    vpn: int, old: int, new: int, offset: int, access: Access
) -> None:
    rig = make_rig(small_config())
    va = vpn * 4 + offset
    rig.map(1, vpn, bits.make_pte(old, RWXU))
    assert rig.mmu.translate(rig.memory, va, access) == walk_answer(rig, va, access)

    rig.map(1, vpn, bits.make_pte(new, RWXU))  # no TLB duty done
    stale = rig.mmu.translate(rig.memory, va, access)
    assert stale == old * 4 + offset
    assert (stale == walk_answer(rig, va, access)) == (old == new)

    rig.mmu.tlb.invalidate(1, vpn)
    assert rig.mmu.translate(rig.memory, va, access) == walk_answer(rig, va, access)


def test_unmapped_page_stays_reachable_through_a_stale_entry() -> None:
    rig = make_rig(small_config())
    rig.map(1, 2, bits.make_pte(9, RWXU))
    assert rig.mmu.translate(rig.memory, 8, Access.READ) == 36
    rig.fmt.clear(rig.memory, rig.kalloc, rig.roots[1], 1, 2)
    assert walk_answer(rig, 8, Access.READ) is TrapKind.PAGE_FAULT
    assert rig.mmu.translate(rig.memory, 8, Access.READ) == 36
    rig.mmu.tlb.invalidate(1, 2)
    assert outcome(rig.mmu.translate(rig.memory, 8, Access.READ)) is TrapKind.PAGE_FAULT


# -- tagged vs untagged --------------------------------------------------------


def two_spaces(tagged: bool) -> Rig:
    """vpn 0 is frame 8 in asid 1 and frame 12 in asid 2; asid 1 has used it."""
    rig = make_rig(small_config(tlb_tagged=tagged))
    rig.map(1, 0, bits.make_pte(8, RWXU))
    rig.map(2, 0, bits.make_pte(12, RWXU))
    assert rig.mmu.translate(rig.memory, 1, Access.READ) == 33
    rig.switch(2)
    return rig


def test_untagged_tlb_hits_across_asids_until_flushed() -> None:
    rig = two_spaces(tagged=False)
    assert rig.mmu.translate(rig.memory, 1, Access.READ) == 33  # asid 1's frame: stale
    rig.mmu.tlb.flush()
    assert rig.mmu.translate(rig.memory, 1, Access.READ) == 49


def test_tagged_tlb_keeps_asids_apart_without_flushing() -> None:
    rig = two_spaces(tagged=True)
    assert rig.mmu.translate(rig.memory, 1, Access.READ) == 49
    assert {(e.asid, e.vpn) for e in rig.mmu.tlb.entries()} == {(1, 0), (2, 0)}
    rig.switch(1)
    assert rig.mmu.translate(rig.memory, 1, Access.READ) == 33


def test_load_context_sets_registers_and_leaves_the_tlb() -> None:
    rig = two_spaces(tagged=False)
    assert (rig.mmu.ptbr, rig.mmu.asid) == (rig.roots[2], 2)
    assert len(rig.mmu.tlb.entries()) == 1


# -- software refill -----------------------------------------------------------


def test_software_refill_traps_on_miss_and_hits_after_tlb_write() -> None:
    rig = make_rig(small_config(tlb_refill="software"))
    rig.map(1, 3, bits.make_pte(10, RWXU))
    assert rig.mmu.translate(rig.memory, 13, Access.WRITE) == Fault(
        TrapKind.TLB_MISS, 13, Access.WRITE
    )
    assert rig.mmu.tlb.entries() == ()  # the miss filled nothing
    # The kernel may load any translation it likes; the MMU uses what it was given.
    slot = rig.mmu.tlb_write(TlbEntry(1, 3, rig.pte_addr(1, 3), bits.make_pte(11, RWXU)))
    assert slot == 0
    assert rig.mmu.translate(rig.memory, 13, Access.WRITE) == 45


def test_software_refill_never_walks() -> None:
    rig = make_rig(small_config(tlb_refill="software"))
    rig.mmu.load_context(10_000, 1)  # a walk here would read outside memory
    assert outcome(rig.mmu.translate(rig.memory, 0, Access.READ)) is TrapKind.TLB_MISS


def test_tlb_entry_that_is_not_present_page_faults() -> None:
    rig = make_rig(small_config(tlb_refill="software"))
    rig.mmu.tlb_write(TlbEntry(1, 1, rig.pte_addr(1, 1), bits.make_pte(9, RWXU, present=False)))
    assert outcome(rig.mmu.translate(rig.memory, 4, Access.READ)) is TrapKind.PAGE_FAULT


# -- referenced and modified bits ----------------------------------------------


@pytest.mark.parametrize(
    ("access", "wanted"),
    [
        (Access.READ, bits.REFERENCED),
        (Access.FETCH, bits.REFERENCED),
        (Access.WRITE, bits.REFERENCED | bits.MODIFIED),
    ],
)
def test_access_sets_referenced_and_modified_in_memory_and_entry(
    access: Access, wanted: int
) -> None:
    rig = make_rig(small_config())
    pte = bits.make_pte(9, RWXU)
    rig.map(1, 1, pte)
    assert rig.mmu.translate(rig.memory, 5, access) == 37
    assert rig.memory.read(rig.pte_addr(1, 1)) == pte | wanted
    found = rig.mmu.tlb.lookup(1, 1)
    assert found is not None
    assert found[1].pte == pte | wanted


def test_write_after_read_hit_sets_modified_through_the_tlb() -> None:
    rig = make_rig(small_config())
    rig.map(1, 1, bits.make_pte(9, RWXU))
    rig.mmu.translate(rig.memory, 5, Access.READ)
    assert not bits.is_modified(rig.memory.read(rig.pte_addr(1, 1)))
    rig.mmu.translate(rig.memory, 6, Access.WRITE)
    assert bits.is_modified(rig.memory.read(rig.pte_addr(1, 1)))
    found = rig.mmu.tlb.lookup(1, 1)
    assert found is not None and bits.is_modified(found[1].pte)


def test_clearing_referenced_without_invalidate_is_not_seen_by_the_mmu() -> None:
    rig = make_rig(small_config())
    rig.map(1, 1, bits.make_pte(9, RWXU))
    rig.mmu.translate(rig.memory, 5, Access.READ)
    rig.map(1, 1, bits.make_pte(9, RWXU))  # a clock hand clears R, forgets the TLB
    rig.mmu.translate(rig.memory, 5, Access.READ)
    assert not bits.is_referenced(rig.memory.read(rig.pte_addr(1, 1)))
    rig.mmu.tlb.invalidate(1, 1)
    rig.mmu.translate(rig.memory, 5, Access.READ)
    assert bits.is_referenced(rig.memory.read(rig.pte_addr(1, 1)))


def test_stale_entry_writes_modified_into_whatever_its_pte_addr_holds() -> None:
    rig = make_rig(small_config())
    rig.map(1, 1, bits.make_pte(9, RWXU))
    rig.mmu.translate(rig.memory, 5, Access.READ)
    other = 0x1234_5600 | bits.USER
    rig.memory.write(rig.pte_addr(1, 1), other)  # the word is reused for something else
    assert rig.mmu.translate(rig.memory, 5, Access.WRITE) == 37
    assert rig.memory.read(rig.pte_addr(1, 1)) == other | bits.MODIFIED


# -- faults --------------------------------------------------------------------


@pytest.mark.parametrize("access", list(Access))
@pytest.mark.parametrize("prot", range(16))
def test_protection_needs_user_and_the_access_bit(access: Access, prot: int) -> None:
    rig = make_rig(small_config())
    rig.map(1, 2, bits.make_pte(10, prot << 1))
    before_memory, before_mmu = rig.memory.copy(), rig.mmu.copy()
    result = rig.mmu.translate(rig.memory, 9, access)
    needed = {Access.FETCH: bits.EXEC, Access.READ: bits.READ, Access.WRITE: bits.WRITE}[access]
    allowed = (prot << 1) & (needed | bits.USER) == needed | bits.USER
    if allowed:
        assert result == 41
    else:
        assert result == Fault(TrapKind.PROTECTION_FAULT, 9, access)
        assert rig.memory == before_memory and rig.mmu == before_mmu  # a refusal changes nothing


@pytest.mark.parametrize("access", list(Access))
@pytest.mark.parametrize("va", [-1, -100, 32, 33, 10_000])
def test_address_outside_the_space_page_faults(va: int, access: Access) -> None:
    rig = make_rig(small_config())
    rig.map(2, 0, bits.make_pte(8, RWXU))  # the word just past asid 1's table
    assert rig.mmu.translate(rig.memory, va, access) == Fault(TrapKind.PAGE_FAULT, va, access)


@pytest.mark.parametrize("pte", [0, bits.make_pte(9, RWXU, present=False)])
def test_missing_or_absent_pte_page_faults(pte: int) -> None:
    rig = make_rig(small_config())
    rig.map(1, 7, pte)
    assert rig.mmu.translate(rig.memory, 31, Access.READ) == Fault(
        TrapKind.PAGE_FAULT, 31, Access.READ
    )
    assert rig.mmu.tlb.entries() == ()


def test_pte_naming_a_frame_beyond_memory_is_an_internal_error() -> None:
    rig = make_rig(small_config())
    rig.map(1, 0, bits.make_pte(99, RWXU))
    with pytest.raises(InternalError, match="frame 99"):
        rig.mmu.translate(rig.memory, 0, Access.READ)


# -- probe ---------------------------------------------------------------------


@given(
    mapping=mappings,
    warm=st.lists(st.tuples(st.integers(0, 31), ACCESSES), max_size=6),
    va=st.integers(-1, 32),
    access=ACCESSES,
)
def test_probe_answers_like_translate_without_side_effects(
    mapping: dict[int, tuple[int, int, bool]],
    warm: list[tuple[int, Access]],
    va: int,
    access: Access,
) -> None:
    rig = make_rig(small_config())
    for vpn, (pfn, prot, present) in mapping.items():
        rig.map(1, vpn, bits.make_pte(pfn, prot, present=present))
    for warm_va, warm_access in warm:
        rig.mmu.translate(rig.memory, warm_va, warm_access)
    memory, mmu = rig.memory.copy(), rig.mmu.copy()
    probed = rig.mmu.probe(rig.memory, va, access)
    assert rig.memory == memory and rig.mmu == mmu
    assert probed == rig.mmu.translate(rig.memory, va, access)


def test_probe_fills_no_tlb_slot_and_sets_no_bits() -> None:
    rig = make_rig(small_config())
    pte = bits.make_pte(9, RWXU)
    rig.map(1, 1, pte)
    assert rig.mmu.probe(rig.memory, 5, Access.WRITE) == 37
    assert rig.mmu.tlb.entries() == ()
    assert rig.memory.read(rig.pte_addr(1, 1)) == pte


# -- TLB replacement and maintenance -------------------------------------------


def entry(vpn: int, asid: int = 1) -> TlbEntry:
    return TlbEntry(asid, vpn, 100 + vpn, bits.make_pte(8 + vpn % 8, RWXU))


def test_replacement_fills_empty_slots_then_goes_round_robin() -> None:
    tlb = TLB(small_config(tlb_entries=3))
    assert [tlb.insert(entry(v)) for v in (0, 1, 2)] == [0, 1, 2]
    assert tlb.hand == 0
    assert [tlb.insert(entry(v)) for v in (3, 4)] == [0, 1]
    assert tlb.hand == 2
    assert tlb.insert(entry(4)) == 1  # same (asid, vpn): replaced in place, hand stays
    assert tlb.hand == 2
    assert [tlb.insert(entry(v)) for v in (5, 6)] == [2, 0]
    assert tlb.hand == 1
    tlb.invalidate(1, 5)  # empties slot 2
    assert tlb.insert(entry(7)) == 2  # an empty slot beats the hand
    assert tlb.hand == 1
    assert [e.vpn for e in tlb.entries()] == [6, 4, 7]
    moved = tlb.copy()
    moved.hand = 2
    assert moved != tlb and moved.snapshot() != tlb.snapshot()
    tlb.flush()
    assert (tlb.entries(), tlb.hand) == ((), 0)


@given(st.lists(st.integers(0, 9), max_size=30))
def test_replacement_is_deterministic(vpns: list[int]) -> None:
    first, second = TLB(small_config(tlb_entries=3)), TLB(small_config(tlb_entries=3))
    assert [first.insert(entry(v)) for v in vpns] == [second.insert(entry(v)) for v in vpns]
    assert first == second
    assert len({(e.asid, e.vpn) for e in first.entries()}) == len(first.entries())


def test_lookup_untagged_ignores_asid_tagged_does_not() -> None:
    for tagged in (False, True):
        tlb = TLB(small_config(tlb_tagged=tagged, tlb_entries=4))
        tlb.insert(entry(3, asid=1))
        assert (tlb.lookup(2, 3) is not None) is not tagged
        assert tlb.lookup(1, 3) == (0, entry(3, asid=1))
        assert tlb.lookup(1, 4) is None


def test_untagged_insert_replaces_the_same_vpn_of_another_asid() -> None:
    tlb = TLB(small_config(tlb_tagged=False, tlb_entries=4))
    tlb.insert(entry(3, asid=1))
    tlb.insert(entry(3, asid=2))
    assert tlb.entries() == (entry(3, asid=2),)
    tagged = TLB(small_config(tlb_tagged=True, tlb_entries=4))
    tagged.insert(entry(3, asid=1))
    tagged.insert(entry(3, asid=2))
    assert tagged.entries() == (entry(3, asid=1), entry(3, asid=2))


def test_invalidate_and_flush_asid() -> None:
    tagged = TLB(small_config(tlb_tagged=True, tlb_entries=4))
    for e in (entry(1, 1), entry(1, 2), entry(2, 1), entry(2, 2)):
        tagged.insert(e)
    tagged.invalidate(1, 1)
    assert tagged.entries() == (entry(1, 2), entry(2, 1), entry(2, 2))
    tagged.flush_asid(2)
    assert tagged.entries() == (entry(2, 1),)
    untagged = TLB(small_config(tlb_tagged=False, tlb_entries=4))
    untagged.insert(entry(1, 1))
    untagged.invalidate(2, 1)  # untagged: any asid
    assert untagged.entries() == ()


def test_update_overwrites_a_slot_and_checks_its_range() -> None:
    tlb = TLB(small_config(tlb_entries=2))
    tlb.insert(entry(1))
    tlb.update(0, entry(5))
    assert tlb.lookup(1, 5) == (0, entry(5))
    with pytest.raises(InternalError, match="slot 2"):
        tlb.update(2, entry(1))


# -- values --------------------------------------------------------------------


def test_copies_are_independent_and_compare_by_value() -> None:
    rig = make_rig(small_config())
    rig.map(1, 0, bits.make_pte(8, RWXU))
    clone = rig.mmu.copy()
    assert clone == rig.mmu and clone.snapshot() == rig.mmu.snapshot()
    rig.mmu.translate(rig.memory, 0, Access.READ)
    assert clone != rig.mmu
    assert clone.tlb.entries() == ()
    assert fingerprint(clone.snapshot()) != fingerprint(rig.mmu.snapshot())
    clone.translate(rig.memory.copy(), 0, Access.READ)
    assert fingerprint(clone.snapshot()) == fingerprint(rig.mmu.snapshot())
    hash(rig.mmu.snapshot())
    clone.load_context(rig.roots[2], 2)
    assert clone != rig.mmu
