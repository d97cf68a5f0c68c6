"""Build a checked system from a configuration, and run a choice sequence through it.

Hypothesis machines, replay, mutants and validate all go through here, so a
trace that one of them writes, any of them re-runs. A run is a prefix of
arbitrary choices, optionally followed by a fair continuation from
``fair_from`` on, over which progress is watched (:mod:`.progress`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pagingcheck.checks.config import CheckConfig, Limits
from pagingcheck.checks.contained import contained_factory
from pagingcheck.checks.coverage import Coverage, Tracker
from pagingcheck.checks.describe import describe_state
from pagingcheck.checks.external import EXEC, exec_factory
from pagingcheck.checks.observe import Observed, Violation
from pagingcheck.checks.progress import FairDriver
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.system import Choice, KernelFailed, StepRecord, boot_system, kernel_query
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import UserError, shorten
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Program

KernelFactory = Callable[[HardwareConfig, KernelConfig], Kernel]

REFERENCE_KERNEL = "pagingcheck.impl.reference:ReferenceKernel"


def resolve_factory(spec: str) -> KernelFactory:
    """The kernel factory named ``module:attr`` (UserError with the fix if it cannot load)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--impl {spec!r}: expected MODULE:ATTR, e.g. {REFERENCE_KERNEL}")
    try:
        # What the module prints as it loads goes to stderr: stdout may be carrying --json.
        with contextlib.redirect_stdout(sys.stderr):
            module = importlib.import_module(module_name)
    except SystemExit as error:
        raise UserError(
            f"--impl {spec!r}: cannot load the kernel: the module called exit({error.code!r})"
        ) from None
    except Exception as error:  # the user's module may fail in any way while importing
        raise UserError(
            f"--impl {spec!r}: cannot import {module_name}: {type(error).__name__}: "
            f"{shorten(str(error), 300)}"
        ) from error
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"--impl {spec!r}: {module_name} has no callable {attr}")
    return factory  # type: ignore[no-any-return]


def kernel_factory(spec: str, limits: Limits, in_process: bool | None = None) -> KernelFactory:
    """The factory of the kernel ``spec`` names (``MODULE:ATTR``, or ``exec:COMMAND`` for a
    program speaking the process protocol, :mod:`.external`).

    A kernel that ships with pagingcheck runs in pagingcheck's own process;
    any other runs contained, in a process of its own under ``limits``
    (:mod:`.contained`), unless ``in_process`` says otherwise. The kernel's
    module is loaded at once, so a module that cannot be loaded is a
    UserError before any check starts.
    """
    if spec.startswith(EXEC):
        if in_process:
            raise UserError("--in-process: a kernel run by --exec is a program of its own")
        return exec_factory(spec.removeprefix(EXEC), limits)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--impl {spec!r}: expected MODULE:ATTR, e.g. {REFERENCE_KERNEL}")
    if in_process if in_process is not None else spec.startswith("pagingcheck."):
        return resolve_factory(spec)
    factory = contained_factory(spec, limits)
    factory.host.ensure()  # type: ignore[attr-defined]
    return factory


@contextlib.contextmanager
def released(factory: KernelFactory) -> Iterator[KernelFactory]:
    """``factory`` for the block; after it, a contained kernel's process is ended at once,
    its descriptors closed (not left for the garbage collector)."""
    try:
        yield factory
    finally:
        host = getattr(factory, "host", None)
        if host is not None:
            host.stop()


@dataclass
class RunResult:
    """What running a choice sequence did."""

    records: list[StepRecord] = field(default_factory=list)
    violation: Violation | None = None
    failing_step: int | None = None
    coverage: Coverage = field(default_factory=Coverage)
    diverged_at: int | None = None  # a choice that was not enabled (the kernel changed)
    difference: list[str] = field(default_factory=list)  # what the failing step changed
    state: list[str] = field(default_factory=list)  # the state after it, in words
    fair_from: int | None = None  # the step the fair continuation started at


def start(
    config: CheckConfig, factory: KernelFactory, programs: Sequence[Program] | None = None
) -> Checker:
    """Boot a fresh system for ``config`` and wrap it in a checker.

    Raises KernelFailed when the kernel fails while booting or creating the
    initial processes (a violation at step 0), UserError when it cannot be
    built at all.
    """
    workload = config.workload
    seconds = None if hasattr(factory, "host") else config.limits.call_seconds
    kernel = kernel_query("construction", lambda: factory(config.hardware, config.kernel), seconds)
    system = boot_system(
        Machine(config.hardware),
        kernel,
        tuple(programs) if programs is not None else workload.programs,
        initial=workload.initial,
        max_spawns=workload.max_spawns,
        timer=workload.timer,
        kills=workload.kills,
        call_seconds=config.limits.call_seconds,
        console_input=workload.console_input,
        files=workload.files,
    )
    return Checker(system)


