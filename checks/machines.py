"""Hypothesis stateful machines whose rules are the system's choices.

Each rule is one choice the driver can make: run a ready process for one
instruction, complete a disk request, fire the timer, spawn a program (from
the workload, or a small random one drawn from
:func:`pagingcheck.checks.strategies.programs`, which includes invalid
addresses and protection violations), or kill a process. After every step
the checker tests refinement, restart exactness and every invariant; the
first failure stops the run with a :class:`PropertyFailed` carrying a
replayable trace. Hypothesis then shrinks the choice sequence; then delta
debugging removes what choices it can, and breadth-first searches look for a
shorter way to the same failure (:mod:`.minimize`, for at most twice as
long), so the reported trace is a small one.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.coverage import Coverage
from pagingcheck.checks.external import kernel_stderr
from pagingcheck.checks.minimize import minimal
from pagingcheck.checks.runner import KernelFactory, Run
from pagingcheck.checks.strategies import programs as random_programs
from pagingcheck.checks.system import Choice
from pagingcheck.model.program import Program

RUN_WEIGHT = 3
T = TypeVar("T")


class PropertyFailed(AssertionError):
    """A property was violated; ``trace`` replays the run that violated it."""

    def __init__(self, trace: traces.Trace) -> None:
        self.trace = trace
        assert trace.violation is not None
        # The message stays short: Hypothesis builds one per failing attempt
        # while it shrinks; the YAML is written once, for the final trace.
        super().__init__(f"{trace.violation.explain()} after {len(trace.choices)} steps")


@dataclass
class Campaign:
    """Accumulated over every run of one machine class: coverage and step counts."""

    coverage: Coverage = field(default_factory=Coverage)
    runs: int = 0
    steps: int = 0
    shrink_seconds: float = 30.0
    best: traces.Trace | None = None
    first_failure: float | None = None
    error: BaseException | None = None  # the first exception that was not a property failing
    interrupted: bool = False  # Ctrl-C arrived during a run
    unminimized: int | None = None  # the failing trace's steps before delta debugging
    searched: bool = False  # the breadth-first search after delta debugging shortened it
    trail: hashlib.blake2b = field(default_factory=lambda: hashlib.blake2b(digest_size=16))

    def explored(self, choices: list[Choice]) -> None:
        """Add one run's choices to :attr:`trail`, a digest of every run explored: two
        campaigns that explored the same runs in the same order have the same trail."""
        self.trail.update(repr(choices).encode())

    def record_failure(self, trace: traces.Trace) -> None:
        """Keep the shortest failing trace of the property that failed first; start the
        shrinking clock at the first failure.

        Shrinking may wander onto another property's failure; keeping to the
        first one makes the reported property independent of how fast the
        machine is (the first failure is fixed: generation is derandomized).
        """
        if self.first_failure is None:
            self.first_failure = time.perf_counter()
        if self.best is None or (
            _property(trace) == _property(self.best) and len(trace.choices) < len(self.best.choices)
        ):
            self.best = trace

    @property
    def shrinking_over(self) -> bool:
        """Whether shrinking has used its time: later attempts then do nothing, cheaply."""
        return (
            self.first_failure is not None
            and time.perf_counter() - self.first_failure > self.shrink_seconds
        )


def _property(trace: traces.Trace) -> str | None:
    return None if trace.violation is None else trace.violation.property


def machine_for(
    config: CheckConfig,
    factory: KernelFactory,
    implementation: str,
    campaign: Campaign,
    random_spawns: bool = True,
) -> type[RuleBasedStateMachine]:
    """A RuleBasedStateMachine class checking ``config`` on kernels built by ``factory``.

    Each run ends with a fair continuation that checks progress (see
    :mod:`pagingcheck.checks.progress`).
    """

    class PagingMachine(RuleBasedStateMachine):
        """Choices of the driver as rules; every property checked after each."""

        def __init__(self) -> None:
            super().__init__()
            campaign.runs += 1
            self.run = guarded(lambda: Run(config, factory, None))
            if self.run.failed:
                self._fail()

        def _fail(self) -> None:
            result = self.run.result
            programs = self.run.checker.system.programs if self.run.checker else ()
            workload_config = _with_programs(config, programs or config.workload.programs)
            trace = traces.from_run(workload_config, implementation, self.run.choices, result)
            campaign.record_failure(trace)
            raise PropertyFailed(trace)

        def _take(self, choice: Choice) -> None:
            if guarded(lambda: self.run.take(choice)) is not None:
                self._fail()

        @rule(data=st.data())
        def choose(self, data: st.DataObject) -> None:
            """Make one of the choices enabled now (run, disk, timer, workload spawn, kill)."""
            enabled = guarded(self.run.enabled)
            if self.run.failed:
                self._fail()
            if not enabled or campaign.shrinking_over:
                return
            # Running processes is what reaches paging situations, so run choices
            # get more weight than disk, timer, spawn and kill choices.
            runs = [c for c in enabled if c[0] == "run"]
            self._take(data.draw(st.sampled_from(runs * RUN_WEIGHT + enabled), label="choice"))

        @precondition(
            lambda self: (
                random_spawns
                and self.run.checker is not None
                and self.run.checker.system.spawns < self.run.checker.system.max_spawns
            )
        )
        @rule(program=random_programs(config.hardware))
        def spawn_random(self, program: Program) -> None:
            """Spawn a small random program (it may touch invalid or forbidden pages)."""
            if campaign.shrinking_over:
                return
            assert self.run.checker is not None
            index = self.run.checker.system.add_program(program)
            if index is not None:
                self._take(("spawn", index))

        def teardown(self) -> None:
            """End the run with a fair continuation: every live process must make progress.

            Runs after the last rule, and after a failing one too (then it only
            counts the run's steps and coverage).
            """
            try:
                # An interrupted run ends at once: the user is waiting, and Hypothesis
                # calls this while the interrupt is still on its way up.
                if not self.run.failed and not campaign.shrinking_over and not campaign.interrupted:
                    bound = config.workload.progress_bound
                    if guarded(lambda: self.run.continue_fairly(bound)) is not None:
                        self._fail()
            finally:
                campaign.steps += len(self.run.result.records)
                campaign.coverage.merge(self.run.result.coverage)
                campaign.explored(self.run.choices)

    def guarded(call: Callable[[], T]) -> T:
        """Run ``call``; remember the first exception that is not a property failing
        (pagingcheck's own error, or a kernel breaking the interface), so that
        shrinking can never hide it."""
        try:
            return call()
        except KeyboardInterrupt:
            campaign.interrupted = True
            raise
        except Exception as error:
            if campaign.error is None:
                campaign.error = error
            raise

    PagingMachine.__name__ = f"PagingMachine_{config.hardware.page_table}"
    return PagingMachine


@contextmanager
def no_source_constants() -> Iterator[None]:
    """Generate without the literal constants Hypothesis finds in loaded source files.

    Hypothesis (from 6.131) mixes integer and string literals found in the
    source of local modules, the kernel under check among them, into what it
    draws. A verdict must not depend on which literals someone's kernel
    happens to contain, so a campaign draws from its own strategies only.
    This reaches into Hypothesis's internals; where they differ (other
    versions), nothing is changed, and tests/checks/test_machines.py shows
    whether generation still ignores source constants.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # a Hypothesis without source constants
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if original is None or cache is None:
        yield
        return
    providers._get_local_constants = lambda *args, **kwargs: Constants()
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def _with_programs(config: CheckConfig, programs: tuple[Program, ...]) -> CheckConfig:
    """``config`` whose workload also lists the random programs a run spawned."""
    return replace(config, workload=replace(config.workload, programs=programs))


@dataclass(frozen=True)
class Randomness:
    """Where a campaign's runs come from. No seed: derandomised, the same runs every time
    (what CI wants). A seed: the runs that seed gives, the same for the same seed; with
    ``database``, Hypothesis's example database is replayed first (failures found by
    earlier campaigns) and keeps what this one finds."""

    seed: int | None = None
    database: bool = False


def example_database() -> ExampleDatabase:
    """The example database of every campaign on this machine, in the user's cache folder
    (not the folder pagingcheck is run from, which it should not litter)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return DirectoryBasedExampleDatabase(os.path.join(cache, "pagingcheck", "examples"))


def run_campaign(
    config: CheckConfig,
    factory: KernelFactory,
    implementation: str,
    *,
    examples: int,
    steps: int,
    random_spawns: bool = True,
    shrink_seconds: float = 30.0,
    randomness: Randomness | None = None,
    campaign: Campaign | None = None,
) -> tuple[Campaign, traces.Trace | None]:
    """Run the machine for ``examples`` runs of up to ``steps`` steps; return coverage and the
    shrunk failing trace, if any. Derandomized (the same configuration gives the same runs)
    unless ``randomness`` gives a seed. ``campaign``, when given, is the one filled in as
    the runs go (so another thread can tell how far they are)."""
    randomness = randomness or Randomness()
    campaign = campaign or Campaign(shrink_seconds=shrink_seconds)
    machine = machine_for(config, factory, implementation, campaign, random_spawns)
    if randomness.seed is not None:
        machine = seed(randomness.seed)(machine)
    run_settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=randomness.seed is None,
        database=example_database() if randomness.database else None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
        # The explain phase re-runs the shrunk example many times to annotate
        # it; a trace already shows every step, so it is skipped.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )
    try:
        with no_source_constants():
            run_state_machine_as_test(machine, settings=run_settings)
    except (PropertyFailed, Flaky):
        # Past the shrinking time the machine stops failing, so Hypothesis may
        # report the run as flaky; the shortest trace seen is the answer either
        # way, and it replays deterministically.
        if campaign.best is None:
            raise
    if campaign.error is not None:
        raise campaign.error
    if campaign.best is not None:
        # Here, not in the machine: Hypothesis derives its derandomized runs from the
        # machine's source, and the runs each variant makes are what its coverage rests on.
        campaign.unminimized = len(campaign.best.choices)
        shortened = minimal(campaign.best, factory, 2 * campaign.shrink_seconds)
        campaign.best, campaign.searched = shortened.trace, shortened.searched
        campaign.best.stderr = kernel_stderr(factory)
    return campaign, campaign.best
