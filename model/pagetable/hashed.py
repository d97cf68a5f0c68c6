"""Hashed page table with chaining: per address space, buckets of linked nodes.

Layout of one address space's table (``H = hash_buckets``)::

    root -> +--------------+         node: 3 words anywhere in the kernel region
            | bucket 0     |--+      +--------------+
            | bucket 1     |  +----> | vpn          |  node + 0
            |     ...      |         | PTE          |  node + 1
            | bucket H-1   |         | next         |  node + 2 --> next node, 0 = end
            +--------------+         +--------------+

    bucket(vpn) = vpn mod hash_buckets

A bucket word holds the address of the first node of its chain, 0 when the
chain is empty (word 0 of the kernel region is never allocated, so 0 is
null). A vpn has at most one node, in chain ``bucket(vpn)``. ``set_pte`` on
a vpn without a node allocates one and pushes it on the front of the chain
(this is the only allocation after ``create``; out of memory it returns
False and changes nothing); ``clear`` unlinks the node and frees it.
"""

from __future__ import annotations

from pagingcheck.model.errors import InternalError
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.memory import FREED_PATTERN, PhysicalMemory
from pagingcheck.model.pagetable.base import Entry, FormatBase

NODE_WORDS = 3
NODE_VPN = 0
NODE_PTE = 1
NODE_NEXT = 2


def bucket(vpn: int, buckets: int) -> int:
    """The hash function: index of the chain that holds ``vpn``."""
    return vpn % buckets


class HashedFormat(FormatBase):
    """Per address space, ``hash_buckets`` chains of (vpn, PTE, next) nodes; asid ignored."""

    kind = "hashed"

    def bucket_addr(self, root: int, vpn: int) -> int:
        """Address of the bucket word whose chain holds ``vpn``."""
        return root + bucket(vpn, self.config.hash_buckets)

    def _chain(self, memory: PhysicalMemory, head_addr: int) -> list[tuple[int, int]]:
        """The chain starting at the link word ``head_addr``: (link word, node) pairs.

        Each node comes with the address of the word that points at it (the
        bucket word or the previous node's next word). Reads only.
        """
        result: list[tuple[int, int]] = []
        link, node = head_addr, memory.read(head_addr)
        while node:
            if len(result) == self.config.va_pages:
                raise InternalError(f"HashedFormat: chain at {head_addr} is longer than va_pages")
            result.append((link, node))
            link, node = node + NODE_NEXT, memory.read(node + NODE_NEXT)
        return result

    def _find(self, memory: PhysicalMemory, root: int, vpn: int) -> tuple[int, int] | None:
        """(link word, node) of ``vpn``'s node, or None. Reads only."""
        for link, node in self._chain(memory, self.bucket_addr(root, vpn)):
            if memory.read(node + NODE_VPN) == vpn:
                return link, node
        return None

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate ``hash_buckets`` empty bucket words; their address, or None if no memory."""
        return self._alloc_zeroed(memory, kalloc, self.config.hash_buckets)

    def walk(self, memory: PhysicalMemory, root: int, asid: int, vpn: int) -> Entry | None:
        """The entry of ``vpn``, or None (no node, or root 0). Reads only."""
        if root == 0:
            return None
        self._check("walk", root, vpn)
        found = self._find(memory, root, vpn)
        if found is None:
            return None
        node = found[1]
        pte = memory.read(node + NODE_PTE)
        return Entry(vpn, node + NODE_PTE, pte) if pte else None

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        """Overwrite ``vpn``'s node, or push a new one; a zero ``pte`` is a clear.

        False, with nothing changed, when a new node does not fit.
        """
        self._check("set_pte", root, vpn)
        if pte == 0:
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        found = self._find(memory, root, vpn)
        if found is not None:
            memory.write(found[1] + NODE_PTE, pte)
            return True
        node = kalloc.alloc(NODE_WORDS)
        if node is None:
            return False
        head = self.bucket_addr(root, vpn)
        memory.write(node + NODE_VPN, vpn)
        memory.write(node + NODE_PTE, pte)
        memory.write(node + NODE_NEXT, memory.read(head))
        memory.write(head, node)
        return True

    def _free_node(self, memory: PhysicalMemory, kalloc: KernelAllocator, node: int) -> None:
        for offset in range(NODE_WORDS):
            memory.write(node + offset, FREED_PATTERN)
        kalloc.free(node, NODE_WORDS)

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Unlink and free ``vpn``'s node, if it has one."""
        self._check("clear", root, vpn)
        found = self._find(memory, root, vpn)
        if found is None:
            return
        link, node = found
        memory.write(link, memory.read(node + NODE_NEXT))
        self._free_node(memory, kalloc, node)

    def _nodes(self, memory: PhysicalMemory, root: int) -> list[int]:
        return [
            node
            for index in range(self.config.hash_buckets)
            for _, node in self._chain(memory, root + index)
        ]

    def entries(self, memory: PhysicalMemory, root: int, asid: int) -> list[Entry]:
        """Every node with a non-zero PTE, by vpn."""
        self._check("entries", root)
        found = [
            Entry(memory.read(node + NODE_VPN), node + NODE_PTE, memory.read(node + NODE_PTE))
            for node in self._nodes(memory, root)
        ]
        return sorted((entry for entry in found if entry.pte), key=lambda entry: entry.vpn)

    def table_words(self, memory: PhysicalMemory, root: int, asid: int) -> list[tuple[int, int]]:
        """The bucket array, then every node."""
        self._check("table_words", root)
        nodes = [(node, NODE_WORDS) for node in self._nodes(memory, root)]
        return [(root, self.config.hash_buckets), *nodes]

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        """Free every node and the bucket array, each filled with FREED_PATTERN first."""
        self._check("destroy", root)
        for node in self._nodes(memory, root):
            self._free_node(memory, kalloc, node)
        for index in range(self.config.hash_buckets):
            memory.write(root + index, FREED_PATTERN)
        kalloc.free(root, self.config.hash_buckets)
