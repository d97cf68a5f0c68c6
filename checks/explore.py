"""Exhaustive exploration: every reachable state of a small configuration, breadth first.

Where a Hypothesis campaign samples runs, the explorer enumerates them: from
the booted system it applies every enabled choice in every distinct state,
with every property of :class:`~pagingcheck.checks.refinement.Checker`
(state invariants, refinement, restart exactness, dirty pages, dispatch,
the kernel's conduct) checked on every transition. States are told apart by
:meth:`Checker.fingerprint`; the visited set keeps the 16-byte digests only,
with each state's parent and the choice that reached it, so the first
violation found is one of the fewest steps and its choices are rebuilt by
walking parents back.

Progress is a property of the state graph, checked once it is complete:

* a **deadlock** is a reachable state with live processes and no run, disk
  or timer choice enabled;
* a **non-progress cycle** is a reachable cycle in which no instruction
  retires while processes are live, and which a fair scheduler could follow
  for ever: every run, disk and timer choice enabled in all of its states is
  taken somewhere on it (weak fairness). It is found among the strongly
  connected components of the graph of transitions that retire nothing, and
  reported as a lasso: the choices reaching the cycle, then the cycle.

Every violation becomes a trace (:mod:`.traces`) that ``pagingcheck replay``
re-runs (except a kernel failing in ``copy()`` or ``fingerprint()``, which only
the explorer calls; it is reported with the choices that reached the state):
a safety violation's choices; a deadlock's choices with the fair continuation
starting after the last; a lasso's prefix and one turn of its
loop, with the fair continuation starting at the loop and the progress bound
set to the loop's length (a loop repeats for ever, so no bound would end it).

The same search serves trace minimization (:mod:`.minimize`) under
:class:`Bounds`: started from a state given to it, taking only the choices a
view selects, no deeper than a depth and no longer than a deadline, and
looking for one property only (a violation of another ends its branch, not
the search).
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pagingcheck.checks import traces, viewer
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.external import kernel_stderr
from pagingcheck.checks.frontier import KEEP_IN_MEMORY, Frontier
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import KernelFactory, RunResult, run_choices, start
from pagingcheck.checks.system import Choice, KernelFailed
from pagingcheck.model.errors import InternalError

#: Choices a fair scheduler must eventually take when they stay enabled (spawns and kills
#: are the environment's freedoms, never owed).
FAIR_KINDS = frozenset({"run", "disk", "timer"})

NO_PARENT = -1

#: Branching states whose original is fingerprinted again after its copies have stepped:
#: a kernel whose copy() shares state with the original shows within the first few.
COPY_CHECKS = 64
#: What a search for states (:attr:`Bounds.reach`) seeks and finds them by, as a property.
REACHED = "reached"


@dataclass
class Finding:
    """One violation the exploration found, with the choices that show it."""

    violation: Violation
    choices: list[Choice]
    loop_from: int | None = None  # where a lasso's loop starts; None for a safety violation
    deadlock: bool = False
    replays: bool = True  # False: the kernel failed copying or fingerprinting a state
    trace: str | None = None  # the file it was written to

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this finding."""
        return {
            **self.violation.to_json(len(self.choices), self.trace),
            "loop_from": self.loop_from,
        }


@dataclass
class Exploration:
    """What an exploration found and how far it went."""

    distinct_states: int = 0
    transitions: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    complete: bool = False  # every reachable state was visited
    violations: list[Finding] = field(default_factory=list)
    spilled: int = 0  # states the queue wrote to disk
    reduction: str = "off (not implemented: every process, frame and slot is told apart)"

    @property
    def ok(self) -> bool:
        """Nothing violated in the states visited (see ``complete`` for whether that is all)."""
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        """The summary as one JSON object."""
        return {
            "ok": self.ok,
            "complete": self.complete,
            "distinct_states": self.distinct_states,
            "transitions": self.transitions,
            "max_depth": self.max_depth,
            "seconds": round(self.seconds, 3),
            "reduction": self.reduction,
            "spilled_states": self.spilled,
            "violations": [f.to_json() for f in self.violations],
        }


