"""Bit layout of a page-table entry (PTE), and the only code that touches its bits.

One 32-bit word::

     31                                   8   7   6   5   4   3   2   1   0
    +--------------------------------------+---+---+---+---+---+---+---+---+
    |                 pfn                  | 0 | M | R | U | X | W | Rd| P |
    +--------------------------------------+---+---+---+---+---+---+---+---+

    P   present: the page is in frame ``pfn``; when clear the MMU faults and
        ignores every other bit
    Rd  read allowed            W  write allowed          X  execute allowed
    U   user mode may access (kernel-only pages have U clear)
    R   referenced: set by the MMU on any access
    M   modified: set by the MMU on a write
    pfn frame number (24 bits); in a multi-level table's upper levels this
        field holds the word address of the next-level table instead

Bit 7 is always zero. Protection is the 4-bit group ``Rd W X U``.
"""

from __future__ import annotations

from enum import IntFlag

PRESENT = 1 << 0
READ = 1 << 1
WRITE = 1 << 2
EXEC = 1 << 3
USER = 1 << 4
REFERENCED = 1 << 5
MODIFIED = 1 << 6

PFN_SHIFT = 8
PFN_BITS = 24
PFN_MASK = (1 << PFN_BITS) - 1
PROT_MASK = READ | WRITE | EXEC | USER
FLAG_MASK = (1 << PFN_SHIFT) - 1
WORD_MASK = 0xFFFF_FFFF


class Prot(IntFlag):
    """Protection bits of a PTE, usable as a set: ``Prot.READ | Prot.WRITE``."""

    NONE = 0
    READ = READ
    WRITE = WRITE
    EXEC = EXEC
    USER = USER


def make_pte(
    pfn: int, prot: int, *, present: bool = True, referenced: bool = False, modified: bool = False
) -> int:
    """Return a PTE word for frame ``pfn`` with protection ``prot``."""
    word = (pfn & PFN_MASK) << PFN_SHIFT | (prot & PROT_MASK)
    if present:
        word |= PRESENT
    if referenced:
        word |= REFERENCED
    if modified:
        word |= MODIFIED
    return word


def pfn(pte: int) -> int:
    """Frame number field of ``pte``."""
    return (pte >> PFN_SHIFT) & PFN_MASK


#: Every protection value, made once: building an IntFlag is slow, and the MMU and the
#: checks ask for a PTE's protection on every access they check.
_PROTS = tuple(Prot(bits & PROT_MASK) for bits in range(PROT_MASK + 1))


def prot(pte: int) -> Prot:
    """Protection bits of ``pte``."""
    return _PROTS[pte & PROT_MASK]


def is_present(pte: int) -> bool:
    """Whether the present bit of ``pte`` is set."""
    return bool(pte & PRESENT)


def is_referenced(pte: int) -> bool:
    """Whether the referenced bit of ``pte`` is set."""
    return bool(pte & REFERENCED)


def is_modified(pte: int) -> bool:
    """Whether the modified bit of ``pte`` is set."""
    return bool(pte & MODIFIED)


def with_flags(pte: int, set_bits: int = 0, clear_bits: int = 0) -> int:
    """``pte`` with ``set_bits`` set and ``clear_bits`` cleared (flag bits only)."""
    return ((pte | (set_bits & FLAG_MASK)) & ~(clear_bits & FLAG_MASK)) & WORD_MASK


def with_pfn(pte: int, frame: int) -> int:
    """``pte`` pointing at ``frame``, flags unchanged."""
    return (pte & FLAG_MASK) | (frame & PFN_MASK) << PFN_SHIFT
