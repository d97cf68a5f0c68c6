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


def difference(before: Observed, after: Observed) -> list[str]:
    """What changed between two states, in words: processes, mappings, frames, free lists,
    transfers in flight and the CPU. Traces show it for the failing step."""
    changes: list[str] = []
    states_before = {p.pid: p.state for p in before.view.processes}
    for proc in after.view.processes:
        old = states_before.get(proc.pid)
        if old != proc.state:
            changes.append(f"process {proc.pid}: {old or 'new'} -> {proc.state}")
    for key in sorted(set(before.present) | set(after.present)):
        old_pfn, new_pfn = before.present.get(key), after.present.get(key)
        if old_pfn != new_pfn:
            changes.append(f"pid {key[0]} vpn {key[1]}: frame {old_pfn} -> {new_pfn}")
    frames_before = {f.pfn: f for f in before.view.frames}
    for frame in after.view.frames:
        old_frame = frames_before.get(frame.pfn)
        if old_frame != frame:
            was = "-" if old_frame is None else f"{old_frame.status}/{old_frame.refcount}"
            changes.append(
                f"frame {frame.pfn}: {was} -> {frame.status}/{frame.refcount}"
                f"{' transfer ' + frame.transfer if frame.transfer else ''}"
            )
    for label, old_list, new_list in (
        ("free frames", before.view.free_frames, after.view.free_frames),
        ("free slots", before.view.free_slots, after.view.free_slots),
    ):
        if old_list != new_list:
            changes.append(f"{label}: {list(old_list)} -> {list(new_list)}")
    old_pending = [(r.op, r.block, r.pfn) for r in before.machine.disk.pending]
    new_pending = [(r.op, r.block, r.pfn) for r in after.machine.disk.pending]
    if old_pending != new_pending:
        changes.append(f"disk requests in flight: {old_pending} -> {new_pending}")
    if before.machine.cpu.state != after.machine.cpu.state:
        changes.append(f"cpu: {before.machine.cpu.state} -> {after.machine.cpu.state}")
    return changes