@dataclass(frozen=True)
class Bounds:
    """What a bounded search (:meth:`Explorer.shortest_from`) looks for, and how far."""

    wanted: str  # the property sought; a violation of any other ends only its branch
    max_depth: int  # no violation more steps from the start than this is sought
    deadline: float  # on time.monotonic()'s clock
    # The enabled choices taken in a state (given the state); None: every one.
    select: Callable[[Checker, list[Choice]], list[Choice]] | None = None
    # States sought instead of a violation, by fingerprint (``wanted`` is then REACHED):
    # the search ends at the first of them it reaches.
    reach: frozenset[bytes] = frozenset()


@dataclass(frozen=True)
class Tick:
    """Progress of a running exploration, for a progress line."""

    distinct_states: int
    transitions: int
    depth: int
    queue: int
    seconds: float


class Graph:
    """The explored state graph, compactly: per state its parent, the choice that reached
    it and its depth; per transition its ends, its choice and whether it retired."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.parent = array("q")
        self.via = array("l")  # index into self.choices
        self.depth = array("l")
        self.live = bytearray()  # whether the state has live processes
        self.enabled: list[int] = []  # index into self.choice_sets
        self.choices: list[Choice] = []
        self.choice_ids: dict[Choice, int] = {}
        self.choice_sets: list[frozenset[int]] = []
        self.choice_set_ids: dict[frozenset[int], int] = {}
        self.source = array("q")
        self.target = array("q")
        self.edge_choice = array("l")
        self.retired = bytearray()

    def choice_id(self, choice: Choice) -> int:
        """The interned number of ``choice``."""
        found = self.choice_ids.get(choice)
        if found is None:
            found = self.choice_ids[choice] = len(self.choices)
            self.choices.append(choice)
        return found

    def add_state(self, key: bytes, parent: int, choice: int, depth: int, live: bool) -> int:
        """Record a newly seen state; its number."""
        number = len(self.parent)
        self.index[key] = number
        self.parent.append(parent)
        self.via.append(choice)
        self.depth.append(depth)
        self.live.append(live)
        self.enabled.append(-1)
        return number

    def set_enabled(self, state: int, choices: Sequence[Choice]) -> None:
        """Record the choices enabled in ``state``."""
        ids = frozenset(self.choice_id(c) for c in choices)
        found = self.choice_set_ids.get(ids)
        if found is None:
            found = self.choice_set_ids[ids] = len(self.choice_sets)
            self.choice_sets.append(ids)
        self.enabled[state] = found

    def add_edge(self, source: int, target: int, choice: int, retired: bool) -> None:
        """Record one transition."""
        self.source.append(source)
        self.target.append(target)
        self.edge_choice.append(choice)
        self.retired.append(retired)

    def path(self, state: int) -> list[Choice]:
        """The choices from the initial state to ``state`` (a shortest way there)."""
        steps: list[Choice] = []
        while self.parent[state] != NO_PARENT:
            steps.append(self.choices[self.via[state]])
            state = self.parent[state]
        steps.reverse()
        return steps

    def bytes_per_state(self) -> float:
        """Memory the graph keeps per state (digests, index, arrays), in bytes."""
        states = max(1, len(self.parent))
        per_key = 16 + 33 + 8 + 28  # digest payload, bytes header, dict slot, int (approximate)
        arrays = sum(a.itemsize * len(a) for a in (self.parent, self.via, self.depth))
        edges = sum(a.itemsize * len(a) for a in (self.source, self.target, self.edge_choice))
        return per_key + (arrays + edges + len(self.retired) + len(self.live)) / states


class Explorer:
    """Breadth-first search over a configuration's choices, checking everything."""

    def __init__(
        self,
        config: CheckConfig,
        factory: KernelFactory,
        *,
        max_states: int | None = None,
        tick: Callable[[Tick], None] = lambda _: None,
        tick_seconds: float = 0.5,
        keep: int = KEEP_IN_MEMORY,
        bounds: Bounds | None = None,
    ) -> None:
        self.config = config
        self.bounds = bounds
        self.keep = keep
        self.depth = 0
        self.factory = factory
        self.max_states = max_states
        self.tick = tick
        self.tick_seconds = tick_seconds
        self.graph = Graph()
        self.result = Exploration()
        self.copy_checks = 0

    def run(self) -> Exploration:
        """Explore until every reachable state is seen, a safety property fails, or the
        state limit is reached; then look for progress violations if the graph is whole."""
        began = time.perf_counter()
        safety = self._search(began)
        if safety is not None:
            self.result.violations.append(safety)
        elif self.result.complete:
            self.result.violations += progress_findings(self.graph)
        self.result.seconds = time.perf_counter() - began
        self.result.distinct_states = len(self.graph.parent)
        self.result.max_depth = max(self.graph.depth, default=0)
        return self.result

    def shortest_from(self, first: Checker) -> list[Choice] | None:
        """The fewest choices from ``first`` (a state a run reached; it is stepped, so
        pass a copy) that violate the property :attr:`bounds` seeks (or, with
        :attr:`Bounds.reach`, that lead to one of those states), breadth first within the
        bounds; None if there are none within them."""
        assert self.bounds is not None
        found = self._search_from(first, time.perf_counter())
        self.result.distinct_states = len(self.graph.parent)
        if found is None or not self._sought(found):
            return None
        return found.choices

    # -- the search -------------------------------------------------------------------

    def _search(self, began: float) -> Finding | None:
        try:
            first = start(self.config, self.factory)
        except KernelFailed as failure:
            return Finding(failure.violation(), [])
        violation = first.check_state()
        if violation is not None:
            return Finding(violation, [])
        return self._search_from(first, began)

    def _search_from(self, first: Checker, began: float) -> Finding | None:
        graph = self.graph
        try:
            key = first.fingerprint()
            same = first.copy().fingerprint() == key
        except KernelFailed as failure:
            return Finding(failure.violation(), [], replays=False)
        if not same:
            why = "fingerprint(): a copy of the booted kernel fingerprints differently from it"
            return Finding(Violation("interface_error", why), [], replays=False)
        root = graph.add_state(key, NO_PARENT, -1, 0, bool(first.observed.live))
        frontier: Frontier[tuple[int, Checker]] = Frontier(self.keep)
        frontier.append((root, first))
        try:
            return self._drain(frontier, began)
        finally:
            self.result.spilled = frontier.spilled
            frontier.close()

    def _drain(self, frontier: Frontier[tuple[int, Checker]], began: float) -> Finding | None:
        graph = self.graph
        last_tick = began
        while frontier:
            number, checker = frontier.popleft()
            self.depth = graph.depth[number]
            if self._beyond_bounds(number):
                return None  # breadth first: every state still queued is as deep or deeper
            found = self._expand(number, checker, frontier)
            if found is not None:
                return found
            now = time.perf_counter()
            if now - last_tick >= self.tick_seconds:
                last_tick = now
                self.tick(self._tick(frontier, now - began))
            if self.max_states is not None and len(graph.parent) >= self.max_states:
                return None
        self.result.complete = True
        self.tick(self._tick(frontier, time.perf_counter() - began))
        return None

    def _tick(self, frontier: Frontier[tuple[int, Checker]], seconds: float) -> Tick:
        return Tick(
            len(self.graph.parent), self.result.transitions, self.depth, len(frontier), seconds
        )

    def _beyond_bounds(self, number: int) -> bool:
        """Whether a bounded search stops before expanding state ``number``."""
        bounds = self.bounds
        return bounds is not None and (
            self.graph.depth[number] >= bounds.max_depth or time.monotonic() >= bounds.deadline
        )

    def _sought(self, finding: Finding) -> bool:
        """Whether ``finding`` ends the search: any does, unless the search is bounded to
        one property (then only a replayable violation of that one does)."""
        bounds = self.bounds
        return bounds is None or (finding.replays and finding.violation.property == bounds.wanted)

    def _expand(
        self, number: int, checker: Checker, frontier: Frontier[tuple[int, Checker]]
    ) -> Finding | None:
        graph = self.graph
        try:
            enabled = checker.choices()
        except KernelFailed as failure:
            return Finding(failure.violation(), graph.path(number))
        graph.set_enabled(number, enabled)
        select = self.bounds.select if self.bounds is not None else None
        taken = enabled if select is None else select(checker, enabled)
        depth = graph.depth[number] + 1
        before = self._watch_copies(checker, taken)
        for position, choice in enumerate(taken):
            if before is not None and position == len(taken) - 1:
                found = self._copies_left_alone(checker, before)
                if found is not None:
                    return Finding(found, graph.path(number), replays=False)
            try:
                # The last choice may take the state itself: nothing else needs it.
                child = checker if position == len(taken) - 1 else checker.copy()
            except KernelFailed as failure:
                return Finding(failure.violation(), graph.path(number), replays=False)
            record, violation = child.step(choice, enabled)
            self.result.transitions += 1
            choice_id = graph.choice_id(choice)
            if violation is not None:
                finding = Finding(violation, [*graph.path(number), choice])
                if self._sought(finding):
                    return finding
                continue  # a bounded search seeks another property: this branch ends here
            try:
                key = child.fingerprint()
            except KernelFailed as failure:
                return Finding(failure.violation(), [*graph.path(number), choice], replays=False)
            if self.bounds is not None and key in self.bounds.reach:
                reached = Violation(REACHED, "a state the search seeks")
                return Finding(reached, [*graph.path(number), choice])
            target = graph.index.get(key)
            if target is None:
                target = graph.add_state(key, number, choice_id, depth, bool(child.observed.live))
                frontier.append((target, child))
            retired = record.result is not None and record.result.retired
            graph.add_edge(number, target, choice_id, retired)
        return None

    def _watch_copies(self, checker: Checker, enabled: Sequence[Choice]) -> bytes | None:
        """The fingerprint of a branching state, for the first COPY_CHECKS of them: its
        copies step before it does, and must leave it as it was."""
        if len(enabled) < 2 or self.copy_checks >= COPY_CHECKS:
            return None
        self.copy_checks += 1
        try:
            return checker.fingerprint()
        except KernelFailed:
            return None  # reported when the state's successors are fingerprinted

    @staticmethod
    def _copies_left_alone(checker: Checker, before: bytes) -> Violation | None:
        """An interface error if stepping copies of ``checker`` changed it."""
        try:
            after = checker.fingerprint()
        except KernelFailed as failure:
            return failure.violation()
        if after == before:
            return None
        return Violation(
            "interface_error",
            "copy(): a copy shares state with its original: stepping copies of a state "
            "changed the original's fingerprint (copy every mutable attribute)",
        )

    # -- progress on the whole graph ------------------------------------------------------


