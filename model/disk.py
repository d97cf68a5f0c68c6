"""The swap disk: page-sized blocks, asynchronous requests, DMA at completion.

Blocks ``0 .. swap_slots-1`` are swap slots (block number = slot number);
blocks ``swap_slots .. disk_blocks-1`` are the image area: program images
from its start, and the workload's files (:class:`DiskFile`) at its end,
loaded at boot with :meth:`Disk.write_block`. Program images are read-only;
swap slots and file blocks may be written.

A request moves one page between a block and a frame. :meth:`Disk.submit`
only queues it; the copy happens when the driver chooses to complete it
(:meth:`Disk.complete`), reading or writing the frame *as it is then*. So
if the kernel reuses a frame while a transfer is in flight, the damage is
real: a write-back carries whatever the frame holds at completion, and a
page-in overwrites whatever a new owner wrote meanwhile.

Ordering (``config.disk_order``): ``fifo`` completes requests in submission
order; ``any`` lets the driver complete any pending request next.

A request's id is the smallest number no other pending request uses, so two
states with the same pending transfers have the same ids and the state
space stays finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.memory import Frame, PhysicalMemory, Words, digest

DiskOp = Literal["read", "write"]


@dataclass(frozen=True)
class DiskFile:
    """A file of the workload on the disk: its ``pages`` pages in consecutive blocks from
    block ``first``. MMAP maps it; a shared mapping's changes are written back here."""

    name: str
    first: int
    pages: int

    @property
    def blocks(self) -> range:
        """Every block of the file."""
        return range(self.first, self.first + self.pages)


@dataclass(frozen=True)
class Request:
    """A transfer: ``read`` copies ``block`` to frame ``pfn``, ``write`` the other way."""

    id: int
    op: DiskOp
    block: int
    pfn: int


class Disk:
    """Blocks of words plus the queue of pending requests."""

    __slots__ = ("blocks", "config", "digests", "order", "pending")

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.order = config.disk_order
        # One tuple of words per block, replaced (never changed) by a write, so copies of
        # the disk share every block neither has written since, as memory shares frames
        # (and a transfer shares its words between the block and the frame).
        self.blocks: list[Frame] = [(0,) * config.page_words] * config.disk_blocks
        self.digests: list[bytes | None] = [None] * config.disk_blocks
        self.pending: tuple[Request, ...] = ()

    @property
    def first_image_block(self) -> int:
        """Block number of the first program-image block (just after the swap slots)."""
        return self.config.swap_slots

    def _check_block(self, block: int, caller: str) -> None:
        if not 0 <= block < self.config.disk_blocks:
            raise InternalError(
                f"Disk.{caller}: block {block} out of range 0..{self.config.disk_blocks - 1}"
            )

    # -- requests ----------------------------------------------------------------

    def submit(self, op: DiskOp, block: int, pfn: int) -> Request:
        """Queue a transfer of ``block`` <-> frame ``pfn``; nothing is copied yet.

        Returns the request (its id is free among pending ones). Raises
        InternalError for an unknown op, a block or frame out of range.
        """
        if op not in ("read", "write"):
            raise InternalError(f"Disk.submit: op {op!r} is not 'read' or 'write'")
        self._check_block(block, "submit")
        if not 0 <= pfn < self.config.total_frames:
            raise InternalError(
                f"Disk.submit: frame {pfn} out of range 0..{self.config.total_frames - 1}"
            )
        used = {request.id for request in self.pending}
        request = Request(min(set(range(len(used) + 1)) - used), op, block, pfn)
        self.pending = (*self.pending, request)
        return request

    def completable(self) -> tuple[int, ...]:
        """Indices into ``pending`` that may complete next (fifo: only the oldest)."""
        if not self.pending:
            return ()
        return (0,) if self.order == "fifo" else tuple(range(len(self.pending)))

    def complete(self, index: int, memory: PhysicalMemory) -> Request:
        """Complete ``pending[index]``: do its DMA copy now, dequeue it and return it.

        Raises InternalError if ``index`` is not in :meth:`completable`.
        """
        if index not in self.completable():
            raise InternalError(
                f"Disk.complete: index {index} is not completable now "
                f"(completable: {list(self.completable())})"
            )
        request = self.pending[index]
        if request.op == "read":
            memory.fill_frame(request.pfn, self.blocks[request.block])
        else:
            self.blocks[request.block] = memory.frames[request.pfn]
            self.digests[request.block] = None
        self.pending = self.pending[:index] + self.pending[index + 1 :]
        return request

    # -- direct access (boot-time image loading, checks) --------------------------

    def read_block(self, block: int) -> Words:
        """A copy of the words of ``block``."""
        self._check_block(block, "read_block")
        return np.array(self.blocks[block], dtype=np.uint32)

    def write_block(self, block: int, words: Sequence[int] | Words) -> None:
        """Store ``words`` (at most page_words; the rest of the block becomes 0) in ``block``."""
        self._check_block(block, "write_block")
        data = np.asarray(words, dtype=np.int64)
        if data.ndim != 1 or len(data) > self.config.page_words:
            raise InternalError(
                f"Disk.write_block: {data.shape} words do not fit a block of "
                f"{self.config.page_words}"
            )
        padded = np.zeros(self.config.page_words, dtype=np.uint32)
        padded[: len(data)] = data & 0xFFFF_FFFF
        self.blocks[block] = tuple(padded.tolist())
        self.digests[block] = None

    # -- values ----------------------------------------------------------------------

    def copy(self) -> Disk:
        """An independent copy, sharing every block until one side writes it."""
        clone = Disk.__new__(Disk)
        clone.config = self.config
        clone.order = self.order
        clone.blocks = list(self.blocks)
        clone.digests = list(self.digests)
        clone.pending = self.pending
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Disk)
            and self.pending == other.pending
            and self.blocks == other.blocks
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def contents(self) -> Words:
        """Every block's words as one new array of shape (disk_blocks, page_words)."""
        return np.array(self.blocks, dtype=np.uint32)

    def digest(self) -> bytes:
        """A 16-byte digest of every block's words, hashing only the blocks written since
        the last digest (see :func:`pagingcheck.model.memory.digest`)."""
        return digest(self.blocks, self.digests)

    def snapshot(self) -> tuple[tuple[int, str, int, int], ...]:
        """The pending queue as a hashable value (block contents are in ``blocks``)."""
        return tuple((r.id, r.op, r.block, r.pfn) for r in self.pending)

    def fingerprint(self) -> bytes:
        """A stable digest of blocks and pending queue."""
        return fingerprint(self.digest(), self.snapshot())
