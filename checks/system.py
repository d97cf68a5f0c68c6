"""The system under check: hardware plus a kernel plus a workload, driven by explicit choices.

Everything nondeterministic is a **choice** the driver makes:

* ``("run", pid)``: put runnable ``pid`` on the CPU (a context switch if
  needed) and run one instruction; a trap goes to the kernel at once;
* ``("disk", i)``: the disk completes its ``i``-th pending request (DMA now),
  and the kernel takes the completion interrupt;
* ``("timer",)``: the timer fires;
* ``("spawn", k)``: create a process running workload program ``k``;
* ``("kill", pid)``: terminate ``pid`` from outside.

Given the choices, a step is deterministic, so a trace is the initial
configuration plus the list of choices, and it replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pagingcheck.impl.interface import Kernel, KernelEvent, SpawnRefused
from pagingcheck.model.cpu import StepResult
from pagingcheck.model.errors import UserError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Program

Choice = tuple[str, ...] | tuple[str, int]


@dataclass(frozen=True)
class StepRecord:
    """What one choice did: the CPU's step (if it ran one) and the kernel's events."""

    choice: Choice
    result: StepResult | None = None
    events: tuple[KernelEvent, ...] = ()
    spawned: int | SpawnRefused | None = None


@dataclass
class System:
    """Machine + kernel + workload programs. Copyable and fingerprintable as a whole."""

    machine: Machine
    kernel: Kernel
    programs: tuple[Program, ...]
    max_spawns: int = 0
    spawns: int = 0
    timer_enabled: bool = True
    kills_enabled: bool = False
    history: list[Choice] = field(default_factory=list)

    # -- the choices ----------------------------------------------------------

    def choices(self, live: Sequence[int] | None = None) -> list[Choice]:
        """Every choice enabled in this state, in a fixed order.

        ``live`` (the pids of live processes) saves asking the kernel for its
        view when the caller already has it.
        """
        enabled: list[Choice] = [("run", pid) for pid in self.kernel.runnable()]
        enabled += [("disk", index) for index in self.machine.disk.completable()]
        if self.timer_enabled and enabled:
            enabled.append(("timer",))
        if self.spawns < self.max_spawns:
            enabled += [("spawn", index) for index in range(len(self.programs))]
        if self.kills_enabled:
            enabled += [("kill", pid) for pid in (self.live_pids() if live is None else live)]
        return enabled

    def live_pids(self) -> list[int]:
        """Pids of processes that have not exited."""
        view = self.kernel.view(self.machine)
        return [p.pid for p in view.processes if p.state != "exited"]

    def apply(
        self,
        choice: Choice,
        live: Sequence[int] | None = None,
        at_user_entry: Callable[[], None] | None = None,
    ) -> StepRecord:
        """Carry out one enabled choice; raise UserError if it is not enabled.

        ``at_user_entry`` is called on a run choice after the kernel has
        dispatched the process and before its instruction runs: the moment the
        CPU enters user mode, which checks of the TLB need to see.
        """
        if choice not in self.choices(live):
            raise UserError(f"choice {list(choice)} is not enabled in this state")
        self.history.append(choice)
        kind = choice[0]
        if kind == "run":
            return self._run(int(choice[1]), choice, at_user_entry)
        if kind == "disk":
            request = self.machine.disk.complete(int(choice[1]), self.machine.memory)
            return StepRecord(choice, events=self.kernel.on_disk(self.machine, request))
        if kind == "timer":
            return StepRecord(choice, events=self.kernel.on_timer(self.machine))
        if kind == "spawn":
            self.spawns += 1
            pid = self.kernel.spawn(self.machine, self.programs[int(choice[1])])
            return StepRecord(choice, spawned=pid)
        if kind == "kill":
            return StepRecord(choice, events=self.kernel.kill(self.machine, int(choice[1])))
        raise UserError(f"unknown choice kind {kind!r}")

    def _run(
        self, pid: int, choice: Choice, at_user_entry: Callable[[], None] | None
    ) -> StepRecord:
        events = self.kernel.dispatch(self.machine, pid)
        if at_user_entry is not None:
            at_user_entry()
        result = self.machine.step()
        if result.trap is not None:
            events += self.kernel.on_trap(self.machine, result)
        return StepRecord(choice, result=result, events=events)

    # -- values -------------------------------------------------------------------

    def copy(self) -> System:
        """An independent copy (history included)."""
        return System(
            machine=self.machine.copy(),
            kernel=self.kernel.copy(),
            programs=self.programs,
            max_spawns=self.max_spawns,
            spawns=self.spawns,
            timer_enabled=self.timer_enabled,
            kills_enabled=self.kills_enabled,
            history=list(self.history),
        )

    def fingerprint(self) -> bytes:
        """A stable digest of the state (not of the history that reached it)."""
        return fingerprint(self.machine.fingerprint(), self.kernel.fingerprint(), self.spawns)


def boot_system(
    machine: Machine,
    kernel: Kernel,
    programs: Sequence[Program],
    *,
    initial: Sequence[int] = (),
    max_spawns: int = 0,
    timer: bool = True,
    kills: bool = False,
) -> System:
    """Boot ``kernel`` on ``machine`` and spawn the programs indexed by ``initial``."""
    kernel.boot(machine)
    system = System(
        machine,
        kernel,
        tuple(programs),
        max_spawns=max_spawns,
        timer_enabled=timer,
        kills_enabled=kills,
    )
    for index in initial:
        outcome = kernel.spawn(machine, system.programs[index])
        if isinstance(outcome, SpawnRefused):
            raise UserError(
                f"initial process {system.programs[index].name!r} could not be created: "
                f"{outcome.reason}"
            )
    return system


def run_round_robin(system: System, max_steps: int = 100_000) -> int:
    """Drive ``system`` until no choice but the timer is left: run the lowest runnable pid,
    else complete the oldest disk request. Returns the number of steps taken.

    A simple deterministic driver for workload tests; checks explore all choices.
    """
    steps = 0
    turn = 0
    while steps < max_steps:
        runnable = system.kernel.runnable()
        disk = system.machine.disk.completable()
        if runnable:
            pid = runnable[turn % len(runnable)]
            system.apply(("run", pid))
            turn += 1
        elif disk:
            system.apply(("disk", disk[0]))
        else:
            return steps
        steps += 1
    raise UserError(f"workload did not finish within {max_steps} steps")