def progress_findings(graph: Graph) -> list[Finding]:
    """The progress violations of a complete state graph: the first deadlock, else the
    shortest fair cycle that retires nothing (as a lasso); none if progress holds."""
    for state in range(len(graph.parent)):
        enabled = graph.choice_sets[graph.enabled[state]]
        if graph.live[state] and not any(graph.choices[c][0] in FAIR_KINDS for c in enabled):
            violation = Violation(
                "progress",
                "processes are live but nothing can happen (deadlock)",
                (("state", state),),
            )
            return [Finding(violation, graph.path(state), deadlock=True)]
    lasso = non_progress_lasso(graph)
    if lasso is None:
        return []
    prefix, loop = lasso
    violation = Violation(
        "progress",
        f"a fair cycle of {len(loop)} steps in which no instruction retires",
        (("loop_steps", len(loop)),),
    )
    return [Finding(violation, prefix + loop, loop_from=len(prefix))]


def explore(
    config: CheckConfig,
    factory: KernelFactory,
    implementation: str,
    trace_dir: Path | None,
    *,
    max_states: int | None = None,
    tick: Callable[[Tick], None] = lambda _: None,
    name: str = "explore",
    workers: int = 1,
    keep: int = KEEP_IN_MEMORY,
) -> Exploration:
    """Explore ``config`` with the kernel ``factory`` builds, in ``workers`` processes;
    write each violation's trace under ``trace_dir`` (when given), confirmed by re-running
    it first."""
    if workers > 1:
        from pagingcheck.checks.sharded import explore_sharded

        result, _ = explore_sharded(config, factory, workers, max_states=max_states, tick=tick)
    else:
        result = Explorer(config, factory, max_states=max_states, tick=tick, keep=keep).run()
    for finding in result.violations:
        if not finding.replays:
            continue  # a replay never copies or fingerprints: there is no trace to write
        try:
            trace = confirmed_trace(config, factory, implementation, finding)
        except NotReplayed as gone:
            if implementation.startswith("pagingcheck."):
                raise InternalError(str(gone)) from None  # our kernels are deterministic
            finding.replays = False
            finding.violation = replace(
                finding.violation,
                message=f"{finding.violation.message}; {gone.seen}: the kernel depends on "
                "something its copy() and fingerprint() do not hold (module state, time, "
                "randomness), so no trace of it replays",
            )
            continue
        if trace_dir is not None:
            stem = f"{name}-{finding.violation.property}"
            finding.trace = str(viewer.write_trace(trace, trace_dir, stem, factory))
    return result


