"""Refinement and step properties: one small generic checker with named parts.

The parts: the abstraction function (:mod:`pagingcheck.checks.abstraction`),
the state invariants (:mod:`pagingcheck.checks.invariants`) and the spec
step (:mod:`pagingcheck.spec.machine`). After every system step the checker
asks: did the step retire an instruction the spec also retires, with the
same effects, or spawn/exit as the spec does, or leave the abstract state
alone? It also checks the properties of a step that no single state shows:

* **restart exact**: when a faulting process runs again, its registers and PC
  equal those at the start of the faulting instruction; that instruction
  retires once, with the effects of a fault-free run (the spec's);
* **no dirty page dropped**: a modified page that loses its mapping is
  written back, or keeps its contents in its frame;
* **dispatch correct**: a dispatched process runs in user mode in its own
  declared address space;
* **progress**, while a fair continuation is watched (:mod:`.progress`);
* the kernel's own failures: ``kernel_crash``, ``kernel_hang``, ``port_rules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pagingcheck.checks.abstraction import abstract
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.observe import Observed, Violation, difference, printed
from pagingcheck.checks.progress import STATEMENT as PROGRESS_STATEMENT
from pagingcheck.checks.progress import Watchdog
from pagingcheck.checks.system import HOOK_SECONDS, Choice, KernelFailed, StepRecord, System
from pagingcheck.model import bits
from pagingcheck.model.cpu import StepResult
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import (
    EXEC_FAILED,
    MMAP_FAILED,
    SYS_EXEC,
    SYS_READ,
    SYS_WRITE,
    ArchState,
    buffer_page,
)
from pagingcheck.model.program import Program
from pagingcheck.model.traps import Fault, TrapKind
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import Page, SpecState

#: Properties of a step, checked alongside the state invariants.
STEP_PROPERTIES: dict[str, str] = {
    "kernel_crash": "A call into the kernel returns normally: it never raises, and its "
    "process never dies of a signal.",
    "kernel_hang": "A call into the kernel returns within the configured time "
    f"(limits.call_seconds, {HOOK_SECONDS:g} seconds by default).",
    "kernel_exit": "A kernel never exits.",
    "kernel_oom": "A kernel never needs more memory than the configured limit (limits.memory_mb).",
    "kernel_output": "A kernel writes nothing to standard output or error.",
    "kernel_thread": "A kernel starts no thread.",
    "interface_error": "A kernel answers every call with what the interface allows "
    "(events, a pid or refusal, pids, a well-formed view).",
    "port_rules": "The kernel uses the hardware port within its rules (addresses, frames, "
    "blocks and asids in range, operations the hardware has, the port open).",
    "dispatch_correct": "A dispatched process runs in user mode in its own declared address "
    "space: the MMU holds its table root and asid.",
    "refinement": "Every step retires an instruction the spec retires too, with the same "
    "effects, or spawns or ends a process as the spec does, or leaves the abstract state alone.",
    "restart_exact": "When a faulting process runs again, its registers and PC equal those at "
    "the start of the faulting instruction, and that instruction retires exactly once, with "
    "the effects of a fault-free run.",
    "no_dirty_dropped": "A modified page that loses its present mapping, and stays valid, is "
    "written back (a write of its frame is in flight) or keeps its contents in its frame.",
    "progress": PROGRESS_STATEMENT,
}

#: The properties about a kernel's conduct as a program rather than as a pager: shown
#: by hostile kernels (tests/checks/test_containment.py), not by seeded paging bugs.
CONDUCT_PROPERTIES: frozenset[str] = frozenset(
    {
        "kernel_crash",
        "kernel_hang",
        "kernel_exit",
        "kernel_oom",
        "kernel_output",
        "kernel_thread",
        "interface_error",
    }
)


@dataclass
class Checker:
    """Drives a :class:`System` one choice at a time and checks every property after each."""

    system: System
    spec_state: SpecState = field(init=False)
    fault_starts: dict[int, ArchState] = field(default_factory=dict)
    observed: Observed = field(init=False)
    last_difference: list[str] = field(default_factory=list)
    watchdog: Watchdog | None = None
    _before_step: Observed = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.observed = self._before_step = self._observe()
        self.spec_state = abstract(self.observed, self.fault_starts)

    def copy(self) -> Checker:
        """An independent checker in the same state (the observation and the spec state are
        values no step changes, so they are shared)."""
        clone = Checker.__new__(Checker)
        clone.system = self.system.copy()
        clone.spec_state = self.spec_state
        clone.fault_starts = dict(self.fault_starts)
        clone.observed = clone._before_step = self.observed
        clone.last_difference = []
        clone.watchdog = None
        return clone

    def fingerprint(self) -> bytes:
        """A digest of what the future of this run depends on: the system, the start of
        each outstanding fault (which restart exactness will compare against), and the
        spec's family (what WAIT must return, which no hardware shows)."""
        return fingerprint(
            self.system.fingerprint(), sorted(self.fault_starts.items()), self.spec_state.family
        )

    def _observe(self) -> Observed:
        # A copy, so the facts about this state stay true after the next step.
        machine = self.system.machine
        view = self.system.view()
        return Observed(machine.copy(), view)

    def choices(self) -> list[Choice]:
        """The choices enabled now (the live pids come from the view already taken)."""
        return self.system.choices(self.observed.live)

    def check_state(self) -> Violation | None:
        """Every state invariant on the current state."""
        for invariant in INVARIANTS.values():
            violation = invariant.check(self.observed)
            if violation is not None:
                return violation
        return None

    def watch_progress(self, bound: int) -> None:
        """From now on the choices are fair: check progress with ``bound`` (see .progress)."""
        self.watchdog = Watchdog(bound)
        self.watchdog.start(self.observed.live)

    def step(
        self, choice: Choice, enabled: Sequence[Choice] | None = None
    ) -> tuple[StepRecord, Violation | None]:
        """Apply ``choice``; return what happened and the first property it violated.
        ``enabled``, this state's choices if the caller has them, saves asking again."""
        before = self._before_step = self.observed
        resumed = self._resuming(choice)
        entry_violations: list[Violation] = []

        def at_user_entry(pid: int) -> None:
            found = self._entry_check(pid)
            if found is not None:
                entry_violations.append(found)

        try:
            record = self.system.apply(choice, self.observed.live, at_user_entry, enabled)
            after = self._observe()
        except KernelFailed as failure:
            return StepRecord(choice), failure.violation()
        self.observed = after
        violation = (
            (entry_violations[0] if entry_violations else None)
            or self._restart_exact(record, resumed)
            or self._no_dirty_dropped(before, after, _executing(record))
            or self.check_state()
        )
        self._track_faults(record, after)
        actual = abstract(after, self.fault_starts)
        expected, why = self._spec_step(record, actual)
        result = record.result
        if result is not None and result.retired and result.syscall is not None:
            # A system call the kernel may run again (see restarted), a private page it may
            # have copied meanwhile (as at a fault: _copies).
            copied = self._copies(self.spec_state, int(record.choice[1]), actual)
            if restarted(record, copied, actual):
                # The kernel runs the call again later (after a kernel-mode fault, or when a
                # WAIT blocks): nothing happened yet, and the instruction has not retired.
                record = replace(record, result=replace(result, retired=False))
                expected, why = copied, ""
        if violation is None and expected is not None and actual != expected:
            violation = Violation("refinement", why + "; " + describe_difference(expected, actual))
        elif violation is None and expected is None:
            violation = Violation("refinement", why)
        self.spec_state = actual if expected is None else expected
        if violation is None and self.watchdog is not None:
            violation = self.watchdog.observe(record, after.live, self._waiting(after.live))
        if violation is not None:
            self.last_difference = difference(before, after)
        return record, violation

    def _entry_check(self, pid: int) -> Violation | None:
        """At user entry: the MMU holds ``pid``'s declared space, and the TLB agrees."""
        machine = self.system.machine
        state = Observed(machine, self.system.view())
        asid = state.asid_of.get(pid)
        root = None if asid is None else state.spaces.get(asid)
        mmu = machine.mmu
        if asid is None or root is None or (mmu.ptbr, mmu.asid) != (root, asid):
            return Violation(
                "dispatch_correct",
                f"process {pid} runs with the MMU loaded for another address space",
                (("mmu", (mmu.ptbr, mmu.asid)), ("declared", (root, asid))),
            )
        return INVARIANTS["tlb_agrees"].check(state)

    # -- the spec's side of a step ------------------------------------------------

    def _spec_step(self, record: StepRecord, actual: SpecState) -> tuple[SpecState | None, str]:
        kind = record.choice[0]
        config = self.system.machine.config
        geometry = spec.Geometry(config.page_words, config.va_pages)
        state = self.spec_state
        if kind == "spawn":
            pid = record.spawned
            if not isinstance(pid, int):
                return state, ""
            spawned = self.system.programs[int(record.choice[1])]
            return spec.spawn(state, pid, spawned, config.page_words, config.va_pages), ""
        if kind == "kill":
            return spec.exit_process(state, int(record.choice[1])), ""
        if kind != "run" or record.result is None:
            return state, f"a {kind} step changed the abstract state"
        pid = int(record.choice[1])
        result = record.result
        program = self.system.program_of(pid)
        if len(record.forked) > 1:
            return None, f"process {pid}'s fork made {len(record.forked)} processes"
        child = record.forked[0] if record.forked else None
        returned = actual.process(pid)
        r0 = returned.regs.regs[0] if returned is not None else None
        after_state, outcome = spec.retire(
            state,
            pid,
            geometry,
            program,
            child,
            programs=self.system.programs,
            exec_failed=r0 == EXEC_FAILED,
            reaped=r0,
            files=tuple(file.name for file in self.system.machine.files),
            map_failed=r0 == MMAP_FAILED,
        )
        if result.retired:
            if pid not in self.observed.live and self._call_out_of_swap(state, pid, result):
                return spec.exit_process(state, pid), f"process {pid} ran out of swap in a call"
            if isinstance(outcome, spec.Blocked):
                return state, f"process {pid} waits for a child"
            if not isinstance(outcome, spec.Retired):
                return None, f"process {pid} retired an instruction the spec signals ({outcome})"
            if outcome.writes != result.writes:
                return None, (
                    f"process {pid} wrote {_spelled(result.writes)}, "
                    f"the spec writes {_spelled(outcome.writes)}"
                )
            if outcome.syscall == SYS_EXEC:
                self._executed(state, pid, r0)
            return after_state, f"process {pid} retired an instruction"
        intended = () if isinstance(outcome, spec.Blocked) else outcome.writes
        if result.writes != intended[: len(result.writes)]:
            return None, (
                f"process {pid} wrote {_spelled(result.writes)} before its fault, "
                f"the spec writes {_spelled(intended)}"
            )
        # A PUSHM's writes before the fault stay in memory while it waits to run again.
        state = spec.written(state, pid, result.writes, config.page_words)
        grows = self._growth(state, pid, result.fault, program, geometry)
        if pid not in self.observed.live:
            if isinstance(outcome, spec.Signalled):
                return spec.exit_process(state, pid), f"process {pid} was signalled"
            if self._out_of_swap(pid, result.fault, grows):
                return spec.exit_process(state, pid), f"process {pid} ran out of swap"
            return None, f"process {pid} was killed, but the spec retires its instruction"
        state = self._copies(state, pid, actual)
        grown = spec.grow(state, pid, grows, config.page_words) if grows else None
        if grown is not None and self._grew(pid):
            return grown, f"process {pid}'s stack grew"
        return state, f"process {pid} trapped without retiring"

    def _copies(self, state: SpecState, pid: int, actual: SpecState) -> SpecState:
        """``state`` with the copy-on-write pages of ``pid`` that ``actual`` shows as its own
        copied (:func:`spec.copy_page`): when ``pid`` traps, its kernel may copy a private
        mapping's file page before the write that needs the copy retires, and from then on
        the copy is the process's own page."""
        mine, theirs = state.process(pid), actual.process(pid)
        if mine is None or theirs is None:
            return state
        for vpn, mapping in mine.space:
            shown = theirs.mapping(vpn) if mapping.copy_on_write else None
            if shown is not None and shown.key == ("private", pid, vpn):
                state = spec.copy_page(state, pid, vpn)
        return state

    def _executed(self, state: SpecState, pid: int, r0: int | None) -> None:
        """After ``pid``'s EXEC (``r0`` as the system returned it): the program it runs now,
        as the driver knows it, is the one it asked for, unless the call failed."""
        process = state.process(pid)
        index = process.regs.regs[1] if process is not None else len(self.system.programs)
        if r0 != EXEC_FAILED and index < len(self.system.programs):
            self.system.owners[pid] = index

    def _waiting(self, live: Sequence[int]) -> frozenset[int]:
        """The live processes blocked in a WAIT while all their children live: they owe no
        progress until a child exits."""
        config = self.system.machine.config
        geometry = spec.Geometry(config.page_words, config.va_pages)
        return frozenset(pid for pid in live if spec.waits(self.spec_state, pid, geometry))

    def _growth(
        self,
        state: SpecState,
        pid: int,
        fault: Fault | None,
        program: Program | None,
        geometry: spec.Geometry,
    ) -> range:
        """The pages the spec's stack rule grows ``pid``'s stack by for a fault on a missing
        page (a page fault, or a miss in a software-refilled TLB)."""
        if fault is None or fault.kind is TrapKind.PROTECTION_FAULT:
            return range(0)
        return spec.growth(state, pid, fault.va, program, geometry)

    def _out_of_swap(self, pid: int, fault: Fault | None, grows: range) -> bool:
        """Whether killing ``pid`` at ``fault`` was a fair out-of-memory kill: the fault needed
        new swap slots (a stack growing by ``grows``, or the first touch of a writable private
        page that holds no slot yet) and the view, before the step, listed fewer free. The
        slot invariants check that view against the page tables."""
        before = self._before_step
        needed = len(grows)
        if not needed and fault is not None:
            vpn = fault.va // self.system.machine.config.page_words
            if fault.kind is TrapKind.PROTECTION_FAULT:
                needed = int(before.shares_copy(pid, vpn))
            else:
                needed = int(before.unbacked(pid, vpn))
        return needed > len(before.view.free_slots)

    def _call_out_of_swap(self, state: SpecState, pid: int, result: StepResult) -> bool:
        """Whether killing ``pid`` in a READ or WRITE was a fair out-of-memory kill: the
        kernel's own access to the buffer's page needed a new swap slot (the first touch of
        a page that holds none, or, for READ, a copy of a page shared copy-on-write) and the
        view, before the step, listed none free."""
        process = state.process(pid)
        if result.syscall not in (SYS_READ, SYS_WRITE) or process is None:
            return False
        va, count = process.regs.regs[1], process.regs.regs[2]
        vpn = buffer_page(va, count, self.system.machine.config.page_words)
        if vpn is None:
            return False
        before = self._before_step
        copies = result.syscall == SYS_READ and before.shares_copy(pid, vpn)
        return (before.unbacked(pid, vpn) or copies) and not before.view.free_slots

    def _grew(self, pid: int) -> bool:
        """Whether the step just taken gave ``pid`` valid pages it did not have."""
        before = self._before_step.view.process(pid)
        after = self.observed.view.process(pid)
        if before is None or after is None:
            return False
        return bool({p.vpn for p in after.pages} - {p.vpn for p in before.pages})

    # -- restart exactness ----------------------------------------------------------

    def _resuming(self, choice: Choice) -> int | None:
        if choice[0] == "run" and int(choice[1]) in self.fault_starts:
            return int(choice[1])
        return None

    def _restart_exact(self, record: StepRecord, resumed: int | None) -> Violation | None:
        if resumed is None or record.result is None:
            return None
        expected = self.fault_starts[resumed]
        if record.start != expected:
            return Violation(
                "restart_exact",
                f"process {resumed} resumed in a state other than the start of its faulting "
                "instruction",
                (("expected", expected), ("resumed", record.start)),
            )
        return None

    def _track_faults(self, record: StepRecord, after: Observed) -> None:
        if record.choice[0] != "run" or record.result is None:
            for pid in list(self.fault_starts):
                if pid not in after.live:
                    del self.fault_starts[pid]
            return
        pid = int(record.choice[1])
        result = record.result
        if result.retired or pid not in after.live:
            self.fault_starts.pop(pid, None)
        elif result.fault is not None and pid not in self.fault_starts and record.start:
            self.fault_starts[pid] = record.start

    # -- dirty pages ------------------------------------------------------------------

    def _no_dirty_dropped(
        self, before: Observed, after: Observed, executing: int | None
    ) -> Violation | None:
        """The ``no_dirty_dropped`` property over one step; not for the pages of a process
        that exited, or that ran an EXEC (``executing``): its old pages are gone, and the
        new pages at the same vpns are judged by refinement."""
        writes = {pfn for pfn, ops in after.transfers.items() if "write" in ops}
        for (asid, vpn), frame in sorted(before.present.items()):
            pid = before.pid_of.get(asid)
            if pid is None or pid not in after.live or pid == executing:
                continue
            pte = before.pte(pid, vpn)
            if pte is None or not bits.is_modified(pte):
                continue
            if after.resident(pid, vpn) is not None:
                continue
            home = after.homes.get((pid, vpn))
            if home is None:
                continue  # the page is gone (the heap shrank): refinement judges that
            # In a frame, the contents are kept: this one, or a copy-on-write copy (whose
            # words refinement checks).
            kept = home.where == "frame"
            if frame not in writes and not kept:
                return Violation(
                    "no_dirty_dropped",
                    "a modified page lost its mapping without a write-back",
                    (("pid", pid), ("vpn", vpn), ("pfn", frame)),
                )
        return None