class Run:
    """One checked run in progress: a checker, its records and coverage, its first violation."""

    def __init__(
        self, config: CheckConfig, factory: KernelFactory, programs: Sequence[Program] | None
    ) -> None:
        self.config = config
        self.result = RunResult()
        self.tracker = Tracker()
        self.choices: list[Choice] = []
        self.checker: Checker | None = None
        try:
            self.checker = start(config, factory, programs)
        except KernelFailed as failure:
            self.fail(failure.violation())
            return
        violation = self.checker.check_state()
        if violation is not None:
            self.fail(violation)

    @property
    def failed(self) -> bool:
        """Whether a property has been violated."""
        return self.result.violation is not None

    def fail(self, violation: Violation) -> None:
        """Record ``violation`` as the run's first."""
        self.result.violation = violation
        self.result.failing_step = len(self.result.records)
        if self.checker is not None:
            self.result.difference = self.checker.last_difference
            self.result.state = describe_state(self.checker.observed, self._focus())

    def _focus(self) -> int | None:
        """The process a failure is about: the one the failing step ran, else the one on
        the CPU."""
        records = self.result.records
        if records and records[-1].choice[0] == "run":
            return int(records[-1].choice[1])
        assert self.checker is not None
        return self.checker.observed.view.current

    def take(self, choice: Choice) -> Violation | None:
        """Apply one choice and check it; returns the violation, if it is the first."""
        checker = self.checker
        assert checker is not None and not self.failed
        before = checker.observed
        self.choices.append(choice)
        record, violation = checker.step(choice)
        self.result.records.append(record)
        self.result.coverage.add(
            self.tracker.classify(self.config.hardware, record, before, checker.observed)
        )
        if violation is not None:
            self.fail(violation)
        return violation

    def enabled(self) -> list[Choice]:
        """The choices enabled now; none when asking the kernel fails (the run has failed)."""
        assert self.checker is not None
        try:
            return self.checker.choices()
        except KernelFailed as failure:
            self.fail(failure.violation())
            return []

    def continue_fairly(self, bound: int, steps: int | None = None) -> Violation | None:
        """Make fair choices from here, watching progress with ``bound`` (see .progress).

        Runs until no process is live and the disk is idle, a property fails,
        or ``steps`` fair steps (by default ``2 * bound``) have passed.
        """
        checker = self.checker
        assert checker is not None and not self.failed
        self.result.fair_from = len(self.choices)
        checker.watch_progress(bound)
        driver = FairDriver()
        for _ in range(2 * bound if steps is None else steps):
            if not checker.observed.live and not checker.observed.requests:
                return None
            enabled = self.enabled()
            if self.result.violation is not None:
                return self.result.violation
            choice = driver.choose(enabled)
            if choice is None:
                assert checker.watchdog is not None
                stuck = checker.watchdog.stuck(checker.observed.live)
                self.fail(stuck)
                return stuck
            violation = self.take(choice)
            if violation is not None:
                return violation
        return None


def run_choices(
    config: CheckConfig,
    factory: KernelFactory,
    choices: Iterable[Choice],
    programs: Sequence[Program] | None = None,
    fair_from: int | None = None,
    lenient: bool = False,
    watch: Callable[[Observed], None] | None = None,
) -> RunResult:
    """Apply ``choices`` in order, checking everything after each; stop at the first violation.
    A choice not enabled when its turn comes ends the run (``diverged_at``), or with
    ``lenient`` is passed over (the records say which choices were taken). ``watch``, when
    given, is shown the booted state and the state after each step taken.

    From choice index ``fair_from`` on (when given) the choices are a fair
    continuation, and progress is watched over them as when they were made;
    if they run out with processes still live, the continuation is checked
    as far as it goes.
    """
    run = Run(config, factory, programs)
    if run.checker is not None and watch is not None:
        watch(run.checker.observed)
    if run.failed:
        return run.result
    assert run.checker is not None
    for index, choice in enumerate(choices, start=1):
        if fair_from is not None and index - 1 == fair_from:
            run.result.fair_from = fair_from
            run.checker.watch_progress(config.workload.progress_bound)
        enabled = run.enabled()
        if run.result.violation is not None:
            break
        if choice not in enabled:
            if lenient:
                continue
            run.result.diverged_at = index
            break
        violation = run.take(choice)
        if watch is not None:
            watch(run.checker.observed)
        if violation is not None:
            break
    else:
        if fair_from is not None and run.result.fair_from is None:
            run.result.fair_from = fair_from
        if fair_from is not None and run.checker.watchdog is None:
            # The continuation starts after the last choice (a deadlock's trace): watch it.
            run.checker.watch_progress(config.workload.progress_bound)
        if not run.failed:
            run.enabled()  # the last state's choices are asked for, as a campaign asks
    if (
        not run.failed
        and run.result.diverged_at is None
        and fair_from is not None
        and run.checker.watchdog is not None
        and run.checker.observed.live
        and not [c for c in run.enabled() if c[0] in ("run", "disk", "timer")]
        and not run.failed
    ):
        run.fail(run.checker.watchdog.stuck(run.checker.observed.live))
    return run.result