#: How many more user frames than configured ``least_frames`` tries at most.
MORE_FRAMES = 16


def least_frames(
    config: CheckConfig,
    factory: KernelFactory,
    *,
    max_states: int | None = None,
    tick: Callable[[int], None] = lambda _: None,
    more: int = 0,
) -> tuple[int | None, Exploration | None]:
    """The fewest user frames, from ``config``'s up, on which the exploration completes
    with no violation at all, and that exploration; (None, None) if none does within
    :data:`MORE_FRAMES` more frames (or the search stops short at ``max_states``). It
    starts ``more`` frames above the configured count (1 when that one is known to fail).
    ``tick(frames)`` says which count is being explored. Meant for a configuration that
    thrashes: it says how much memory the workload needs to make progress."""
    first = config.hardware.user_frames
    for frames in range(first + more, first + MORE_FRAMES + 1):
        tick(frames)
        hardware = config.hardware.replace(user_frames=frames)
        run = replace(config, hardware=hardware)
        result = Explorer(run, factory, max_states=max_states).run()
        if not result.complete:
            return None, None
        if not result.violations:
            return frames, result
    return None, None


class NotReplayed(Exception):
    """Re-running a finding's choices did not show its violation again."""

    def __init__(self, message: str, seen: str) -> None:
        super().__init__(message)
        self.seen = seen


