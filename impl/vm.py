"""Page-table edits, each with its TLB duty: the only code in the kernel that writes a PTE.

Every function that changes the PTE of ``(asid, vpn)`` also invalidates the
TLB entries that could cache the old word (:meth:`TLB.invalidate`), so no
stale translation, stale rights or stale frame survives an edit. The MMU
ORs R/M bits into the word at a cached entry's ``pte_addr``; invalidating
also stops those late writes from landing on a PTE that moved.

Layouts differ in what a non-present page looks like:

* linear, multi-level, hashed: creation writes a non-present PTE carrying the
  page's protection for every valid page (:func:`prepare`), which allocates
  every table structure up front; later edits overwrite that entry and
  never need kernel memory, so a fault can never run out of it;
* inverted: the table holds present entries only (one per frame); a page
  that is not resident has no entry, and :func:`unmap` removes the entry.

The contract of each helper: requires the address space to exist; returns
what it says; raises InternalError if the format refuses an edit that
cannot need memory (a bug, not an event).
"""

from __future__ import annotations

from dataclasses import dataclass

from pagingcheck.model import bits
from pagingcheck.model.errors import InternalError
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.machine import Machine
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.pagetable import PageTableFormat


@dataclass(frozen=True)
class Space:
    """An address space as the page-table helpers need it: table root and asid."""

    root: int
    asid: int


def _holds_absent_entries(machine: Machine) -> bool:
    return machine.format.kind != "inverted"


def pte(machine: Machine, space: Space, vpn: int) -> int:
    """The PTE word of ``vpn`` (0 when the table has no entry). Reads memory only."""
    entry = machine.format.walk(machine.memory, space.root, space.asid, vpn)
    return 0 if entry is None else entry.pte


def _write(machine: Machine, kalloc: KernelAllocator, space: Space, vpn: int, word: int) -> bool:
    done = machine.format.set_pte(machine.memory, kalloc, space.root, space.asid, vpn, word)
    machine.mmu.tlb.invalidate(space.asid, vpn)
    return done


def prepare(
    fmt: PageTableFormat,
    memory: PhysicalMemory,
    kalloc: KernelAllocator,
    space: Space,
    vpn: int,
    prot: int,
) -> bool:
    """At creation: give valid page ``vpn`` a non-present PTE with ``prot``.

    Returns False when kernel memory cannot hold the entry (the caller rolls
    back). Does nothing (and succeeds) for a format without absent entries.
    Its TLB duty is empty: an address space being created has never been
    loaded into the MMU, so nothing of it can be cached. It takes the memory
    and allocator explicitly so creation can run it on trial copies first.
    """
    if fmt.kind == "inverted":
        return True
    return fmt.set_pte(
        memory, kalloc, space.root, space.asid, vpn, bits.make_pte(0, prot, present=False)
    )


def map_page(
    machine: Machine, kalloc: KernelAllocator, space: Space, vpn: int, pfn: int, prot: int
) -> None:
    """Map ``vpn`` present to frame ``pfn`` with ``prot``, R and M clear; invalidate the TLB."""
    if not _write(machine, kalloc, space, vpn, bits.make_pte(pfn, prot)):
        raise InternalError(
            f"vm.map_page: the {machine.format.kind} table refused vpn {vpn} "
            f"(asid {space.asid}) -> frame {pfn}; entries are prepared at creation"
        )


def unmap(machine: Machine, kalloc: KernelAllocator, space: Space, vpn: int, prot: int) -> int:
    """Make ``vpn`` not present (keeping ``prot`` where the format can); invalidate the TLB.

    Returns the PTE word it replaced, so the caller sees the R and M bits.
    """
    old = pte(machine, space, vpn)
    if _holds_absent_entries(machine):
        if not _write(machine, kalloc, space, vpn, bits.make_pte(0, prot, present=False)):
            raise InternalError(
                f"vm.unmap: the {machine.format.kind} table refused to overwrite vpn {vpn} "
                f"(asid {space.asid})"
            )
    else:
        machine.format.clear(machine.memory, kalloc, space.root, space.asid, vpn)
        machine.mmu.tlb.invalidate(space.asid, vpn)
    return old


def clear_referenced(machine: Machine, kalloc: KernelAllocator, space: Space, vpn: int) -> None:
    """Clear the R bit of a present ``vpn`` and invalidate its TLB entry.

    Invalidating matters: the MMU sets R only when its cached word lacks it,
    so a cached entry would hide every later reference from the policy.
    """
    word = pte(machine, space, vpn)
    if bits.is_present(word) and bits.is_referenced(word):
        cleared = bits.with_flags(word, clear_bits=bits.REFERENCED)
        if not _write(machine, kalloc, space, vpn, cleared):
            raise InternalError(f"vm.clear_referenced: table refused vpn {vpn}")


def forget(machine: Machine, space: Space) -> None:
    """Drop every TLB entry loaded for the address space (before its asid goes away)."""
    machine.mmu.tlb.flush_asid(space.asid)
