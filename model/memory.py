"""Physical memory: 32-bit words in page-sized frames.

Frames ``0 .. kernel_frames-1`` are the kernel region (page tables and other
kernel data, never paged). Frames from ``kernel_frames`` up are user frames.
Physical address ``pa`` is word ``pa % page_words`` of frame
``pa // page_words``.

Each frame is a tuple of words, which a write replaces with a changed copy:
a copy of the memory is a copy of the list of frames, and copies share every
frame neither has written since. A state the explorer keeps costs the frames
its step wrote, not the whole memory.
"""

from __future__ import annotations

import sys
from array import array
from hashlib import blake2b
from itertools import chain

import numpy as np
import numpy.typing as npt

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError

Words = npt.NDArray[np.uint32]
Frame = tuple[int, ...]  # one frame's (or disk block's) words


def frame_bytes(frame: Frame) -> bytes:
    """``frame``'s words as bytes, little-endian 32-bit, on every machine."""
    words = array("I", frame)
    if sys.byteorder == "big":
        words.byteswap()
    return words.tobytes()


def digest(frames: list[Frame], kept: list[bytes | None]) -> bytes:
    """A 16-byte digest of ``frames``, from the digest of each frame; ``kept[i]`` is frame
    ``i``'s digest (None where it changed since), filled in here. A frame no write
    replaced keeps its digest, so a state hashes only the frames its step wrote."""
    for index, known in enumerate(kept):
        if known is None:
            kept[index] = blake2b(frame_bytes(frames[index]), digest_size=16).digest()
    return blake2b(b"".join(kept), digest_size=16).digest()  # type: ignore[arg-type]


class PhysicalMemory:
    """Word-addressed physical memory, one shared tuple of words per frame."""

    __slots__ = ("digests", "frames", "page_words", "size")

    def __init__(self, config: HardwareConfig, words: Words | None = None) -> None:
        self.page_words = pw = config.page_words
        self.size = config.memory_words
        if words is None:
            self.frames: list[Frame] = [(0,) * pw] * config.total_frames
        else:
            if len(words) != self.size:
                raise InternalError(f"PhysicalMemory: {len(words)} words given, {self.size} needed")
            listed = [int(word) & 0xFFFF_FFFF for word in words]
            self.frames = [tuple(listed[base : base + pw]) for base in range(0, self.size, pw)]
        self.digests: list[bytes | None] = [None] * len(self.frames)

    def read(self, pa: int) -> int:
        """Word at physical address ``pa``."""
        if not 0 <= pa < self.size:
            raise InternalError(f"PhysicalMemory: physical address {pa} out of range")
        return self.frames[pa // self.page_words][pa % self.page_words]

    def write(self, pa: int, value: int) -> None:
        """Store ``value`` (taken modulo 2**32) at physical address ``pa``."""
        if not 0 <= pa < self.size:
            raise InternalError(f"PhysicalMemory: physical address {pa} out of range")
        frame, offset = divmod(pa, self.page_words)
        old = self.frames[frame]
        self.frames[frame] = (*old[:offset], value & 0xFFFF_FFFF, *old[offset + 1 :])
        self.digests[frame] = None

    def frame(self, pfn: int) -> Words:
        """A copy of the words of frame ``pfn``."""
        return np.array(self.frames[pfn], dtype=np.uint32)

    def fill_frame(self, pfn: int, data: Frame | Words | int) -> None:
        """Overwrite frame ``pfn`` with ``data`` (page_words words, or one repeated value).
        A tuple is taken as it is (a disk block read into the frame is shared with it)."""
        if isinstance(data, tuple) and len(data) == self.page_words:
            self.frames[pfn] = data
        elif isinstance(data, int | np.integer):
            self.frames[pfn] = (int(data) & 0xFFFF_FFFF,) * self.page_words
        else:
            filled = np.empty(self.page_words, dtype=np.uint32)
            filled[:] = data
            self.frames[pfn] = tuple(filled.tolist())
        self.digests[pfn] = None

    @property
    def words(self) -> Words:
        """All of memory as one new array (writing goes through :meth:`write` and
        :meth:`fill_frame`)."""
        return np.frombuffer(array("I", chain.from_iterable(self.frames)), dtype=np.uint32).copy()

    def digest(self) -> bytes:
        """A 16-byte digest of every word, hashing only the frames written since the last
        digest of this memory or of the one it was copied from."""
        return digest(self.frames, self.digests)

    def copy(self) -> PhysicalMemory:
        """An independent copy, sharing every frame until one side writes it."""
        clone = PhysicalMemory.__new__(PhysicalMemory)
        clone.page_words = self.page_words
        clone.size = self.size
        clone.frames = list(self.frames)
        clone.digests = list(self.digests)
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhysicalMemory) and self.frames == other.frames

    __hash__ = None  # type: ignore[assignment]
