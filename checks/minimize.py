"""Shorter failing traces: breadth-first searches from the boot, then delta debugging;
shorter prefixes and lassos for progress.

Hypothesis shrinks the choices it drew, but it stops when its own moves no
longer help (or when the shrinking time is up), so a campaign's trace can
keep steps the failure does not need; and removing steps alone cannot put a
kill where a process ran to its exit, spawn a program that reaches the bug
sooner, or reorder what two processes do. :func:`minimal` shortens it in two
stages, keeping a trace only when replaying it violates the same property:

1. **Breadth-first searches from the boot** (for at most half the time),
   with the explorer's own search
   (:class:`~pagingcheck.checks.explore.Explorer` under
   :class:`~pagingcheck.checks.explore.Bounds`), for the same property in
   fewer steps than the shortest trace so far. A campaign's configuration is
   far too large to search whole, so each search takes only some of the
   choices (a *view*, :func:`boot_views`) under a budget of states; the first
   violation a view finds is a shortest one in that view, and is kept if
   replaying its choices strictly shows it again.
2. **Delta debugging** removes choices, as Zeller's ddmin does: chunks of
   half the trace first, then of a quarter, and so on down to single
   choices. A choice that a removal leaves not enabled is passed over in
   that replay (as Hypothesis skips a rule whose precondition fails), and the
   trace kept is the choices the replay took, so it replays exactly. When no
   single choice can be removed any more the trace is 1-minimal; if the time
   runs out first, it is the shortest found so far.

The searches have no clock in them but their deadline: the same trace and
kernel give the same result on any machine unless the time runs out before
the states do (on the default configuration they take 20 seconds at most).

A progress violation's trace is shortened other ways. Its fair continuation
must stay whole, so no choice of it can go; but the choices before it can
(:func:`_prefix_shortened`): delta debugging as above removes them, each
shorter prefix replayed and continued by the fair driver afresh, and kept
when that fails progress again (the trace then holds the new continuation).
Then :func:`lasso`: when the
continuation comes back to a state it was in (the same fingerprint), the
choices between are a loop that could be taken for ever. If that loop is
fair (every choice enabled all along it is taken in it) and replaying the
prefix and one turn of the loop, with the loop's length as the progress
bound, fails progress again, some live process retires nothing in a fair
infinite run: the same violation, shown in one turn of the loop instead of
a whole bound's worth of fair steps, as the explorer's lassos are. Last
(:func:`_way_into_loop`), breadth-first searches from the boot seek a shorter
way into that loop: the fewest choices that reach any state of it; and
(:func:`_other_loop`) the graphs they explore are searched for a shorter lasso
round any loop, as the explorer searches its whole graph. A safety
violation found during the fair continuation is shortened like any other
(its choices are ordinary choices), and its trace no longer watches
progress.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pagingcheck.checks import traces
from pagingcheck.checks.explore import REACHED, Bounds, Explorer, non_progress_lasso
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import KernelFactory, Run, RunResult, run_choices
from pagingcheck.checks.system import Choice, KernelFailed

#: States the breadth-first searches of one trace may visit in all, and each view at most
#: (see :func:`boot_views`). On the default configuration (about 350 states a second) one
#: or two processes with the disk reach a failure 20 to 40 steps deep within a few
#: thousand states, where every choice (13 at the boot) reaches only three steps deep in
#: 1,800; its views take 6,300 states at most.
SEARCH_STATES = 8_000
SHALLOW_STATES = 300  # every choice: two steps deep, and some of three
PROCESS_STATES = 200  # one process's own run, a few dozen steps
ONE_AT_A_TIME_STATES = 2_500  # the trace's processes, switching only when one cannot run
VIEW_STATES = 1_500  # any other view

ChoiceFilter = Callable[[Choice], bool]
Select = Callable[[Checker, list[Choice]], list[Choice]]


@dataclass(frozen=True)
class Minimized:
    """What :func:`minimal` made of a trace: the trace, and whether the breadth-first
    search (not delta debugging alone) gave it."""

    trace: traces.Trace
    searched: bool = False


def minimal(
    trace: traces.Trace,
    factory: KernelFactory,
    seconds: float,
    max_states: int | None = None,
) -> Minimized:
    """``trace`` shortened within ``seconds`` (see the module docstring): breadth-first
    searches from the boot of ``max_states`` states in all (:data:`SEARCH_STATES` when
    None), then delta debugging; ``trace`` itself when nothing shorter was found."""
    if trace.violation is None or not trace.choices:
        return Minimized(trace)
    if trace.violation.property == "progress":
        # Half the time for delta debugging the prefix, the rest for searching a shorter way
        # into the lasso's loop.
        began = time.monotonic()
        shortened = _prefix_shortened(trace, factory, began + seconds / 2) or trace
        looped = lasso(shortened, factory) or shortened
        budget = Budget(SEARCH_STATES, began + seconds)
        searched = _way_into_loop(looped, factory, budget)
        searched = _other_loop(searched or looped, factory, budget) or searched
        return Minimized(searched or looped, searched=searched is not None)
    began = time.monotonic()
    # The searches first, for half the time at most: a trace they shorten leaves delta
    # debugging less to do.
    budget = Budget(SEARCH_STATES if max_states is None else max_states, began + seconds / 2)
    booted = _booted(trace, factory)
    if booted is None:
        return Minimized(trace)
    current = dataclasses.replace(trace, fair_from=None)
    searched = _searched(current, factory, boot_views(current, booted), budget)
    current = searched or current
    current = _delta_debugged(current, factory, began + seconds) or current
    if len(current.choices) < len(trace.choices):
        return Minimized(current, searched=searched is not None)
    return Minimized(trace)


# -- lassos ----------------------------------------------------------------------------------------


def lasso(trace: traces.Trace, factory: KernelFactory) -> traces.Trace | None:
    """A progress trace cut to a lasso (see the module docstring): the choices up to the
    first state its fair continuation comes back to, then one turn of the loop from there,
    with the loop's length as the progress bound; None when the continuation never
    comes back to a state along a fair loop, or the lasso does not fail progress."""
    if trace.fair_from is None:
        return None
    found = _loop(trace, factory)
    if found is None:
        return None
    start, end = found
    loop = list(trace.choices[start:end])
    shorter = _lasso_replayed(trace, factory, list(trace.choices[:start]), loop)
    return shorter if shorter is not None and len(shorter.choices) < len(trace.choices) else None


def _way_into_loop(
    trace: traces.Trace, factory: KernelFactory, budget: Budget
) -> traces.Trace | None:
    """A lasso (see :func:`lasso`) with a shorter way into its loop: breadth-first searches
    from the boot, in the views of :func:`boot_views`, for the fewest choices that reach
    any state of the loop, then one turn of the loop from that state; kept when replaying
    it fails progress again. None when no shorter lasso was found, or ``trace`` is none."""
    if trace.fair_from is None:
        return None
    loop = list(trace.choices[trace.fair_from :])
    if trace.workload.progress_bound != len(loop):
        return None  # not a lasso: its continuation is not one turn of a loop
    states = _loop_states(trace, factory)
    booted = _booted(trace, factory)
    if states is None or booted is None:
        return None
    best: traces.Trace | None = None
    for view in boot_views(trace, booted):
        into = (best or trace).fair_from
        if not into:
            break  # the boot is already in the loop
        searched = _view_searched(trace, factory, view, budget, REACHED, into - 1, states)
        if searched is None:
            break
        way, _ = searched
        if way is not None:
            best = _lasso_through(trace, factory, way, loop, states) or best
    return best


def _other_loop(trace: traces.Trace, factory: KernelFactory, budget: Budget) -> traces.Trace | None:
    """A shorter lasso round any loop: the graph each view of :func:`boot_views` explores
    from the boot (within ``budget``, to fewer steps than ``trace`` has) searched for the
    shortest fair cycle that retires nothing, as the explorer does on a whole graph; kept
    when replaying it fails progress again. None when none is shorter."""
    booted = _booted(trace, factory)
    if trace.fair_from is None or booted is None:
        return None
    best: traces.Trace | None = None
    for view in boot_views(trace, booted):
        current = best or trace
        # "progress" is never a step's violation: every state within the bounds is explored.
        searched = _view_searched(
            trace, factory, view, budget, "progress", len(current.choices) - 1
        )
        if searched is None:
            break
        _, explorer = searched
        # Only expanded states have successors, so any cycle found is a whole one.
        found = non_progress_lasso(explorer.graph)
        if found is not None and sum(map(len, found)) < len(current.choices):
            best = _lasso_replayed(trace, factory, *found) or best
    return best


def _lasso_replayed(
    trace: traces.Trace, factory: KernelFactory, prefix: list[Choice], loop: list[Choice]
) -> traces.Trace | None:
    """The trace of ``prefix`` then one turn of ``loop``, with the loop's length as the
    progress bound, if replaying it fails progress; None otherwise."""
    config = trace.config()
    config = dataclasses.replace(
        config, workload=dataclasses.replace(config.workload, progress_bound=len(loop))
    )
    choices = [*prefix, *loop]
    result = run_choices(config, factory, choices, trace.programs, fair_from=len(prefix))
    if result.violation is None or result.violation.property != "progress":
        return None
    return traces.from_run(config, trace.implementation, choices, result, trace.stderr)


def _loop_states(trace: traces.Trace, factory: KernelFactory) -> dict[bytes, int] | None:
    """The fingerprint of the state before each choice of a lasso's loop, and where in the
    loop it is; None if replaying the trace fails before the loop ends."""
    assert trace.fair_from is not None
    run = Run(trace.config(), factory, trace.programs)
    states: dict[bytes, int] = {}
    try:
        for index, choice in enumerate(trace.choices):
            if run.checker is None or run.failed or choice not in run.enabled():
                return None
            if index >= trace.fair_from:
                states.setdefault(run.checker.fingerprint(), index - trace.fair_from)
            if run.take(choice) is not None:
                return None
    except KernelFailed:
        return None
    return states


def _lasso_through(
    trace: traces.Trace,
    factory: KernelFactory,
    way: list[Choice],
    loop: list[Choice],
    states: dict[bytes, int],
) -> traces.Trace | None:
    """The lasso that takes ``way`` into ``trace``'s loop and then goes once round it from
    the state ``way`` reaches; None unless replaying it fails progress."""
    run = Run(trace.config(), factory, trace.programs)
    for choice in way:
        if run.checker is None or run.failed or run.take(choice) is not None:
            return None
    if run.checker is None:
        return None
    at = states.get(run.checker.fingerprint())
    if at is None:
        return None
    return _lasso_replayed(trace, factory, way, [*loop[at:], *loop[:at]])


def _prefix_shortened(
    trace: traces.Trace, factory: KernelFactory, deadline: float
) -> traces.Trace | None:
    """``trace`` (a progress violation) with every choice removed from the prefix before
    its fair continuation that can go before ``deadline``, a fresh fair continuation
    after each shorter prefix; None if none could."""
    if trace.fair_from is None:
        return None
    config = trace.config()

    def continued(prefix: list[Choice]) -> tuple[list[Choice], Run] | None:
        """The prefix's choices taken (a choice not enabled is passed over) and the run
        continued fairly, when that fails progress; None otherwise."""
        run = Run(config, factory, trace.programs)
        taken = []
        for choice in prefix:
            enabled = run.enabled() if run.checker is not None and not run.failed else None
            if enabled is None or run.failed:
                return None  # a violation on the way: another trace's business
            if choice in enabled and run.take(choice) is None:
                taken.append(choice)
        if run.checker is None or run.failed:
            return None
        violation = run.continue_fairly(config.workload.progress_bound)
        failed = violation is not None and violation.property == "progress"
        return (taken, run) if failed else None

    found = _ddmin(list(trace.choices[: trace.fair_from]), continued, deadline)
    if found is None or len(found.choices) >= len(trace.choices):
        return None
    return traces.from_run(config, trace.implementation, found.choices, found.result, trace.stderr)


def _loop(trace: traces.Trace, factory: KernelFactory) -> tuple[int, int] | None:
    """The first fair loop of ``trace``'s fair continuation: (start, end) choice indexes
    such that the state before choice ``end`` is the state before choice ``start``."""
    assert trace.fair_from is not None
    run = Run(trace.config(), factory, trace.programs)
    if run.checker is None:
        return None
    seen: dict[bytes, int] = {}
    offered: list[frozenset[Choice]] = []  # what was enabled before each choice
    try:
        for index, choice in enumerate(trace.choices):
            enabled = frozenset(run.enabled())
            if run.failed or choice not in enabled:
                return None
            if index >= trace.fair_from:
                key = run.checker.fingerprint()
                start = seen.get(key)
                if start is not None and _fair(trace.choices[start:index], offered[start:]):
                    return start, index
                seen.setdefault(key, index)
            offered.append(enabled)
            if run.take(choice) is not None:
                return None
    except KernelFailed:
        return None
    return None


def _fair(loop: list[Choice], offered: list[frozenset[Choice]]) -> bool:
    """Whether repeating ``loop`` for ever is fair: every run, disk or timer choice enabled
    before each of its choices (``offered``) is taken in it (spawns and kills are never
    owed)."""
    always = frozenset.intersection(*offered) if offered else frozenset()
    owed = {choice for choice in always if choice[0] in ("run", "disk", "timer")}
    return owed <= set(loop)


@dataclass
class Budget:
    """What the searches of one trace may still spend: states, and time."""

    states: int
    deadline: float  # on time.monotonic()'s clock

    @property
    def spent(self) -> bool:
        """Whether nothing is left."""
        return self.states <= 0 or time.monotonic() >= self.deadline


# -- delta debugging ------------------------------------------------------------------------------


def _delta_debugged(
    trace: traces.Trace, factory: KernelFactory, deadline: float
) -> traces.Trace | None:
    """``trace`` with every choice removed that can go before ``deadline``; None if none
    could."""
    config = trace.config()
    wanted = _property(trace)

    def replayed(choices: list[Choice]) -> RunResult | None:
        result = run_choices(config, factory, choices, trace.programs, lenient=True)
        violation = result.violation
        return result if violation is not None and violation.property == wanted else None

    def kept(choices: list[Choice]) -> tuple[list[Choice], RunResult] | None:
        result = replayed(choices)
        # The choices taken, up to the failure (which may now come sooner).
        return None if result is None else ([r.choice for r in result.records], result)

    found = _ddmin(list(trace.choices), kept, deadline)
    if found is None:
        return None
    choices = [record.choice for record in found.records]
    return traces.from_run(config, trace.implementation, choices, found, trace.stderr)


Found = TypeVar("Found")


def _ddmin(
    choices: list[Choice],
    attempt: Callable[[list[Choice]], tuple[list[Choice], Found] | None],
    deadline: float,
) -> Found | None:
    """Zeller's ddmin over ``choices`` until ``deadline``: chunks of half of them removed
    first, then of a quarter, down to single choices. ``attempt`` tries a shorter list and
    gives the choices it really took and what it found, or None when the list fails
    otherwise; the last thing found is returned (None: no removal kept the failure)."""
    found: Found | None = None
    chunk = max(1, len(choices) // 2)
    while choices and time.monotonic() < deadline:
        start, removed = 0, False
        while start < len(choices) and time.monotonic() < deadline:
            tried = attempt(choices[:start] + choices[start + chunk :])
            if tried is None:
                start += chunk
                continue
            (choices, found), removed = tried, True
        if chunk == 1 and not removed:
            break  # 1-minimal: no single choice can go
        if not removed:
            chunk = max(1, chunk // 2)
    return found


# -- breadth-first search -------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """Which choices one breadth-first search takes: those ``select`` keeps of the choices
    enabled in a state (None: every one), in at most ``states`` states."""

    name: str
    select: Select | None = None
    states: int = VIEW_STATES


def boot_views(trace: traces.Trace, booted: Checker) -> Iterator[View]:
    """The views searched first, from ``trace``'s ``booted`` system, in order (each one
    that finds a shorter trace lowers the depth the next ones search to):

    * every choice, a few steps deep: a kill that frees what another process still maps;
    * each booted process alone, with the disk: one process's own way to the failure;
    * the trace's choices with any disk completion, the CPU going to another process only
      when the one it ran last cannot run: the few steps several processes need to fill
      memory, without every interleaving of them;
    * a process spawned to run each program, alone: a program the trace never ran may
      reach the bug soonest;
    * the booted processes of one program together, in every interleaving (they share its
      text and segments).
    """
    yield View("every choice", states=SHALLOW_STATES)
    owners = booted.system.owners
    live = tuple(booted.observed.live)
    for pid in live:
        yield View(f"process {pid}", _only(_processes((pid,))), states=PROCESS_STATES)
    own = frozenset(trace.choices)
    yield View(
        "the trace's choices, one process at a time",
        _one_at_a_time(lambda c: c in own or c[0] == "disk"),
        states=ONE_AT_A_TIME_STATES,
    )
    for index in range(len(trace.programs)):
        spawned = _spawned_pid(booted, index)
        if spawned is not None:
            spawn: Choice = ("spawn", index)
            yield View(
                f"program {index} spawned",
                _only(_processes((spawned,), spawn)),
                states=PROCESS_STATES,
            )
    for index in sorted({owners[pid] for pid in live if pid in owners}):
        group = tuple(pid for pid in live if owners.get(pid) == index)
        if len(group) > 1:
            yield View(f"processes {', '.join(map(str, group))}", _only(_processes(group)))


def _only(keep: ChoiceFilter) -> Select:
    """The enabled choices ``keep`` keeps."""
    return lambda _, enabled: [c for c in enabled if keep(c)]


def _one_at_a_time(keep: ChoiceFilter) -> Select:
    """The enabled choices ``keep`` keeps, but no process run other than the one that ran
    last while it can still run (disk completions go on meanwhile)."""

    def select(checker: Checker, enabled: list[Choice]) -> list[Choice]:
        kept = [c for c in enabled if keep(c)]
        last = next((c for c in reversed(checker.system.history) if c[0] == "run"), None)
        if last is None or last not in kept:
            return kept
        return [c for c in kept if c == last or c[0] == "disk"]

    return select


def _processes(pids: tuple[int, ...], spawn: Choice | None = None) -> ChoiceFilter:
    """The run and kill choices of ``pids`` (and ``spawn``, which creates one), with every
    disk completion."""
    return lambda c: c[0] == "disk" or c == spawn or (c[0] in ("run", "kill") and c[1] in pids)


def _spawned_pid(booted: Checker, index: int) -> int | None:
    """The pid a process spawned at once to run program ``index`` gets (which pid a kernel
    gives is its own business: it is found by spawning one); None if none can be."""
    choice: Choice = ("spawn", index)
    try:
        if choice not in booted.choices():
            return None
        probe = booted.copy()
        _, violation = probe.step(choice)
    except KernelFailed:
        return None
    new = set(probe.observed.live) - set(booted.observed.live)
    return new.pop() if violation is None and len(new) == 1 else None


def _searched(
    trace: traces.Trace, factory: KernelFactory, views: Iterator[View], budget: Budget
) -> traces.Trace | None:
    """The shortest trace the searches of ``views`` find within ``budget``, if it is shorter
    than ``trace`` (each view seeks one shorter than the best so far); None otherwise."""
    best: traces.Trace | None = None
    for view in views:
        current = best or trace
        if len(current.choices) <= 1:
            break
        depth = len(current.choices) - 1
        searched = _view_searched(trace, factory, view, budget, _property(trace), depth)
        if searched is None:
            break
        shorter, _ = searched
        if shorter is not None and len(shorter) < len(current.choices):
            best = _replayed(trace, factory, shorter) or best
    return best


def _view_searched(
    trace: traces.Trace,
    factory: KernelFactory,
    view: View,
    budget: Budget,
    wanted: str,
    depth: int,
    reach: Iterable[bytes] = (),
) -> tuple[list[Choice] | None, Explorer] | None:
    """One breadth-first search of ``view`` from ``trace``'s boot, for a violation of
    ``wanted`` (or, with ``reach``, for one of those states) within ``depth`` steps, its
    states charged to ``budget``: what it found, and the explorer that holds its graph.
    None when the budget is spent or the system does not boot."""
    first = _booted(trace, factory)  # each search steps a system of its own
    if budget.spent or first is None:
        return None
    bounds = Bounds(wanted, depth, budget.deadline, view.select, frozenset(reach))
    explorer = Explorer(
        trace.config(), factory, max_states=min(view.states, budget.states), bounds=bounds
    )
    found = explorer.shortest_from(first)
    budget.states -= explorer.result.distinct_states
    return found, explorer


def _booted(trace: traces.Trace, factory: KernelFactory) -> Checker | None:
    """A checker of ``trace``'s system as booted; None if booting it fails."""
    run = Run(trace.config(), factory, trace.programs)
    return None if run.failed else run.checker


def _replayed(
    trace: traces.Trace, factory: KernelFactory, choices: list[Choice]
) -> traces.Trace | None:
    """The trace of ``choices``, if replaying them strictly (every choice enabled when
    taken) violates ``trace``'s property at the last one; None otherwise (a kernel whose
    copies behave otherwise than the original, say)."""
    config = trace.config()
    result = run_choices(config, factory, choices, trace.programs)
    violation = result.violation
    if violation is None or violation.property != _property(trace):
        return None
    if result.diverged_at is not None or result.failing_step != len(choices):
        return None
    return traces.from_run(config, trace.implementation, choices, result, trace.stderr)


def _property(trace: traces.Trace) -> str:
    assert trace.violation is not None
    return trace.violation.property
