"""One reached system state as the checks see it, with derived facts computed once.

Invariants read hardware-visible state (page tables in memory, TLB slots,
the disk's pending requests) wherever they can, and the kernel interface's
introspection view otherwise, so they work on any implementation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from pagingcheck.impl.interface import KernelView
from pagingcheck.model import bits
from pagingcheck.model.machine import Machine
from pagingcheck.model.pagetable import Entry


@dataclass(frozen=True)
class Violation:
    """A property failed: its name, why (in words), and the witness values."""

    property: str
    message: str
    witness: tuple[tuple[str, object], ...] = ()

    def explain(self) -> str:
        """One line: property, message and witness."""
        detail = ", ".join(f"{key}={value}" for key, value in self.witness)
        return f"{self.property}: {self.message}" + (f" ({detail})" if detail else "")


class Observed:
    """A machine and kernel view, with page-table facts derived lazily."""

    def __init__(self, machine: Machine, view: KernelView) -> None:
        self.machine = machine
        self.view = view

    @cached_property
    def live(self) -> tuple[int, ...]:
        """Pids of live processes."""
        return tuple(p.pid for p in self.view.processes if p.state != "exited")

    @cached_property
    def tables(self) -> dict[int, list[Entry]]:
        """Per live pid, the non-empty leaf entries of its page table."""
        fmt, memory = self.machine.format, self.machine.memory
        return {
            p.pid: fmt.entries(memory, p.root, p.asid)
            for p in self.view.processes
            if p.state != "exited"
        }

    @cached_property
    def present(self) -> dict[tuple[int, int], int]:
        """(pid, vpn) -> pfn for every present PTE of a live process."""
        return {
            (pid, entry.vpn): bits.pfn(entry.pte)
            for pid, entries in self.tables.items()
            for entry in entries
            if bits.is_present(entry.pte)
        }

    @cached_property
    def mappers(self) -> dict[int, set[tuple[int, int]]]:
        """pfn -> the (pid, vpn) pairs whose present PTE maps it."""
        result: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for key, frame in self.present.items():
            result[frame].add(key)
        return result

    @cached_property
    def transfers(self) -> dict[int, list[str]]:
        """pfn -> the operations of disk requests in flight on it (hardware-visible)."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.machine.disk.pending:
            result[request.pfn].append(request.op)
        return result

    @cached_property
    def slot_transfers(self) -> dict[int, list[str]]:
        """swap slot -> the operations of disk requests in flight on it."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.machine.disk.pending:
            if request.block < self.machine.config.swap_slots:
                result[request.block].append(request.op)
        return result

    def asid_of(self, pid: int) -> int | None:
        """The address-space id of live ``pid``."""
        proc = self.view.process(pid)
        return proc.asid if proc else None
