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
  written back, or keeps its contents in its frame.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from pagingcheck.checks.abstraction import abstract
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.observe import Observed, Violation, difference
from pagingcheck.checks.system import Choice, StepRecord, System
from pagingcheck.model import bits
from pagingcheck.model.errors import UserError
from pagingcheck.model.isa import ArchState
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import SpecState

T = TypeVar("T")

#: How long one step of the system (its kernel hooks) may run before it counts as hung.
HOOK_SECONDS = 10.0


class KernelHang(Exception):
    """A kernel hook did not return in time."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise KernelHang in the block after ``seconds`` (where the platform has timers and
    this is the main thread; elsewhere the block runs unlimited)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise KernelHang(f"a kernel hook ran for more than {seconds:g} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interface_call(what: str, call: Callable[[], T]) -> T:
    """Run ``call`` (a query of the kernel under check); a kernel that breaks there does
    not implement the interface, which is the user's error to fix, not a property."""
    try:
        return call()
    except UserError:
        raise
    except Exception as error:  # the kernel under check may break in any way
        raise UserError(
            f"the kernel's {what} raised {type(error).__name__}: {error}; "
            "see docs/validate.md for what the interface requires"
        ) from error


#: Properties of a step, checked alongside the state invariants.
STEP_PROPERTIES: dict[str, str] = {
    "kernel_crash": "A kernel hook returns normally: it never raises.",
    "kernel_hang": f"A kernel hook returns within {HOOK_SECONDS} seconds.",
    "refinement": "Every step retires an instruction the spec retires too, with the same "
    "effects, or spawns or ends a process as the spec does, or leaves the abstract state alone.",
    "restart_exact": "When a faulting process runs again, its registers and PC equal those at "
    "the start of the faulting instruction, and that instruction retires exactly once, with "
    "the effects of a fault-free run.",
    "no_dirty_dropped": "A modified page that loses its present mapping is written back (a "
    "write of its frame is in flight) or keeps its contents in its frame.",
}


