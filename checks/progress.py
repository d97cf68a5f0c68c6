"""Progress: under fair choices, every live process keeps retiring instructions.

Safety is not enough: a kernel that never lets a process run again, or that
lets processes rob each other of frames for ever, breaks no invariant. The
``progress`` property catches it. It is checked on a **fair continuation**:
from a reached state, the driver makes fair choices (:class:`FairDriver`:
every pending disk request completes, every runnable process gets a turn
in rotation, the timer fires every few instructions) and a
:class:`Watchdog` counts the steps. The property fails when

* some process stays live for ``bound`` fair steps without retiring an
  instruction (it starves, is blocked for ever, or the system livelocks),
  other than while it waits in a WAIT for children that are all alive, or
* processes are live and nothing at all can happen (a deadlock).

``bound`` is the configuration's ``workload.progress_bound``. Every campaign
runs a fair continuation at the end of each of its runs; the trace of a
failure holds the continuation's choices and the step it started at, so
replay checks the very same window.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from pagingcheck.checks.observe import Violation
from pagingcheck.checks.system import Choice, StepRecord

STATEMENT = (
    "Under fair choices (every pending disk request completes, every runnable process runs "
    "in turn, the timer fires every few instructions), every live process retires an instruction "
    "within the configured bound of steps (while it sleeps in a WAIT for children that are all "
    "alive it owes none), and live processes are never left with nothing that can happen."
)


#: Instructions run between two timer interrupts on a fair continuation.
TIMER_PERIOD = 8


@dataclass
class FairDriver:
    """Chooses fairly among enabled choices: disk completions first, then runnable processes
    in rotation by pid, with the timer after every :data:`TIMER_PERIOD` runs (or whenever
    nothing else can happen). Never spawns or kills."""

    last: int = -1
    runs: int = 0

    def choose(self, enabled: Sequence[Choice]) -> Choice | None:
        """The next fair choice among ``enabled``, or None when only spawns or kills remain."""
        disk = [c for c in enabled if c[0] == "disk"]
        if disk:
            return disk[0]
        timer = ("timer",) in enabled
        pids = sorted(int(c[1]) for c in enabled if c[0] == "run")
        if timer and (not pids or self.runs >= TIMER_PERIOD):
            self.runs = 0
            return ("timer",)
        if not pids:
            return None
        later = [pid for pid in pids if pid > self.last]
        self.last = later[0] if later else pids[0]
        self.runs += 1
        return ("run", self.last)


@dataclass
class Watchdog:
    """Counts fair steps and the last step at which each live process retired."""

    bound: int
    steps: int = 0
    since: dict[int, int] = field(default_factory=dict)

    def start(self, live: Sequence[int]) -> None:
        """The fair continuation begins with ``live`` processes."""
        self.since = dict.fromkeys(live, 0)

    def observe(
        self, record: StepRecord, live: Sequence[int], waiting: Collection[int] = ()
    ) -> Violation | None:
        """Account for one fair step; the violation once some process has waited too long.
        A process ``waiting`` for a child to exit (in a WAIT) owes nothing meanwhile."""
        self.steps += 1
        result = record.result
        if record.choice[0] == "run" and result is not None and result.retired:
            self.since[int(record.choice[1])] = self.steps
        for pid in waiting:
            self.since[pid] = self.steps
        self.since = {pid: self.since.get(pid, self.steps) for pid in live}
        for pid, at in sorted(self.since.items()):
            if self.steps - at >= self.bound:
                return Violation(
                    "progress",
                    f"process {pid} retired no instruction in {self.bound} fair steps",
                    (("pid", pid), ("fair_steps", self.bound)),
                )
        return None

    def stuck(self, live: Sequence[int]) -> Violation:
        """The violation for live processes with no choice enabled at all."""
        return Violation(
            "progress",
            "processes are live but nothing can happen (deadlock)",
            (("live", tuple(live)),),
        )
