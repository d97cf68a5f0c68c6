"""The explorer on several cores: the visited set and the frontier sharded by fingerprint.

Each worker process owns the states whose digest falls in its shard: it
keeps their digests, parents and transitions, and expands them. Workers
leave each other the states they find in files of a private temporary folder
(one pickle per level and pair of workers), so states travel once and the
master passes only file names and counts. The search
goes level by level (all states of one depth, then the next), so the first
violation found is still one of the fewest steps: at the end of a level every
worker has expanded all of its states of that depth. A successor owned by
another worker travels there as a pickled :class:`Checker`; the owner keeps
it only if it has not seen its digest, so the states counted are exactly
those of a single-process run. Once the graph is complete, the master gathers
it from the workers and looks for deadlocks and fair cycles as the
single-process explorer does.

Workers are forked, so the kernel factory and configuration need not be
picklable; a kernel running contained in a process of its own cannot be
shared by forks and is explored by one process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.explore import (
    NO_PARENT,
    Exploration,
    Finding,
    Graph,
    Tick,
    progress_findings,
)
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import KernelFactory, start
from pagingcheck.checks.system import Choice, KernelFailed
from pagingcheck.model.errors import InternalError, UserError

#: One state offered to its owner: digest, parent digest, choice, depth, live, the checker.
Offer = tuple[bytes, bytes | None, Choice | None, int, bool, Checker]


def owner(digest: bytes, workers: int) -> int:
    """The worker that owns the state with ``digest``."""
    return int.from_bytes(digest[:4], "little") % workers


@dataclass
class Shard:
    """One worker's part of the search."""

    index: int
    workers: int
    folder: Path  # where workers leave each other the states they found
    seen: dict[bytes, tuple[bytes | None, Choice | None, int, bool]] = field(default_factory=dict)
    enabled: dict[bytes, list[Choice]] = field(default_factory=dict)
    edges: list[tuple[bytes, bytes, Choice, bool]] = field(default_factory=list)
    frontier: list[tuple[bytes, Checker]] = field(default_factory=list)
    kept: int = 0  # new states of its own found by the last expansion
    level: int = 0

    def offer(self, offers: list[Offer]) -> int:
        """Keep the offered states not seen before; how many were new."""
        new = 0
        for digest, parent, choice, depth, live, checker in offers:
            if digest in self.seen:
                continue
            self.seen[digest] = (parent, choice, depth, live)
            self.frontier.append((digest, checker))
            new += 1
        return new

    def take(self, paths: list[str]) -> int:
        """Offer the states other workers left in ``paths`` (deleting the files)."""
        new = 0
        for path in map(Path, paths):
            new += self.offer(pickle.loads(path.read_bytes()))
            path.unlink()
        return new

    def leave(self, outgoing: dict[int, list[Offer]]) -> dict[int, str]:
        """Write each other worker's states to a file of its own; the files, by worker.
        One pickle per file, so what the states share (programs, configuration) is
        written once."""
        self.level += 1
        paths: dict[int, str] = {}
        for target, items in outgoing.items():
            path = self.folder / f"{self.level}-{self.index}-{target}.pickle"
            path.write_bytes(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
            paths[target] = str(path)
        return paths

    def expand(self) -> tuple[dict[int, list[Offer]], Any, int]:
        """Expand every state of the frontier: the successors for other workers, the first
        violation (as its parent digest, choice and violation), and transitions taken."""
        outgoing: dict[int, list[Offer]] = {}
        frontier, self.frontier = self.frontier, []
        transitions = self.kept = 0
        for digest, checker in frontier:
            depth = self.seen[digest][2] + 1
            try:
                enabled = checker.choices()
            except KernelFailed as failure:
                return outgoing, (digest, None, failure.violation(), True), transitions
            self.enabled[digest] = enabled
            for position, choice in enumerate(enabled):
                try:
                    child = checker if position == len(enabled) - 1 else checker.copy()
                except KernelFailed as failure:
                    return outgoing, (digest, None, failure.violation(), False), transitions
                record, violation = child.step(choice, enabled)
                transitions += 1
                if violation is not None:
                    return outgoing, (digest, choice, violation, True), transitions
                try:
                    key = child.fingerprint()
                except KernelFailed as failure:
                    return outgoing, (digest, choice, failure.violation(), False), transitions
                retired = record.result is not None and record.result.retired
                self.edges.append((digest, key, choice, retired))
                live = bool(child.observed.live)
                target = owner(key, self.workers)
                if target == self.index:  # its own: no need to pickle it
                    if key not in self.seen:
                        self.seen[key] = (digest, choice, depth, live)
                        self.frontier.append((key, child))
                        self.kept += 1
                    continue
                outgoing.setdefault(target, []).append((key, digest, choice, depth, live, child))
        return outgoing, None, transitions


def _serve(connection: Connection, shard: Shard) -> None:
    """A worker: answer the master's requests until told to stop."""
    while True:
        request, argument = connection.recv()
        try:
            if request == "offer":
                connection.send(("ok", shard.offer(argument)))
            elif request == "expand":
                outgoing, violation, transitions = shard.expand()
                connection.send(("ok", (shard.leave(outgoing), violation, transitions, shard.kept)))
            elif request == "take":
                connection.send(("ok", shard.take(argument)))
            elif request == "parent":
                connection.send(("ok", shard.seen[argument][:2]))
            elif request == "graph":
                connection.send(("ok", (shard.seen, shard.enabled, shard.edges)))
            elif request == "stop":
                connection.close()
                return
        except Exception as error:  # reported to the master as pagingcheck's own failure
            connection.send(("error", f"{type(error).__name__}: {error}"))


class Pool:
    """The worker processes and how to ask them things."""

    def __init__(self, workers: int) -> None:
        try:
            context = multiprocessing.get_context("fork")
        except ValueError:
            raise UserError("--workers above 1 needs fork(), which this platform lacks") from None
        self.folder = Path(tempfile.mkdtemp(prefix="pagingcheck-workers-"))
        self.connections: list[Connection] = []
        self.processes = []
        for index in range(workers):
            mine, theirs = context.Pipe()
            shard = Shard(index, workers, self.folder)
            process = context.Process(target=_serve, args=(theirs, shard))
            process.daemon = True
            process.start()
            theirs.close()
            self.connections.append(mine)
            self.processes.append(process)

    def ask(self, index: int, request: str, argument: Any = None) -> Any:
        """Send one request to a worker and wait for its answer."""
        self.connections[index].send((request, argument))
        return self.answer(index)

    def answer(self, index: int) -> Any:
        """A worker's answer to the request it was sent."""
        try:
            status, value = self.connections[index].recv()
        except EOFError:
            raise InternalError(f"explorer worker {index} ended unexpectedly") from None
        if status == "error":
            raise InternalError(f"explorer worker {index} failed: {value}")
        return value

    def everyone(self, request: str, arguments: list[Any]) -> list[Any]:
        """The same request to every worker at once (each with its own argument)."""
        for connection, argument in zip(self.connections, arguments, strict=True):
            connection.send((request, argument))
        return [self.answer(index) for index in range(len(self.connections))]

    def close(self) -> None:
        """Stop every worker."""
        for connection in self.connections:
            with contextlib.suppress(BrokenPipeError, OSError):
                connection.send(("stop", None))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def explore_sharded(
    config: CheckConfig,
    factory: KernelFactory,
    workers: int,
    *,
    max_states: int | None = None,
    tick: Callable[[Tick], None] = lambda _: None,
) -> tuple[Exploration, Graph | None]:
    """Explore ``config`` with ``workers`` processes; the result, and the whole graph when
    the search completed (for progress and for rebuilding paths)."""
    if hasattr(factory, "host"):
        raise UserError(
            "--workers: a contained kernel runs in one process of its own and cannot be "
            "shared by workers; use --workers 1, or --in-process for a kernel you trust"
        )
    began = time.perf_counter()
    result = Exploration()
    try:
        root = start(config, factory)
        violation = root.check_state()
        key = root.fingerprint()
    except KernelFailed as failure:
        result.violations.append(Finding(failure.violation(), [], replays=False))
        return _finished(result, began), None
    if violation is not None:
        result.violations.append(Finding(violation, []))
        return _finished(result, began), None
    pool = Pool(workers)
    try:
        offers: list[list[Offer]] = [[] for _ in range(workers)]
        offers[owner(key, workers)].append((key, None, None, 0, bool(root.observed.live), root))
        queued = distinct = sum(pool.everyone("offer", offers))
        depth = 0
        while queued:
            expanded = pool.everyone("expand", [None] * workers)
            result.transitions += sum(t for _, _, t, _ in expanded)
            found = sorted(
                (v for _, v, _, _ in expanded if v is not None), key=lambda v: (v[0], repr(v[1]))
            )
            if found:
                parent, choice, violation, replays = found[0]
                path = _path(pool, workers, parent) + ([choice] if choice is not None else [])
                result.violations.append(Finding(violation, path, replays=replays))
                result.max_depth = depth + 1
                return _finished(result, began, distinct), None
            routed: list[list[str]] = [[] for _ in range(workers)]
            for paths, _, _, _ in expanded:
                for target, path in paths.items():
                    routed[target].append(path)
            queued = sum(pool.everyone("take", routed)) + sum(k for _, _, _, k in expanded)
            distinct += queued
            depth += 1 if queued else 0
            tick(Tick(distinct, result.transitions, depth, queued, time.perf_counter() - began))
            if max_states is not None and distinct >= max_states:
                result.max_depth = depth
                return _finished(result, began, distinct), None
        result.complete = True
        result.max_depth = depth
        graph = _gather(pool, workers)
    finally:
        pool.close()
    result.violations += progress_findings(graph)
    return _finished(result, began, distinct), graph


def _finished(result: Exploration, began: float, distinct: int = 0) -> Exploration:
    result.seconds = time.perf_counter() - began
    result.distinct_states = distinct
    return result


def _path(pool: Pool, workers: int, digest: bytes) -> list[Choice]:
    """The choices from the initial state to the state with ``digest``."""
    steps: list[Choice] = []
    at: bytes | None = digest
    while at is not None:
        parent, choice = pool.ask(owner(at, workers), "parent", at)
        if choice is not None:
            steps.append(choice)
        at = parent
    steps.reverse()
    return steps


def _gather(pool: Pool, workers: int) -> Graph:
    """The whole state graph, from every worker's part, numbered by depth then digest."""
    parts = pool.everyone("graph", [None] * workers)
    seen: dict[bytes, tuple[bytes | None, Choice | None, int, bool]] = {}
    enabled: dict[bytes, list[Choice]] = {}
    edges: list[tuple[bytes, bytes, Choice, bool]] = []
    for part_seen, part_enabled, part_edges in parts:
        seen.update(part_seen)
        enabled.update(part_enabled)
        edges += part_edges
    graph = Graph()
    for digest in sorted(seen, key=lambda d: (seen[d][2], d)):
        parent, choice, depth, live = seen[digest]
        number = NO_PARENT if parent is None else graph.index[parent]
        via = -1 if choice is None else graph.choice_id(choice)
        graph.add_state(digest, number, via, depth, live)
    for digest, choices in enabled.items():
        graph.set_enabled(graph.index[digest], choices)
    for source, target, choice, retired in edges:
        graph.add_edge(graph.index[source], graph.index[target], graph.choice_id(choice), retired)
    return graph