def _executing(record: StepRecord) -> int | None:
    """The process whose EXEC ``record`` ran, if it ran one."""
    result = record.result
    if record.choice[0] == "run" and result is not None and result.syscall == SYS_EXEC:
        return int(record.choice[1])
    return None


def restarted(record: StepRecord, before: SpecState, after: SpecState) -> bool:
    """Whether ``record`` is a system call the kernel will run again: the CPU trapped on a
    SYS, and the abstract state after the step is the one before it (the process's
    registers, the PC at the SYS included, memory and the console all unchanged). Such a
    step retires nothing, so a kernel that restarts a call for ever makes no progress."""
    result = record.result
    return (
        record.choice[0] == "run"
        and result is not None
        and result.retired
        and result.syscall is not None
        and after == before
    )


def describe_difference(expected: SpecState, actual: SpecState) -> str:
    """The first place where two spec states differ, in words."""
    exp = {p.pid: p for p in expected.processes}
    act = {p.pid: p for p in actual.processes}
    if set(exp) != set(act):
        return f"live processes: spec {sorted(exp)}, system {sorted(act)}"
    for pid in sorted(exp):
        if exp[pid].regs != act[pid].regs:
            return f"process {pid} {_registers_difference(exp[pid].regs, act[pid].regs)}"
        if exp[pid].space != act[pid].space:
            return f"process {pid} address space differs"
    for pid in sorted(exp):
        for vpn, _ in exp[pid].space:
            want, got = expected.page_of(pid, vpn), actual.page_of(pid, vpn)
            if want != got:
                return f"process {pid} {_page_difference(vpn, want, got)}"
    for key, pages in expected.objects:
        if key[0] == "file" and actual.object(key) != pages:
            return f"file {key[1]!r} {_file_difference(pages, actual.object(key))}"
    if expected.console != actual.console:
        return f"console: spec {printed(expected.console)}, system {printed(actual.console)}"
    if expected.console_input != actual.console_input:
        return (
            f"console input left to read: spec {printed(expected.console_input)}, "
            f"system {printed(actual.console_input)}"
        )
    return "abstract states differ"


