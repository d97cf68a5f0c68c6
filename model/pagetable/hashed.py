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
null). A vpn has at most one node, in chain ``bucket(vpn)``. A chain is at
most ``va_pages`` nodes long; the walker stops there, and at a node that
would not fit in memory.
"""

from __future__ import annotations

from pagingcheck.model.pagetable.base import Entry, FormatBase, Reader

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

    @property
    def table_size(self) -> int:
        """Words of the bucket array."""
        return self.config.hash_buckets

    def bucket_addr(self, root: int, vpn: int) -> int:
        """Address of the bucket word whose chain holds ``vpn``."""
        return root + bucket(vpn, self.config.hash_buckets)

    def chain(self, memory: Reader, head_addr: int) -> list[tuple[int, int]]:
        """The chain starting at the link word ``head_addr``: (link word, node) pairs.

        Each node comes with the address of the word that points at it (the
        bucket word or the previous node's next word). Reads only; stops at
        ``va_pages`` nodes and at a node that would not fit in memory.
        """
        result: list[tuple[int, int]] = []
        link, node = head_addr, memory.read(head_addr)
        while node and len(result) < self.config.va_pages and self.in_memory(node, NODE_WORDS):
            result.append((link, node))
            link, node = node + NODE_NEXT, memory.read(node + NODE_NEXT)
        return result

    def find(self, memory: Reader, root: int, vpn: int) -> tuple[int, int] | None:
        """(link word, node) of ``vpn``'s node, or None. Reads only."""
        for link, node in self.chain(memory, self.bucket_addr(root, vpn)):
            if memory.read(node + NODE_VPN) == vpn:
                return link, node
        return None

    def _has_table(self, root: int) -> bool:
        return root != 0 and self.in_memory(root, self.table_size)

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        """The entry of ``vpn``, or None (no node, or root 0). Reads only."""
        self.check_vpn("walk", vpn)
        if not self._has_table(root):
            return None
        found = self.find(memory, root, vpn)
        if found is None:
            return None
        node = found[1]
        pte = memory.read(node + NODE_PTE)
        return Entry(vpn, node + NODE_PTE, pte) if pte else None

    def nodes(self, memory: Reader, root: int) -> list[int]:
        """Every node of every chain, bucket by bucket."""
        if not self._has_table(root):
            return []
        return [
            node
            for index in range(self.config.hash_buckets)
            for _, node in self.chain(memory, root + index)
        ]

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        """Every node with a non-zero PTE, by vpn."""
        found = [
            Entry(memory.read(node + NODE_VPN), node + NODE_PTE, memory.read(node + NODE_PTE))
            for node in self.nodes(memory, root)
        ]
        return sorted((entry for entry in found if entry.pte), key=lambda entry: entry.vpn)

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        """The bucket array, then every node."""
        if root == 0:
            return []
        nodes = [(node, NODE_WORDS) for node in self.nodes(memory, root)]
        return [(root, self.config.hash_buckets), *nodes]