@dataclass
class Checker:
    """Drives a :class:`System` one choice at a time and checks every property after each."""

    system: System
    spec_state: SpecState = field(init=False)
    fault_starts: dict[int, ArchState] = field(default_factory=dict)
    observed: Observed = field(init=False)
    last_difference: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.observed = self._observe()
        self.spec_state = abstract(self.system.machine, self.observed.view, self.fault_starts)

    def _observe(self) -> Observed:
        # A copy, so the facts about this state stay true after the next step.
        machine = self.system.machine
        view = interface_call("view()", lambda: self.system.kernel.view(machine))
        return Observed(machine.copy(), view)

    def choices(self) -> list[Choice]:
        """The choices enabled now (the live pids come from the view already taken)."""
        return interface_call("runnable()", lambda: self.system.choices(self.observed.live))

    def check_state(self) -> Violation | None:
        """Every state invariant on the current state."""
        for invariant in INVARIANTS.values():
            violation = invariant.check(self.observed)
            if violation is not None:
                return violation
        return None

    def step(self, choice: Choice) -> tuple[StepRecord, Violation | None]:
        """Apply ``choice``; return what happened and the first property it violated."""
        before = self.observed
        resumed = self._resuming(choice)
        entry_violations: list[Violation] = []

        def at_user_entry() -> None:
            machine = self.system.machine
            state = Observed(machine, self.system.kernel.view(machine))
            found = INVARIANTS["tlb_agrees"].check(state)
            if found is not None:
                entry_violations.append(found)

        try:
            with time_limit(HOOK_SECONDS):
                record = self.system.apply(choice, self.observed.live, at_user_entry)
        except UserError:
            raise
        except KernelHang as error:
            return StepRecord(choice), Violation("kernel_hang", str(error))
        except Exception as error:  # a kernel under check may break in any way
            return StepRecord(choice), Violation(
                "kernel_crash", f"the kernel raised {type(error).__name__}: {error}"
            )
        after = self._observe()
        self.observed = after
        violation = (
            (entry_violations[0] if entry_violations else None)
            or self._restart_exact(record, resumed)
            or self._no_dirty_dropped(before, after)
            or self.check_state()
        )
        self._track_faults(record, after)
        expected, why = self._spec_step(record, before)
        actual = abstract(self.system.machine, after.view, self.fault_starts)
        if violation is None and expected is not None and actual != expected:
            violation = Violation("refinement", why + "; " + describe_difference(expected, actual))
        elif violation is None and expected is None:
            violation = Violation("refinement", why)
        self.spec_state = actual if expected is None else expected
        if violation is not None:
            self.last_difference = difference(before, after)
        return record, violation

    # -- the spec's side of a step ------------------------------------------------

    def _spec_step(self, record: StepRecord, before: Observed) -> tuple[SpecState | None, str]:
        kind = record.choice[0]
        config = self.system.machine.config
        state = self.spec_state
        if kind == "spawn":
            pid = record.spawned
            if not isinstance(pid, int):
                return state, ""
            program = self.system.programs[int(record.choice[1])]
            return spec.spawn(state, pid, program, config.page_words, config.va_pages), ""
        if kind == "kill":
            return spec.exit_process(state, int(record.choice[1])), ""
        if kind != "run" or record.result is None:
            return state, f"a {kind} step changed the abstract state"
        pid = int(record.choice[1])
        result = record.result
        after_state, outcome = spec.retire(state, pid, config.page_words)
        if result.retired:
            if not isinstance(outcome, spec.Retired):
                return None, f"process {pid} retired an instruction the spec signals ({outcome})"
            if outcome.write != result.write:
                return None, (
                    f"process {pid} wrote {result.write}, the spec writes {outcome.write}"
                )
            return after_state, f"process {pid} retired an instruction"
        if pid not in self._live_after():
            if isinstance(outcome, spec.Signalled):
                return after_state, f"process {pid} was signalled"
            return None, f"process {pid} was killed, but the spec retires its instruction"
        return state, f"process {pid} trapped without retiring"

    def _live_after(self) -> set[int]:
        return set(self.observed.live)

    # -- restart exactness ----------------------------------------------------------

    def _resuming(self, choice: Choice) -> int | None:
        if choice[0] == "run" and int(choice[1]) in self.fault_starts:
            return int(choice[1])
        return None

    def _restart_exact(self, record: StepRecord, resumed: int | None) -> Violation | None:
        if resumed is None or record.result is None:
            return None
        expected = self.fault_starts[resumed]
        started = self.system.machine.cpu.ghost_start
        if started != expected:
            return Violation(
                "restart_exact",
                f"process {resumed} resumed in a state other than the start of its faulting "
                "instruction",
                (("expected", expected), ("resumed", started)),
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
        elif result.fault is not None and pid not in self.fault_starts:
            start = self.system.machine.cpu.ghost_start
            if start is not None:
                self.fault_starts[pid] = start

    # -- dirty pages ------------------------------------------------------------------

    def _no_dirty_dropped(self, before: Observed, after: Observed) -> Violation | None:
        writes = {pfn for pfn, ops in after.transfers.items() if "write" in ops}
        homes = {(p.pid, page.vpn): page.home for p in after.view.processes for page in p.pages}
        for pid, entries in before.tables.items():
            if pid not in after.live:
                continue
            for entry in entries:
                if not (bits.is_present(entry.pte) and bits.is_modified(entry.pte)):
                    continue
                if (pid, entry.vpn) in after.present:
                    continue
                frame = bits.pfn(entry.pte)
                home = homes.get((pid, entry.vpn))
                kept = home is not None and home.where == "frame" and home.index == frame
                if frame not in writes and not kept:
                    return Violation(
                        "no_dirty_dropped",
                        "a modified page lost its mapping without a write-back",
                        (("pid", pid), ("vpn", entry.vpn), ("pfn", frame)),
                    )
        return None


def describe_difference(expected: SpecState, actual: SpecState) -> str:
    """The first place where two spec states differ, in words."""
    exp = {p.pid: p for p in expected.processes}
    act = {p.pid: p for p in actual.processes}
    if set(exp) != set(act):
        return f"live processes: spec {sorted(exp)}, system {sorted(act)}"
    for pid in sorted(exp):
        if exp[pid].regs != act[pid].regs:
            return f"process {pid} registers: spec {exp[pid].regs}, system {act[pid].regs}"
        if exp[pid].space != act[pid].space:
            return f"process {pid} address space differs"
    for pid in sorted(exp):
        for vpn, _ in exp[pid].space:
            want, got = expected.page_of(pid, vpn), actual.page_of(pid, vpn)
            if want != got:
                return f"process {pid} page {vpn}: spec {want}, system {got}"
    return "abstract states differ"
