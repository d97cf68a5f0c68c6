"""Page-table edits, each with its TLB duty: the only kernel code that writes a PTE.

Every function that changes the PTE of ``(asid, vpn)`` also invalidates the
TLB entries that could cache the old word (:func:`invalidate`), so no stale
translation, stale rights or stale frame survives an edit. The MMU ORs R/M
bits into the word at a cached entry's ``pte_addr``; invalidating also
stops those late writes from landing on a PTE that moved.

The word each edit writes, and whether it must invalidate, come from the
transitions of :mod:`~pagingcheck.impl.lib.mapping` that z3 proves keep the
TLB in agreement and no dirty page dropped; each function applies one to the
entry as the hardware may hold it (the TLB may cache the old word). Callers
establish the transition's guard (the reference kernel's frame bookkeeping
checks the same facts).

Layouts differ in what a non-present page looks like:

* linear, multi-level, hashed: creation writes a non-present PTE carrying the
  page's protection for every valid page (:func:`prepare`), which allocates
  every table structure up front; later edits overwrite that entry and
  never need kernel memory, so a fault can never run out of it;
* inverted: the table holds present entries only (one per frame); a page
  that is not resident has no entry, and :func:`unmap` removes the entry.

The contract of each helper: requires the address space to exist; returns
what it says; raises InternalError if the format refuses an edit that
cannot need memory (a bug, not an event). Every helper reaches the
hardware through the kernel's port.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagingcheck.impl.lib import mapping
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory
from pagingcheck.impl.lib.pagetable import TableEditor
from pagingcheck.model import bits
from pagingcheck.model.errors import InternalError
from pagingcheck.model.port import Port


@dataclass(frozen=True)
class Space:
    """An address space as the page-table helpers need it: table root and asid."""

    root: int
    asid: int


def holds_absent_entries(editor: TableEditor) -> bool:
    """Whether the format keeps entries for pages that are not resident."""
    return editor.layout.kind != "inverted"


def pte(port: Port, editor: TableEditor, space: Space, vpn: int) -> int:
    """The PTE word of ``vpn`` (0 when the table has no entry). Reads memory only."""
    entry = editor.walk(port, space.root, space.asid, vpn)
    return 0 if entry is None else entry.pte


def invalidate(port: Port, space: Space, vpn: int) -> None:
    """Drop what the TLB may cache of ``vpn`` in ``space``: the duty of every PTE edit."""
    port.tlb_invalidate(space.asid, vpn)


def flush(port: Port) -> None:
    """Empty the TLB (an untagged TLB, when the address space changes)."""
    port.tlb_flush()


def forget(port: Port, space: Space) -> None:
    """Drop every TLB entry loaded for the address space (before its asid goes away)."""
    port.tlb_flush_asid(space.asid)


def _held(word: int) -> mapping.Entry:
    """The mapping entry of a PTE word as the kernel must assume it: maybe cached."""
    return mapping.Entry(word, True, word, False, False, False)


def _write(
    port: Port,
    editor: TableEditor,
    kalloc: KernelAllocator,
    space: Space,
    vpn: int,
    step: mapping.EntryStep,
) -> bool:
    """Write the PTE word a mapping transition computed, and do its TLB duty."""
    _, entry = step
    done = editor.set_pte(port, kalloc, space.root, space.asid, vpn, int(entry.pte))
    if not entry.cached:
        invalidate(port, space, vpn)
    return done


def prepare(
    editor: TableEditor,
    memory: Memory,
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
    and allocator explicitly so creation can run it on a trial overlay first.
    """
    if not holds_absent_entries(editor):
        return True
    absent = bits.make_pte(0, prot, present=False)
    return editor.set_pte(memory, kalloc, space.root, space.asid, vpn, absent)


def map_page(
    port: Port,
    editor: TableEditor,
    kalloc: KernelAllocator,
    space: Space,
    vpn: int,
    pfn: int,
    prot: int,
    copied: bool = False,
) -> None:
    """Map ``vpn`` present to frame ``pfn`` with ``prot``, R and M clear; invalidate the TLB.
    ``copied``: the page is shared copy-on-write (``prot`` must then grant no write)."""
    # The old word decides only the guard (not present), the caller's to establish, so
    # it is not read: the edit and its TLB duty do not depend on it.
    step = mapping.map_page(_held(0), bits.make_pte(pfn, prot), copied)
    if not _write(port, editor, kalloc, space, vpn, step):
        raise InternalError(
            f"vm.map_page: the {editor.layout.kind} table refused vpn {vpn} "
            f"(asid {space.asid}) -> frame {pfn}; entries are prepared at creation"
        )


def unmap(
    port: Port, editor: TableEditor, kalloc: KernelAllocator, space: Space, vpn: int, prot: int
) -> int:
    """Make ``vpn`` not present (keeping ``prot`` where the format can); invalidate the TLB.

    Returns the PTE word it replaced, so the caller sees the R and M bits.
    """
    old = pte(port, editor, space, vpn)
    if holds_absent_entries(editor):
        step = mapping.unmap(_held(old), bits.make_pte(0, prot, present=False))
        if not _write(port, editor, kalloc, space, vpn, step):
            raise InternalError(
                f"vm.unmap: the {editor.layout.kind} table refused to overwrite vpn {vpn} "
                f"(asid {space.asid})"
            )
    else:
        _, entry = mapping.unmap(_held(old), 0)
        editor.clear(port, kalloc, space.root, space.asid, vpn)
        if not entry.cached:
            invalidate(port, space, vpn)
    return old


def clear_referenced(
    port: Port, editor: TableEditor, kalloc: KernelAllocator, space: Space, vpn: int
) -> None:
    """Clear the R bit of a present ``vpn`` and invalidate its TLB entry.

    Invalidating matters: the MMU sets R only when its cached word lacks it,
    so a cached entry would hide every later reference from the policy.
    """
    word = pte(port, editor, space, vpn)
    if not (bits.is_present(word) and bits.is_referenced(word)):
        return
    if not _write(port, editor, kalloc, space, vpn, mapping.clear_referenced(_held(word))):
        raise InternalError(f"vm.clear_referenced: table refused vpn {vpn}")


def protect(
    port: Port,
    editor: TableEditor,
    kalloc: KernelAllocator,
    space: Space,
    vpn: int,
    prot: int,
    copied: bool = False,
) -> None:
    """Give the present ``vpn`` the rights ``prot``, keeping its frame, R and M; invalidate
    its TLB entry (copy-on-write: a fork takes write away, the last sharer gets it back).
    ``copied``: the page is shared copy-on-write (``prot`` must then grant no write)."""
    word = pte(port, editor, space, vpn)
    if not bits.is_present(word):
        raise InternalError(f"vm.protect: vpn {vpn} (asid {space.asid}) is not present")
    step = mapping.protect(_held(word), prot, copied)
    if not _write(port, editor, kalloc, space, vpn, step):
        raise InternalError(f"vm.protect: the {editor.layout.kind} table refused vpn {vpn}")
