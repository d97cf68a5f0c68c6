"""Coverage in paging terms: which paging situations a run reached, and how often.

A green run means something only if it exercised the paging code, so every
checked step is classified into situations, read from what the hardware
shows (faults, the disk's queue, the page tables) and where contents live
(:meth:`~pagingcheck.checks.observe.Observed.homes`), never from one
kernel's private events, so coverage means the same for every kernel.

The situations about transfers say exactly what happened:

``fault_on_page_in_transit``
    a process faulted on a page whose contents a pending disk request is
    moving (a write-back of its frame, or a read of its block);
``shared_page_in_transit``
    the same, by a process spawned after boot, on a page of a shared
    object (program text, a shared segment) another live process shares:
    the kernel must wait for the transfer already moving it, whoever
    started it, not move it twice;
``exit_with_transfer_in_flight``
    a process left while a pending request was moving one of its pages;
``orphan_adopted``
    a request left that way with no blocked process waiting for what it
    moves, and then another process faulted on the page it moves. Read from
    the hardware, this says the situation arose; how the kernel met it
    (waiting for that request, or reading the page again elsewhere) is
    for the properties to judge.

``partial_write``
    an instruction faulted after some of its writes (a PUSHM whose next
    word's page was not there or not writable): memory keeps them while the
    instruction waits to run again (refinement has checked them against
    the spec's run of it);
``stack_growth``
    a page fault gave its process valid pages it did not have (refinement
    has checked them against the spec's stack rule by then);
``heap_growth``, ``heap_shrink``
    a system call gave its process valid pages, or took some away (SBRK);
``lazy_first_touch``
    a process faulted on a valid writable private page that held no swap
    slot yet (a heap page SBRK added, touched for the first time);
``out_of_memory_kill``
    such a first touch killed its process (refinement has checked that the
    view showed no free swap slot);
``kernel_mode_fault``
    a system call that reads or writes user memory (WRITE, READ) found its
    buffer's page not resident (or, for READ, shared copy-on-write), and the
    kernel will run the call again once the page is in (refinement has
    checked that the step changed nothing the spec sees);
``read_input``
    a READ took console input into user memory;
``kernel_cow_break``
    a READ's buffer was on a private page whose frame or slot another
    process's private page shared (a fork's copy-on-write), and after the
    step the two no longer share it: the kernel copied the page before
    writing it;
``fork``
    a FORK made a child process;
``cow_break``
    a write protection fault on a private page whose frame or slot another
    process's private page shared (a fork's copy-on-write), after which the
    two no longer share it: the page was copied;
``cow_takeover``
    a write protection fault on a writable private page that no other
    process shares any more, the process still alive: the kernel must give
    the page write back without copying it;
``exec``
    an EXEC gave its process a new image (its registers do not show the
    call failed; refinement has checked the image against the spec's);
``wait_asleep``
    a WAIT did not return because every child of its process was alive,
    and the kernel will run it again (refinement has checked that the step
    changed nothing the spec sees);
``mmap``, ``munmap``
    an MMAP gave its process valid pages, a MUNMAP took some away;
``file_copy``
    a page of a private mapping that showed the file's page before the step
    is the process's own after it: the kernel copied it (at the write that
    needs it, or a fault before);
``file_writeback``
    a write of a frame to a block of one of the workload's files started
    (the disk's queue shows it): a page written through a shared mapping
    goes back to its file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pagingcheck.checks.abstraction import registers
from pagingcheck.checks.observe import Observed
from pagingcheck.checks.system import StepRecord
from pagingcheck.model.config import RESTART_VARIANTS, HardwareConfig
from pagingcheck.model.disk import Request
from pagingcheck.model.isa import (
    EXEC_FAILED,
    FAULT_POINTS,
    SYS_EXEC,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_READ,
    SYS_SBRK,
    SYS_WAIT,
    SYS_WRITE,
    buffer_page,
)
from pagingcheck.model.traps import TrapKind

#: Every situation coverage knows, in report order.
SITUATIONS: tuple[str, ...] = (
    "fault:page_fault",
    "fault:protection_fault",
    "fault:tlb_miss",
    *(f"restart:{variant}:{point}" for variant in RESTART_VARIANTS for point in FAULT_POINTS),
    "partial_write",
    "evict:dirty",
    "evict:clean",
    "fault_on_page_in_transit",
    "shared_page_in_transit",
    "exit_with_transfer_in_flight",
    "orphan_adopted",
    "shared_evicted",
    "shared_refcount_zero",
    "protection_kill",
    "stack_growth",
    "heap_growth",
    "heap_shrink",
    "lazy_first_touch",
    "out_of_memory_kill",
    "kernel_mode_fault",
    "read_input",
    "kernel_cow_break",
    "fork",
    "cow_break",
    "cow_takeover",
    "exec",
    "wait_asleep",
    "mmap",
    "munmap",
    "file_copy",
    "file_writeback",
    *(
        f"tlb_miss:{refill}:{tag}"
        for refill in ("hardware", "software")
        for tag in ("tagged", "untagged")
    ),
)


class Tracker:
    """Classifies the steps of one run; remembers the requests orphaned so far."""

    def __init__(self) -> None:
        self.orphans: set[Request] = set()
        self.spawned: set[int] = set()  # processes created by a spawn choice, after boot

    def classify(
        self, config: HardwareConfig, record: StepRecord, before: Observed, after: Observed
    ) -> set[str]:
        """The situations one step reached."""
        reached: set[str] = set()
        result = record.result
        tag = "tagged" if config.tlb_tagged else "untagged"
        if isinstance(record.spawned, int):
            self.spawned.add(record.spawned)
        if result is not None and result.fault is not None:
            reached.add(f"fault:{result.fault.kind.value}")
            if result.fault_point is not None:
                reached.add(f"restart:{config.restart}:{result.fault_point}")
            if result.writes:
                reached.add("partial_write")
            if result.fault.kind is TrapKind.TLB_MISS:
                reached.add(f"tlb_miss:software:{tag}")
            reached |= self._fault_in_transit(record, before)
            pid = int(record.choice[1])
            if _gained_pages(pid, before, after):
                reached.add("stack_growth")
            vpn = result.fault.va // config.page_words
            if result.fault.kind is not TrapKind.PROTECTION_FAULT and before.unbacked(pid, vpn):
                reached.add("lazy_first_touch")
                if pid not in after.live:
                    reached.add("out_of_memory_kill")
        if record.forked:
            reached.add("fork")
        reached |= _copy_on_write(config, record, before, after)
        if result is not None and result.syscall == SYS_SBRK:
            pid = int(record.choice[1])
            if _gained_pages(pid, before, after):
                reached.add("heap_growth")
            if _gained_pages(pid, after, before):
                reached.add("heap_shrink")
        if result is not None and result.syscall in (SYS_READ, SYS_WRITE) and not result.retired:
            reached.add("kernel_mode_fault")  # the step was a restarted call (see refinement)
        reached |= _console_read(config, record, before, after)
        reached |= _files(record, before, after)
        if result is not None and result.syscall == SYS_WAIT and not result.retired:
            reached.add("wait_asleep")  # restarted too
        executed = result is not None and result.syscall == SYS_EXEC and result.retired
        if executed and _returned(int(record.choice[1]), after) not in (None, EXEC_FAILED):
            reached.add("exec")
        if result is not None and config.tlb_refill == "hardware":
            # The walker filled a slot: some (asid, vpn) is cached now that was not.
            old = {(e.asid, e.vpn) for e in before.machine.mmu.tlb.entries()}
            if any((e.asid, e.vpn) not in old for e in after.machine.mmu.tlb.entries()):
                reached.add(f"tlb_miss:hardware:{tag}")
        reached |= _evictions(before, after)
        reached |= self._departures(record, before, after)
        self.orphans &= set(after.requests)
        return reached

    def _fault_in_transit(self, record: StepRecord, before: Observed) -> set[str]:
        result = record.result
        assert result is not None and result.fault is not None
        pid = int(record.choice[1])
        vpn = result.fault.va // before.machine.config.page_words
        home = before.homes.get((pid, vpn))
        request = None if home is None else before.in_transit(home)
        if request is None:
            return set()
        reached = {"fault_on_page_in_transit"}
        if pid in self.spawned and _shared(before, pid, vpn):
            reached.add("shared_page_in_transit")
        if request in self.orphans:
            self.orphans.discard(request)
            reached.add("orphan_adopted")
        return reached

    def _departures(self, record: StepRecord, before: Observed, after: Observed) -> set[str]:
        reached: set[str] = set()
        gone = set(before.live) - set(after.live)
        if not gone:
            return reached
        result = record.result
        fault = None if result is None else result.fault
        if fault is not None and fault.kind is TrapKind.PROTECTION_FAULT:
            reached.add("protection_kill")
        left_moving = {
            request
            for (pid, _), home in before.homes.items()
            if pid in gone and (request := before.in_transit(home)) in after.requests
        }
        if left_moving:
            reached.add("exit_with_transfer_in_flight")
        blocked = {p.pid for p in after.live_processes if p.state == "blocked"}
        waited_for = {
            after.in_transit(home) for (pid, _), home in after.homes.items() if pid in blocked
        }
        self.orphans |= left_moving - waited_for
        if _shared_keys(before) - _shared_keys(after):
            reached.add("shared_refcount_zero")
        return reached


def _returned(pid: int, after: Observed) -> int | None:
    """``pid``'s r0 after a step, as the abstraction reads its registers; None once it has
    exited."""
    process = after.view.process(pid)
    if process is None or pid not in after.live:
        return None
    return registers(after, process, {}).regs[0]


def _console_read(
    config: HardwareConfig, record: StepRecord, before: Observed, after: Observed
) -> set[str]:
    """``read_input`` and ``kernel_cow_break`` for a READ step (see the module docstring)."""
    result = record.result
    if result is None or result.syscall != SYS_READ:
        return set()
    reached = set()
    if len(after.machine.console_input) < len(before.machine.console_input):
        reached.add("read_input")
    pid = int(record.choice[1])
    process = after.view.process(pid)
    if process is None or pid not in after.live:
        return reached
    regs = registers(after, process, {}).regs
    vpn = buffer_page(regs[1], regs[2], config.page_words)
    if vpn is not None and before.shares_copy(pid, vpn) and not after.shares_copy(pid, vpn):
        reached.add("kernel_cow_break")
    return reached


def _files(record: StepRecord, before: Observed, after: Observed) -> set[str]:
    """``mmap``, ``munmap``, ``file_copy`` and ``file_writeback`` (see the module
    docstring)."""
    reached = set()
    result = record.result
    if result is not None:
        pid = int(record.choice[1])
        if result.syscall == SYS_MMAP and _gained_pages(pid, before, after):
            reached.add("mmap")
        if result.syscall == SYS_MUNMAP and _gained_pages(pid, after, before):
            reached.add("munmap")
        if (_file_pages(before, pid) - _file_pages(after, pid)) & _own_pages(after, pid):
            reached.add("file_copy")
    blocks = {block for file in after.machine.files for block in file.blocks}
    started = set(after.requests) - set(before.requests)
    if any(request.op == "write" and request.block in blocks for request in started):
        reached.add("file_writeback")
    return reached


def _file_pages(s: Observed, pid: int) -> set[int]:
    """The vpns of ``pid``'s private mappings that still show their file's page."""
    process = s.view.process(pid)
    pages = process.pages if process is not None else ()
    return {p.vpn for p in pages if p.copy_on_write}


def _own_pages(s: Observed, pid: int) -> set[int]:
    """The vpns of ``pid``'s private pages (no shared object's)."""
    process = s.view.process(pid)
    pages = process.pages if process is not None else ()
    return {p.vpn for p in pages if p.shared_key is None}


def _gained_pages(pid: int, before: Observed, after: Observed) -> bool:
    """Whether ``pid`` has valid pages after the step that it did not have before."""
    old, new = before.view.process(pid), after.view.process(pid)
    if old is None or new is None:
        return False
    return bool({p.vpn for p in new.pages} - {p.vpn for p in old.pages})


def _shared(s: Observed, pid: int, vpn: int) -> bool:
    """Whether ``pid``'s page ``vpn`` is a page of a shared object another live process maps."""
    proc = s.view.process(pid)
    page = None if proc is None else next((p for p in proc.pages if p.vpn == vpn), None)
    if page is None or page.shared_key is None:
        return False
    return any(
        other.pid != pid
        and any(p.shared_key == page.shared_key and p.index == page.index for p in other.pages)
        for other in s.live_processes
    )


