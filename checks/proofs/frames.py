"""z3 proofs of the kernel's frame bookkeeping (:mod:`~pagingcheck.impl.lib.framestate`).

Each obligation runs a transition of :mod:`pagingcheck.impl.lib.framestate`,
the very function the reference kernel calls, on a state of z3 arrays, and
asks whether it can break an invariant:

* *inductive step*: every invariant holding before, and the transition's
  guard, imply the invariant after; frames, users and reference positions
  are unbounded integers, so the proof covers any number of each;
* *initial state*: the empty state (every frame free, nothing mapped)
  satisfies every invariant;
* *non-vacuity*: the invariants and the guard can hold together, so a step
  is not proved only because it can never be taken.

A verdict is three-valued: ``proved``, ``refuted`` (with z3's model) or
``unknown`` (with z3's reason and the time spent); unknown is never a pass.
Every inductive obligation is also shown to be *refutable*: some seeded
mutant of its transition (:data:`MUTATIONS`) makes z3 find a counterexample,
so the proof is about code that can fail.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import z3

from pagingcheck.checks.proofs.core import TIMEOUT_MS, Outcome, solve
from pagingcheck.impl.lib import framestate as fs

INT = z3.IntSort()
BOOL = z3.BoolSort()


def symbolic_state(tag: str = "") -> fs.FrameState:
    """A frame state of unconstrained z3 arrays (frames, users, positions are Ints)."""
    return fs.FrameState(
        status=z3.Array(f"status{tag}", INT, INT),
        refcount=z3.Array(f"refcount{tag}", INT, INT),
        transfer=z3.Array(f"transfer{tag}", INT, INT),
        orphan=z3.Array(f"orphan{tag}", INT, BOOL),
        free=z3.Array(f"free{tag}", INT, BOOL),
        mapped=z3.Array(f"mapped{tag}", INT, INT),
        index=z3.Array(f"index{tag}", INT, INT),
        owner=z3.Array(f"owner{tag}", INT, z3.ArraySort(INT, INT)),
    )


def as_arrays(state: fs.FrameState) -> fs.FrameState:
    """A concrete state (integer users) as z3 arrays: each table's entries stored over a
    default. A frame the state lacks reads as free (the quantified invariants speak of
    every integer, the runtime ones of the frames a state has); other defaults read as
    the concrete state reads a missing key."""

    def array(table: dict[Any, Any], default: Any, sort: Any) -> Any:
        result = z3.K(INT, default) if sort is None else z3.K(INT, z3.K(INT, default))
        for key, value in table.items():
            if sort is None:
                result = z3.Store(result, key, value)
            else:
                row = z3.K(INT, default)
                for position, user in value.items():
                    row = z3.Store(row, position, user)
                result = z3.Store(result, key, row)
        return result

    return fs.FrameState(
        status=array(state.status, z3.IntVal(0), None),
        refcount=array(state.refcount, z3.IntVal(0), None),
        transfer=array(state.transfer, z3.IntVal(0), None),
        orphan=array(state.orphan, z3.BoolVal(False), None),
        free=array(state.free, z3.BoolVal(True), None),
        mapped=array(state.mapped, z3.IntVal(fs.UNMAPPED), None),
        index=array(state.index, z3.IntVal(-1), None),
        owner=array(state.owner, z3.IntVal(fs.NO_USER), "row"),
    )


def for_all(invariant: fs.Invariant, state: fs.FrameState) -> Any:
    """``invariant`` quantified over every key: any number of frames, users, positions."""
    keys = [z3.Int(f"q_{kind}") for kind in invariant.kinds]
    return z3.ForAll(keys, invariant.holds(state, *keys))


def all_invariants(state: fs.FrameState) -> Any:
    """Every invariant of the frame state, quantified."""
    return z3.And(*(for_all(invariant, state) for invariant in fs.INVARIANTS))


Transition = Callable[..., fs.Step]


def arguments(transition_name: str) -> list[z3.ExprRef]:
    """Symbolic arguments of a transition: a frame, then its users."""
    _, users = fs.TRANSITIONS[transition_name]
    return [z3.Int("pfn"), *(z3.Int(f"user{i}") for i in range(users))]


def step_obligation(
    transition_name: str, invariant: fs.Invariant, transition: Transition | None = None
) -> Outcome:
    """Invariants and guard before imply ``invariant`` after ``transition`` (by default
    the real one of that name)."""
    op = transition or fs.TRANSITIONS[transition_name][0]
    before = symbolic_state()
    guard, after = op(before, *arguments(transition_name))
    witness = [z3.Int(f"w_{kind}") for kind in invariant.kinds]
    facts = [all_invariants(before), guard, z3.Not(invariant.holds(after, *witness))]
    return solve(f"{transition_name} keeps {invariant.name}", facts, want_sat=False)


def enabled_obligation(transition_name: str) -> Outcome:
    """The transition can be taken: its guard holds in a state reached from the empty one
    by the transitions themselves (so the invariants hold there too, and no obligation is
    proved only because its step is impossible)."""
    began = time.perf_counter()
    path = reachable_witness(transition_name)
    seconds = time.perf_counter() - began
    name = f"{transition_name} can be taken"
    if path is None:
        return Outcome(
            name, "refuted", seconds, f"no state within {WITNESS_DEPTH} steps enables it"
        )
    steps = ", ".join(f"{op}{args}" for op, args in path) or "the empty state"
    return Outcome(name, "proved", seconds, f"after {steps}")


#: Frames, users and depth of the search for a state enabling each transition.
WITNESS_FRAMES, WITNESS_USERS, WITNESS_DEPTH = range(2), range(3), 8


def reachable_witness(transition_name: str) -> list[tuple[str, tuple[int, ...]]] | None:
    """The shortest path of transitions from the empty state to one where
    ``transition_name`` is enabled, over a few frames and users; None if none is found."""
    start = fs.empty(WITNESS_FRAMES)
    frontier: list[tuple[fs.FrameState, list[tuple[str, tuple[int, ...]]]]] = [(start, [])]
    seen = {_key(start)}
    for _ in range(WITNESS_DEPTH + 1):
        following = []
        for state, path in frontier:
            for name, args, guard, after in _steps(state):
                if not guard:
                    continue
                if name == transition_name:
                    return path
                if _key(after) not in seen:
                    seen.add(_key(after))
                    following.append((after, [*path, (name, args)]))
        frontier = following
    return None


def _steps(state: fs.FrameState) -> Iterator[tuple[str, tuple[int, ...], Any, fs.FrameState]]:
    for name, (op, users) in fs.TRANSITIONS.items():
        for pfn in WITNESS_FRAMES:
            for chosen in itertools.product(WITNESS_USERS, repeat=users):
                guard, after = op(state, pfn, *chosen)
                yield name, (pfn, *chosen), guard, after


def _key(state: fs.FrameState) -> object:
    return repr(state)


def initial_obligation(invariant: fs.Invariant) -> Outcome:
    """The empty state (every frame free, nothing mapped) satisfies ``invariant``."""
    empty = fs.FrameState(
        status=z3.K(INT, z3.IntVal(0)),
        refcount=z3.K(INT, z3.IntVal(0)),
        transfer=z3.K(INT, z3.IntVal(0)),
        orphan=z3.K(INT, z3.BoolVal(False)),
        free=z3.K(INT, z3.BoolVal(True)),
        mapped=z3.K(INT, z3.IntVal(fs.UNMAPPED)),
        index=z3.K(INT, z3.IntVal(0)),
        owner=z3.K(INT, z3.K(INT, z3.IntVal(0))),
    )
    witness = [z3.Int(f"w_{kind}") for kind in invariant.kinds]
    facts = [z3.Not(invariant.holds(empty, *witness))]
    return solve(f"initial state satisfies {invariant.name}", facts, want_sat=False)


# -- seeded mutants: each inductive obligation must be refutable ---------------------------


Edit = Callable[[fs.FrameState, fs.FrameState, Any, tuple[Any, ...]], fs.Step]


def _mutation(edit: Edit) -> Callable[[Transition], Transition]:
    """A seeded bug: ``edit(before, after, guard, args)`` changes what a transition does."""

    def mutate(op: Transition) -> Transition:
        def mutant(state: fs.FrameState, *args: Any) -> fs.Step:
            guard, after = op(state, *args)
            return edit(state, after, guard, args)

        return mutant

    return mutate


#: Seeded bugs a kernel's bookkeeping could have, each applicable to any transition:
#: a check forgotten, the free list or reverse map not updated, a count off by one or
#: not changed, a state change forgotten, a frame freed while still in use.
MUTATIONS: dict[str, Callable[[Transition], Transition]] = {
    "guard dropped": _mutation(lambda s, a, g, args: (z3.BoolVal(True), a)),
    "free list not updated": _mutation(lambda s, a, g, args: (g, replace(a, free=s.free))),
    "reverse map not updated": _mutation(
        lambda s, a, g, args: (g, replace(a, mapped=s.mapped, index=s.index, owner=s.owner))
    ),
    "count off by one": _mutation(
        lambda s, a, g, args: (
            g,
            replace(a, refcount=z3.Store(a.refcount, args[0], a.refcount[args[0]] + 1)),
        )
    ),
    "status not updated": _mutation(lambda s, a, g, args: (g, replace(a, status=s.status))),
    "count not updated": _mutation(lambda s, a, g, args: (g, replace(a, refcount=s.refcount))),
    "frame put on the free list": _mutation(
        lambda s, a, g, args: (g, replace(a, free=z3.Store(a.free, args[0], z3.BoolVal(True))))
    ),
}


#: The bounded domain counterexamples are searched in: frames, users, reference positions.
BOUND_FRAMES, BOUND_USERS = 2, 3


def bounded_counterexample(
    transition_name: str, invariant: fs.Invariant, transition: Transition | None = None
) -> tuple[fs.FrameState, tuple[int, ...], fs.FrameState] | None:
    """A concrete state of a few frames and users where every invariant holds, the
    transition's guard holds, and ``invariant`` fails after it; None if there is none.

    Quantifiers become conjunctions over the bounded domain, and every table value is
    kept inside it, so a model is a whole state (every frame and user outside the domain
    free and unmapped) and a real counterexample, found quickly; see :func:`concretize`.
    """
    op = transition or fs.TRANSITIONS[transition_name][0]
    before = symbolic_state()
    args = arguments(transition_name)
    guard, after = op(before, *args)
    frames, users = range(BOUND_FRAMES), range(BOUND_USERS)
    positions = range(BOUND_USERS)
    facts = [guard, *_closed(before, frames, users)]
    facts += [
        z3.And(a >= 0, a < (BOUND_FRAMES if i == 0 else BOUND_USERS)) for i, a in enumerate(args)
    ]
    for inv in fs.INVARIANTS:
        facts += [inv.holds(before, *case) for case in _cases(inv, frames, users, positions)]
    broken = [
        z3.Not(invariant.holds(after, *case))
        for case in _cases(invariant, frames, users, positions)
    ]
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*facts, z3.Or(*broken))
    if solver.check() != z3.sat:
        return None
    model = solver.model()
    values = tuple(model.eval(a, model_completion=True).as_long() for a in args)
    return concretize(model, before, frames, users), values, concretize(model, after, frames, users)


def _closed(state: fs.FrameState, frames: range, users: range) -> list[Any]:
    """Every value the state's tables hold for the domain lies in the domain."""
    facts = []
    for pfn in frames:
        facts += [z3.And(state.refcount[pfn] >= 0, state.refcount[pfn] <= len(users))]
        for position in users:
            holder = state.holder(pfn, position)
            facts.append(z3.And(holder >= 0, holder < len(users)))
    for user in users:
        target = state.maps(user)
        facts.append(z3.Or(target == fs.UNMAPPED, z3.And(target >= 0, target < len(frames))))
        facts.append(z3.And(state.index[user] >= 0, state.index[user] < len(users)))
    return facts