def confirmed_trace(
    config: CheckConfig, factory: KernelFactory, implementation: str, finding: Finding
) -> traces.Trace:
    """The trace of ``finding``, after checking that running its choices shows it again;
    NotReplayed if it does not (pagingcheck's bug for its own kernels, which are
    deterministic; for any other, the kernel keeps state its copy does not)."""
    run = finding_config(config, finding)
    fair_from = _fair_from(finding)
    result: RunResult = run_choices(run, factory, finding.choices, fair_from=fair_from)
    if result.violation is None or result.violation.property != finding.violation.property:
        seen = "nothing" if result.violation is None else result.violation.explain()
        raise NotReplayed(
            f"the explorer found {finding.violation.explain()} after {len(finding.choices)} "
            f"steps, but re-running those steps shows {seen}",
            f"re-running its {len(finding.choices)} steps showed {seen}",
        )
    return traces.from_run(run, implementation, finding.choices, result, kernel_stderr(factory))


def finding_config(config: CheckConfig, finding: Finding) -> CheckConfig:
    """``config``, with a lasso's loop length as the progress bound (see the module notes)."""
    if finding.loop_from is None:
        return config
    loop = len(finding.choices) - finding.loop_from
    return replace(config, workload=replace(config.workload, progress_bound=loop))


def _fair_from(finding: Finding) -> int | None:
    if finding.deadlock:
        return len(finding.choices)
    return finding.loop_from


# -- non-progress cycles ----------------------------------------------------------------------


