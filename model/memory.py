"""Physical memory: an array of 32-bit words, in page-sized frames.

Frames ``0 .. kernel_frames-1`` are the kernel region (page tables and other
kernel data, never paged). Frames from ``kernel_frames`` up are user frames.
Physical address ``pa`` is word ``pa`` of the array; frame ``pfn`` spans
``pfn*page_words .. (pfn+1)*page_words - 1``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError

Words = npt.NDArray[np.uint32]


class PhysicalMemory:
    """Word-addressed physical memory backed by one numpy array."""

    __slots__ = ("page_words", "words")

    def __init__(self, config: HardwareConfig, words: Words | None = None) -> None:
        self.page_words = config.page_words
        self.words: Words = (
            np.zeros(config.memory_words, dtype=np.uint32) if words is None else words
        )

    def _check(self, pa: int) -> None:
        if not 0 <= pa < len(self.words):
            raise InternalError(f"PhysicalMemory: physical address {pa} out of range")

    def read(self, pa: int) -> int:
        """Word at physical address ``pa``."""
        self._check(pa)
        return int(self.words[pa])

    def write(self, pa: int, value: int) -> None:
        """Store ``value`` (taken modulo 2**32) at physical address ``pa``."""
        self._check(pa)
        self.words[pa] = value & 0xFFFF_FFFF

    def frame(self, pfn: int) -> Words:
        """A copy of the words of frame ``pfn``."""
        base = pfn * self.page_words
        return self.words[base : base + self.page_words].copy()

    def fill_frame(self, pfn: int, data: Words | int) -> None:
        """Overwrite frame ``pfn`` with ``data`` (page_words words, or one repeated value)."""
        base = pfn * self.page_words
        self.words[base : base + self.page_words] = data

    def copy(self) -> PhysicalMemory:
        """An independent copy."""
        clone = PhysicalMemory.__new__(PhysicalMemory)
        clone.page_words = self.page_words
        clone.words = self.words.copy()
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhysicalMemory) and bool(np.array_equal(self.words, other.words))

    __hash__ = None  # type: ignore[assignment]