def _spelled(writes: Sequence[tuple[int, int]]) -> str:
    """Memory writes as words: ``7 at 12, 9 at 11``, or ``nothing``."""
    return ", ".join(f"{value} at {va}" for va, value in writes) or "nothing"


def _file_difference(want: tuple[Page, ...], got: tuple[Page, ...] | None) -> str:
    """The first word of a file two states disagree on: its page, its word, both values."""
    if got is None or len(got) != len(want):
        return "is missing or has another size"
    for index, (a, b) in enumerate(zip(want, got, strict=True)):
        for word, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return f"page {index} word {word}: spec {x:#010x}, system {y:#010x}"
    return "differs"


def _registers_difference(want: ArchState, got: ArchState) -> str:
    """The first register (or pc, or flags) two register states disagree on, in hex."""
    pairs = [
        *((f"r{i}", a, b) for i, (a, b) in enumerate(zip(want.regs, got.regs, strict=True))),
        ("pc", want.pc, got.pc),
        ("flags", want.flags, got.flags),
    ]
    name, a, b = next(pair for pair in pairs if pair[1] != pair[2])
    return f"register {name}: spec {a:#010x}, system {b:#010x}"


def _page_difference(vpn: int, want: object, got: object) -> str:
    """The first word two copies of page ``vpn`` disagree on: its index and virtual
    address, and both values in hex (the whole pages when one is missing)."""
    if not isinstance(want, tuple) or not isinstance(got, tuple) or len(want) != len(got):
        return f"page {vpn}: spec {want}, system {got}"
    index = next(i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
    address = vpn * len(want) + index
    return (
        f"page {vpn} word {index} (virtual address {address}): "
        f"spec {want[index]:#010x}, system {got[index]:#010x}"
    )
