"""What every proof module shares: three-valued verdicts and one way to ask z3.

A verdict is ``proved``, ``refuted`` (with z3's model) or ``unknown`` (with
z3's reason and the time spent); unknown is never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import z3

Verdict = Literal["proved", "refuted", "unknown"]

#: Milliseconds z3 may spend on one obligation before its verdict is unknown.
TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class Outcome:
    """What z3 said about one obligation."""

    name: str
    verdict: Verdict
    seconds: float
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The obligation as ``prove --json`` prints it."""
        return {
            "name": self.name,
            "ok": self.verdict == "proved",
            "verdict": self.verdict,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def solve(name: str, facts: list[Any], want_sat: bool) -> Outcome:
    """Check ``facts``: proved when their satisfiability is what we want; refuted (with
    z3's model) or unknown (with z3's reason) otherwise."""
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*facts)
    began = time.perf_counter()
    result = solver.check()
    seconds = time.perf_counter() - began
    if result == z3.unknown:
        return Outcome(name, "unknown", seconds, f"z3: {solver.reason_unknown()}")
    if (result == z3.sat) == want_sat:
        return Outcome(name, "proved", seconds)
    detail = str(solver.model()) if result == z3.sat else "no state satisfies it"
    return Outcome(name, "refuted", seconds, " ".join(detail.split())[:2000])


State = TypeVar("State")
#: The transitions that led to a state: each one's name and concrete arguments.
Path = list[tuple[str, tuple[Any, ...]]]
#: A state's enabled-or-not steps: (name, arguments, guard, state after).
Successors = Callable[[State], Iterable[tuple[str, tuple[Any, ...], Any, State]]]


def breadth_first(
    start: State,
    successors: Successors[State],
    key: Callable[[State], Hashable] = repr,
    depth: int | None = None,
) -> Iterator[tuple[State, Path]]:
    """Every state the enabled steps reach from ``start`` (within ``depth`` steps, if
    given), each once by ``key``, in breadth-first order with a shortest path to it."""
    seen = {key(start)}
    frontier: list[tuple[State, Path]] = [(start, [])]
    level = 0
    while frontier and (depth is None or level <= depth):
        following = []
        for state, path in frontier:
            yield state, path
            for name, args, guard, after in successors(state):
                if guard and key(after) not in seen:
                    seen.add(key(after))
                    following.append((after, [*path, (name, args)]))
        frontier = following
        level += 1


def enabling_path(
    start: State, successors: Successors[State], transition_name: str, depth: int
) -> Path | None:
    """The shortest path from ``start`` to a state where ``transition_name`` is enabled;
    None if there is none within ``depth`` steps."""
    for state, path in breadth_first(start, successors, depth=depth):
        if any(guard for name, _, guard, _ in successors(state) if name == transition_name):
            return path
    return None


def witness_outcome(name: str, path: Path | None, seconds: float, depth: int) -> Outcome:
    """The non-vacuity verdict of a transition, from the path that enables it."""
    if path is None:
        return Outcome(name, "refuted", seconds, f"no state within {depth} steps enables it")
    steps = ", ".join(f"{op}{args}" for op, args in path) or "the empty state"
    return Outcome(name, "proved", seconds, f"after {steps}")
