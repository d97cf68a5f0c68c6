"""Editing hashed page tables (layout: ``pagingcheck.model.pagetable.hashed``).

``set_pte`` on a vpn without a node allocates one and pushes it on the
front of the chain (this is the only allocation after ``create``; out of
memory it returns False and changes nothing); ``clear`` unlinks the node
and frees it.
"""

from __future__ import annotations

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory
from pagingcheck.impl.lib.pagetable.base import TableEditor, free_words
from pagingcheck.model.pagetable.hashed import (
    NODE_NEXT,
    NODE_PTE,
    NODE_VPN,
    NODE_WORDS,
    HashedFormat,
)


class HashedEditor(TableEditor):
    """Per address space, ``hash_buckets`` chains of (vpn, PTE, next) nodes; asid ignored."""

    layout: HashedFormat

    def create(
        self, memory: Memory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate ``hash_buckets`` empty bucket words; their address, or None if no memory."""
        return self.alloc_zeroed(memory, kalloc, self.config.hash_buckets)

    def set_pte(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int, pte: int
    ) -> bool:
        """Overwrite ``vpn``'s node, or push a new one; a zero ``pte`` is a clear.

        False, with nothing changed, when a new node does not fit.
        """
        self.check("set_pte", root, vpn)
        if pte == 0:
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        found = self.layout.find(memory, root, vpn)
        if found is not None:
            memory.write(found[1] + NODE_PTE, pte)
            return True
        node = kalloc.alloc(NODE_WORDS)
        if node is None:
            return False
        head = self.layout.bucket_addr(root, vpn)
        memory.write(node + NODE_VPN, vpn)
        memory.write(node + NODE_PTE, pte)
        memory.write(node + NODE_NEXT, memory.read(head))
        memory.write(head, node)
        return True

    def clear(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Unlink and free ``vpn``'s node, if it has one."""
        self.check("clear", root, vpn)
        found = self.layout.find(memory, root, vpn)
        if found is None:
            return
        link, node = found
        memory.write(link, memory.read(node + NODE_NEXT))
        free_words(memory, kalloc, node, NODE_WORDS)

    def destroy(self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int) -> None:
        """Free every node and the bucket array, each filled with FREED_PATTERN first."""
        self.check("destroy", root)
        for node in self.layout.nodes(memory, root):
            free_words(memory, kalloc, node, NODE_WORDS)
        free_words(memory, kalloc, root, self.config.hash_buckets)