def _evictions(before: Observed, after: Observed) -> set[str]:
    reached: set[str] = set()
    new_writes = len([r for r in after.requests if r.op == "write"]) - len(
        [r for r in before.requests if r.op == "write"]
    )
    if new_writes > 0:
        reached.add("evict:dirty")
    for pfn, users in before.mappers.items():
        still = {u for u in users if u[0] in after.live}
        if not still or after.mappers.get(pfn, set()) & still:
            continue
        if new_writes <= 0:
            reached.add("evict:clean")
        if len(still) > 1:
            reached.add("shared_evicted")
    return reached


def _shared_keys(s: Observed) -> set[str]:
    return {
        page.shared_key
        for proc in s.live_processes
        for page in proc.pages
        if page.shared_key is not None
    }


class Coverage:
    """Counts of situations reached over a run (or several)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, situations: Iterable[str]) -> None:
        """Count each situation once more."""
        self.counts.update(situations)

    def merge(self, other: Coverage) -> None:
        """Add another run's counts."""
        self.counts.update(other.counts)

    def unreached(self, required: Iterable[str]) -> list[str]:
        """Required situations this run never reached."""
        return [name for name in required if not self.counts[name]]

    def table(self, shown: Iterable[str] = SITUATIONS) -> list[tuple[str, int]]:
        """(situation, count) for every situation shown, in catalog order."""
        return [(name, self.counts[name]) for name in shown]


def _copy_on_write(
    config: HardwareConfig, record: StepRecord, before: Observed, after: Observed
) -> set[str]:
    """``cow_break`` or ``cow_takeover``, for a write protection fault on a writable private
    page (see the module docstring)."""
    result = record.result
    fault = result.fault if result is not None else None
    if fault is None or fault.kind is not TrapKind.PROTECTION_FAULT:
        return set()
    pid, vpn = int(record.choice[1]), fault.va // config.page_words
    if pid not in after.live or not before.writable(pid, vpn) or before.shared_key(pid, vpn):
        return set()
    if not before.shares_copy(pid, vpn):
        return {"cow_takeover"}
    return set() if after.shares_copy(pid, vpn) else {"cow_break"}