def _cases(
    invariant: fs.Invariant, frames: range, users: range, positions: range
) -> list[tuple[int, ...]]:
    domains = {"frame": frames, "user": users, "position": positions}
    return list(itertools.product(*(domains[kind] for kind in invariant.kinds)))


def concretize(
    model: z3.ModelRef, state: fs.FrameState, frames: range, users: range
) -> fs.FrameState:
    """The concrete frame state a model gives ``state`` on the bounded domain."""

    def value(term: Any) -> Any:
        result = model.eval(term, model_completion=True)
        return z3.is_true(result) if z3.is_bool(result) else result.as_long()

    mapped = {user: value(state.maps(user)) for user in users}
    return fs.FrameState(
        status={pfn: value(state.status[pfn]) for pfn in frames},
        refcount={pfn: value(state.refcount[pfn]) for pfn in frames},
        transfer={pfn: value(state.transfer[pfn]) for pfn in frames},
        orphan={pfn: value(state.orphan[pfn]) for pfn in frames},
        free={pfn: value(state.free[pfn]) for pfn in frames},
        mapped={user: pfn for user, pfn in mapped.items() if pfn != fs.UNMAPPED},
        index={user: value(state.index[user]) for user in users if mapped[user] != fs.UNMAPPED},
        owner={
            pfn: {i: value(state.holder(pfn, i)) for i in range(value(state.refcount[pfn]))}
            for pfn in frames
        },
    )


