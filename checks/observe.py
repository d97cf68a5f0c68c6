"""One reached system state as the checks see it, with derived facts computed once.

Two sources, kept apart:

* **the hardware**: page tables walked in memory from every root the
  kernel declared through the port (and the one loaded in the MMU), the
  TLB's slots, the disk's pending requests. These are facts.
* **the kernel's view**: what the kernel says about itself. It is used for
  what only the kernel knows (which process is which, where a page that is
  not resident lives, the free lists), and everywhere the hardware can
  confirm a part of it, the invariants compare the two.

Hardware facts are keyed by address-space id (asid), as the hardware knows
them; the view says which process owns which asid, and ``spaces_agree``
checks that the declared spaces and the view's processes match one to one
before any other invariant relies on that.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from pagingcheck.impl.interface import KernelView, Location, PageView, ProcessView
from pagingcheck.model import bits
from pagingcheck.model.disk import Request
from pagingcheck.model.machine import Machine
from pagingcheck.model.pagetable import Entry

User = tuple[int, int]  # (pid, vpn)


@dataclass(frozen=True)
class Violation:
    """A property failed: its name, why (in words), and the witness values."""

    property: str
    message: str
    witness: tuple[tuple[str, object], ...] = ()
    #: For a kernel's crash, its own frames of the traceback (not part of what it is).
    traceback: str = field(default="", compare=False)

    def explain(self) -> str:
        """One line: property, message and witness."""
        detail = ", ".join(f"{key}={value}" for key, value in self.witness)
        return f"{self.property}: {self.message}" + (f" ({detail})" if detail else "")


class Observed:
    """A machine and kernel view, with facts derived lazily."""

    def __init__(self, machine: Machine, view: KernelView) -> None:
        self.machine = machine
        self.view = view

    # -- the view's processes -------------------------------------------------------

    @cached_property
    def live_processes(self) -> tuple[ProcessView, ...]:
        """The view's processes that have not exited, by pid."""
        return tuple(
            sorted((p for p in self.view.processes if p.state != "exited"), key=lambda p: p.pid)
        )

    @cached_property
    def live(self) -> tuple[int, ...]:
        """Pids of live processes."""
        return tuple(p.pid for p in self.live_processes)

    @cached_property
    def pid_of(self) -> dict[int, int]:
        """asid -> pid of the live process the view gives it."""
        return {p.asid: p.pid for p in self.live_processes}

    @cached_property
    def asid_of(self) -> dict[int, int]:
        """pid -> asid, for live processes."""
        return {p.pid: p.asid for p in self.live_processes}

    # -- the hardware -----------------------------------------------------------------

    @cached_property
    def spaces(self) -> dict[int, int]:
        """asid -> table root of every address space the kernel declared (hardware)."""
        return dict(self.machine.spaces)

    @cached_property
    def tables(self) -> dict[int, list[Entry]]:
        """asid -> the non-empty leaf entries of its declared table, walked in memory."""
        fmt, memory = self.machine.format, self.machine.memory
        return {asid: fmt.entries(memory, root, asid) for asid, root in self.spaces.items()}

    @cached_property
    def present(self) -> dict[tuple[int, int], int]:
        """(asid, vpn) -> pfn for every present PTE of every declared space."""
        return {
            (asid, entry.vpn): bits.pfn(entry.pte)
            for asid, entries in self.tables.items()
            for entry in entries
            if bits.is_present(entry.pte)
        }

    @cached_property
    def mappers(self) -> dict[int, set[User]]:
        """pfn -> the (pid, vpn) pairs whose present PTE maps it (asids of no live
        process are left out; ``spaces_agree`` reports them)."""
        result: dict[int, set[User]] = defaultdict(set)
        for (asid, vpn), frame in self.present.items():
            if asid in self.pid_of:
                result[frame].add((self.pid_of[asid], vpn))
        return result

    def pte(self, pid: int, vpn: int) -> int | None:
        """The PTE word of ``vpn`` in ``pid``'s declared table (None: no entry or no table)."""
        asid = self.asid_of.get(pid)
        if asid is None or asid not in self.spaces:
            return None
        if not 0 <= vpn < self.machine.config.va_pages:
            return None
        entry = self.machine.format.walk(self.machine.memory, self.spaces[asid], asid, vpn)
        return None if entry is None else entry.pte

    def resident(self, pid: int, vpn: int) -> int | None:
        """The frame ``pid``'s page ``vpn`` is mapped present to, by the hardware, or None."""
        asid = self.asid_of.get(pid)
        return None if asid is None else self.present.get((asid, vpn))

    @cached_property
    def requests(self) -> tuple[Request, ...]:
        """The disk's pending requests (hardware)."""
        return self.machine.disk.pending

    @cached_property
    def transfers(self) -> dict[int, list[str]]:
        """pfn -> the operations of disk requests in flight on it (hardware)."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.requests:
            result[request.pfn].append(request.op)
        return result

    @cached_property
    def block_transfers(self) -> dict[int, list[str]]:
        """disk block -> the operations of disk requests in flight on it (hardware)."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.requests:
            result[request.block].append(request.op)
        return result

    @cached_property
    def slot_transfers(self) -> dict[int, list[str]]:
        """swap slot -> the operations of disk requests in flight on it (hardware)."""
        slots = self.machine.config.swap_slots
        return {block: ops for block, ops in self.block_transfers.items() if block < slots}

    # -- pages: where their contents are ----------------------------------------------

    def home(self, pid: int, page: PageView) -> Location:
        """Where the contents of ``pid``'s ``page`` are: the frame a present PTE maps it
        to (hardware), else where the view says."""
        frame = self.resident(pid, page.vpn)
        return Location("frame", frame) if frame is not None else page.home

    @cached_property
    def homes(self) -> dict[User, Location]:
        """(pid, vpn) -> :meth:`home` of every valid page of every live process."""
        return {
            (proc.pid, page.vpn): self.home(proc.pid, page)
            for proc in self.live_processes
            for page in proc.pages
        }

    def in_transit(self, home: Location) -> Request | None:
        """The pending request that moves the contents at ``home``, if any: a write of
        its frame, or a read of its block."""
        for request in self.requests:
            if home.where == "frame" and request.pfn == home.index:
                return request
            if home.where in ("slot", "image") and request.block == home.index:
                return request
        return None


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
            changes.append(f"asid {key[0]} vpn {key[1]}: frame {old_pfn} -> {new_pfn}")
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
    old_pending = [(r.op, r.block, r.pfn) for r in before.requests]
    new_pending = [(r.op, r.block, r.pfn) for r in after.requests]
    if old_pending != new_pending:
        changes.append(f"disk requests in flight: {old_pending} -> {new_pending}")
    if before.machine.cpu.state != after.machine.cpu.state:
        changes.append(f"cpu: {before.machine.cpu.state} -> {after.machine.cpu.state}")
    return changes
