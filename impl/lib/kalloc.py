"""Allocator for kernel-region memory, where page tables live.

The allocator hands out word ranges of the kernel region, first fit, and
coalesces on free. Running out is a value (``None``), not an exception: the
kernel turns it into a clean refusal. Its state is a tuple of free extents,
so it copies and compares as a value.

Word 0 is never handed out, so 0 can mean "null" in in-memory link fields.
"""

from __future__ import annotations

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError

Extent = tuple[int, int]  # (start, length) in words


class KernelAllocator:
    """First-fit allocator over the kernel region's words."""

    __slots__ = ("free_extents",)

    def __init__(self, config: HardwareConfig) -> None:
        size = config.kernel_frames * config.page_words
        self.free_extents: tuple[Extent, ...] = ((1, size - 1),) if size > 1 else ()

    def alloc(self, words: int, align: int = 1) -> int | None:
        """Reserve ``words`` words aligned to ``align``; return the address or None if full."""
        if words <= 0:
            raise InternalError(f"KernelAllocator.alloc: bad size {words}")
        for index, (start, length) in enumerate(self.free_extents):
            base = -(-start // align) * align
            waste = base - start
            if waste + words <= length:
                pieces = []
                if waste:
                    pieces.append((start, waste))
                rest = length - waste - words
                if rest:
                    pieces.append((base + words, rest))
                extents = list(self.free_extents)
                extents[index : index + 1] = pieces
                self.free_extents = tuple(extents)
                return base
        return None

    def free(self, address: int, words: int) -> None:
        """Return ``words`` words at ``address``; freeing what is already free is a bug."""
        end = address + words
        merged: list[Extent] = []
        placed = False
        for start, length in self.free_extents:
            if start < end and address < start + length:
                raise InternalError(f"KernelAllocator.free: [{address}, {end}) already free")
            if not placed and address < start:
                merged.append((address, words))
                placed = True
            merged.append((start, length))
        if not placed:
            merged.append((address, words))
        coalesced: list[Extent] = []
        for start, length in merged:
            if coalesced and coalesced[-1][0] + coalesced[-1][1] == start:
                coalesced[-1] = (coalesced[-1][0], coalesced[-1][1] + length)
            else:
                coalesced.append((start, length))
        self.free_extents = tuple(coalesced)

    @property
    def free_words(self) -> int:
        """Words still free."""
        return sum(length for _, length in self.free_extents)

    def copy(self) -> KernelAllocator:
        """An independent copy."""
        clone = KernelAllocator.__new__(KernelAllocator)
        clone.free_extents = self.free_extents
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelAllocator) and self.free_extents == other.free_extents

    __hash__ = None  # type: ignore[assignment]