def refuting_mutant(transition_name: str, invariant: fs.Invariant) -> str | None:
    """The first mutation of the transition with a bounded counterexample to the
    obligation (checked again on the concrete state, by the runtime predicates)."""
    op, _ = fs.TRANSITIONS[transition_name]
    for name, mutate in MUTATIONS.items():
        found = bounded_counterexample(transition_name, invariant, mutate(op))
        if found is not None:
            before, _, after = found
            if not fs.violations(before) and any(
                v.startswith(invariant.name) for v in fs.violations(after)
            ):
                return name
    return None


# -- the whole suite ------------------------------------------------------------------------


def step_verdict(transition_name: str, invariant: fs.Invariant) -> Outcome:
    """The inductive step, proved and shown refutable: a proof that no seeded mutant can
    break would say nothing, so it is ``unknown`` then."""
    outcome = step_obligation(transition_name, invariant)
    if outcome.verdict != "proved":
        return outcome
    began = time.perf_counter()
    mutant = refuting_mutant(transition_name, invariant)
    seconds = outcome.seconds + time.perf_counter() - began
    if mutant is None:
        return Outcome(outcome.name, "unknown", seconds, "no seeded mutant refutes it")
    return Outcome(outcome.name, "proved", seconds, f"refuted when {mutant}")


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every frame-bookkeeping obligation, lazily (so progress shows as each is decided)."""
    for invariant in fs.INVARIANTS:
        yield functools.partial(initial_obligation, invariant)
    for name in fs.TRANSITIONS:
        yield functools.partial(enabled_obligation, name)
        for invariant in fs.INVARIANTS:
            yield functools.partial(step_verdict, name, invariant)
