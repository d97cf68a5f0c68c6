"""What every table editor of the kernel library provides.

An editor creates, changes and destroys the page tables of one format in
physical memory, following the layout the hardware walks (the format's
read-only half in ``pagingcheck.model.pagetable``, which an editor keeps
as ``layout``). Tables live in the kernel region and are allocated with
:class:`~pagingcheck.impl.lib.kalloc.KernelAllocator`.

Memory is reached through anything with ``read`` and ``write`` (the
kernel's hardware port, or a :class:`~pagingcheck.impl.lib.memory.Overlay`
on it for trial edits). Rules shared by every format:

* ``set_pte`` with a zero PTE is a ``clear`` (the inverted table treats any
  non-present PTE so: it holds resident pages only);
* out of kernel memory, ``boot`` / ``create`` return None and ``set_pte``
  returns False, with memory and the allocator exactly as before;
* a vpn outside the address space, or a root that is not a table, raises
  InternalError: the calling kernel broke the contract;
* freed table words are filled with ``FREED_PATTERN``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import FREED_PATTERN, Memory, fill
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.pagetable import Entry, PageTableFormat


class TableEditor(ABC):
    """Creating and editing one format's tables; ``layout`` is the format the MMU walks."""

    def __init__(self, layout: PageTableFormat) -> None:
        self.layout = layout
        self.config: HardwareConfig = layout.config

    @property
    def kind(self) -> str:
        """The format's name."""
        return self.layout.kind

    def boot(self, memory: Memory, kalloc: KernelAllocator) -> int | None:
        """Allocate system-wide structures once at boot; return ``system_root`` (0 if none).

        Returns None when kernel memory cannot hold them. This default has no
        system-wide structures and returns 0.
        """
        return 0

    @abstractmethod
    def create(
        self, memory: Memory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate and clear an empty table for ``asid``; return its root or None if no memory."""

    def walk(self, memory: Memory, root: int, asid: int, vpn: int) -> Entry | None:
        """The hardware walk of the layout (reads only)."""
        return self.layout.walk(memory, root, asid, vpn)

    @abstractmethod
    def set_pte(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int, pte: int
    ) -> bool:
        """Install or overwrite the PTE for ``vpn``; False (nothing changed) if out of memory."""

    @abstractmethod
    def clear(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Remove any entry for ``vpn``; afterwards ``walk`` returns None or a zero PTE."""

    @abstractmethod
    def destroy(self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int) -> None:
        """Free every table structure of ``asid`` (system-wide structures stay)."""

    def alloc_zeroed(self, memory: Memory, kalloc: KernelAllocator, words: int) -> int | None:
        """``words`` zeroed words of kernel memory; their address, or None if none is left."""
        address = kalloc.alloc(words)
        if address is not None:
            fill(memory, address, words, 0)
        return address

    def check(self, where: str, root: int, vpn: int | None = None) -> None:
        """Raise InternalError (a kernel bug) for a null root or a vpn outside the space."""
        name = type(self).__name__
        if root <= 0:
            raise InternalError(f"{name}.{where}: root {root} is not a table")
        if vpn is not None and not 0 <= vpn < self.config.va_pages:
            raise InternalError(f"{name}.{where}: vpn {vpn} out of range")


def free_words(memory: Memory, kalloc: KernelAllocator, address: int, words: int) -> None:
    """Fill table memory with FREED_PATTERN and give it back to the allocator."""
    fill(memory, address, words, FREED_PATTERN)
    kalloc.free(address, words)