def non_progress_lasso(graph: Graph) -> tuple[list[Choice], list[Choice]] | None:
    """A reachable fair cycle of live states that retires nothing, as (prefix, loop) choices;
    None if there is none. The prefix is a shortest path to the cycle's first state."""
    successors: dict[int, list[tuple[int, int]]] = {}
    for edge in range(len(graph.source)):
        source, target = graph.source[edge], graph.target[edge]
        if graph.retired[edge] or not graph.live[source] or not graph.live[target]:
            continue
        successors.setdefault(source, []).append((graph.edge_choice[edge], target))
    best: tuple[list[Choice], list[Choice]] | None = None
    for component in strongly_connected(successors):
        members = set(component)
        inner = [(s, c, t) for s in component for c, t in successors.get(s, ()) if t in members]
        if not inner:
            continue  # a single state without a self-loop
        owed = _owed_choices(graph, component)
        taken = {c for _, c, _ in inner}
        if not owed <= taken:
            continue  # a fair scheduler leaves this component
        entry = min(component, key=lambda s: (graph.depth[s], s))
        loop = _covering_loop(entry, inner, owed)
        prefix = graph.path(entry)
        candidate = (prefix, [graph.choices[c] for c in loop])
        if best is None or len(candidate[0]) + len(candidate[1]) < len(best[0]) + len(best[1]):
            best = candidate
    return best


def _owed_choices(graph: Graph, component: Sequence[int]) -> set[int]:
    """The fair-kind choices enabled in every state of ``component``."""
    common: set[int] | None = None
    for state in component:
        enabled = graph.choice_sets[graph.enabled[state]]
        common = set(enabled) if common is None else common & enabled
    return {c for c in common or () if graph.choices[c][0] in FAIR_KINDS}


def _covering_loop(entry: int, inner: list[tuple[int, int, int]], owed: set[int]) -> list[int]:
    """Choices of a cycle from ``entry`` back to it, inside the component, taking every
    owed choice at least once."""
    edges: dict[int, list[tuple[int, int]]] = {}
    for source, choice, target in inner:
        edges.setdefault(source, []).append((choice, target))
    loop: list[int] = []
    here = entry
    for choice in sorted(owed):
        # Walk to a state where ``choice`` stays inside the component, then take it.
        path, here = _walk(edges, here, _offers(edges, choice))
        loop += path
        loop.append(choice)
        here = next(t for x, t in edges[here] if x == choice)
    if here != entry or not loop:
        path, here = _walk(edges, here, lambda s: s == entry, at_least_one=not loop)
        loop += path
    return loop


def _offers(edges: dict[int, list[tuple[int, int]]], choice: int) -> Callable[[int], bool]:
    """Whether a state has ``choice`` among its edges."""
    return lambda state: any(taken == choice for taken, _ in edges.get(state, ()))


def _walk(
    edges: dict[int, list[tuple[int, int]]],
    source: int,
    goal: Callable[[int], bool],
    at_least_one: bool = False,
) -> tuple[list[int], int]:
    """Choices of a shortest path from ``source`` to a state satisfying ``goal`` (at least
    one step when ``at_least_one``), and that state."""
    if goal(source) and not at_least_one:
        return [], source
    back: dict[int, tuple[int, int]] = {}
    queue = deque([source])
    seen = {source}
    while queue:
        state = queue.popleft()
        for choice, target in edges.get(state, ()):
            if target in seen and not (target == source and at_least_one):
                continue
            back.setdefault(target, (state, choice))
            if goal(target):
                path: list[int] = []
                at = target
                while True:
                    previous, taken = back[at]
                    path.append(taken)
                    at = previous
                    if at == source:
                        break
                path.reverse()
                return path, target
            seen.add(target)
            queue.append(target)
    raise InternalError("no path inside a strongly connected component")


def strongly_connected(successors: dict[int, list[tuple[int, int]]]) -> Iterator[list[int]]:
    """The strongly connected components of a graph given by its successor lists
    (Tarjan's algorithm, iterative, so deep graphs do not exhaust Python's stack)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    counter = 0
    for root in successors:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, position = work[-1]
            out = successors.get(node, ())
            if position < len(out):
                work[-1] = (node, position + 1)
                target = out[position][1]
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                yield component
