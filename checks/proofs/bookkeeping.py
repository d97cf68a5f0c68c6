"""z3 proofs of the kernel's bookkeeping: frames and swap slots, each as one whole state.

Each obligation runs a transition of :mod:`~pagingcheck.impl.lib.framestate`
or :mod:`~pagingcheck.impl.lib.slotstate`, the very function the reference
kernel calls, on a state of z3 arrays, and asks whether it can break an
invariant:

* *inductive step*: every invariant holding before, and the transition's
  guard, imply the invariant after; frames (or slots), users and reference
  positions are unbounded integers, so the proof covers any number of each;
* *initial state*: the empty state (everything free, nothing held)
  satisfies every invariant;
* *non-vacuity*: the transition can be taken from a state the transitions
  reach, so no step is proved only because it can never happen.

Every inductive obligation is also shown to be *refutable*: some seeded
mutant of its transition (:data:`MUTATIONS`) has a bounded counterexample,
confirmed by the runtime predicates, so the proof is about code that can fail.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import z3

from pagingcheck.checks.proofs.core import (
    TIMEOUT_MS,
    Outcome,
    Path,
    breadth_first,
    enabling_path,
    solve,
    witness_outcome,
)
from pagingcheck.impl.lib import counted, framestate, slotstate
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib import swap as sw
from pagingcheck.impl.lib.counted import NO_USER, NOTHING, Counted, Invariant
from pagingcheck.impl.lib.logic import select, store

INT = z3.IntSort()
BOOL = z3.BoolSort()

Transition = Callable[..., tuple[Any, Counted]]


@dataclass(frozen=True)
class Part:
    """One whole state the kernel keeps, and what the proofs need to know about it."""

    name: str
    state: type[Counted]
    transitions: Mapping[str, tuple[Transition, int]]
    invariants: tuple[Invariant, ...]
    empty: Callable[[range], Counted]
    #: The field that says whether a holding is taken (changed by "status not updated").
    status: str
    #: What each per-key or per-user table reads for a key a concrete state lacks: free.
    absent: dict[str, Any]

    def transition(self, name: str) -> Transition:
        """The transition ``name`` the kernel runs."""
        return self.transitions[name][0]

    def violations(self, state: Counted) -> list[str]:
        """Each of the part's invariants the concrete ``state`` breaks, and where."""
        return counted.violations(state, self.invariants, getattr(state, self.status))


FRAMES = Part(
    "frames",
    framestate.FrameState,
    framestate.TRANSITIONS,
    framestate.INVARIANTS,
    framestate.empty,
    "status",
    {
        "status": fr.FREE,
        "refcount": 0,
        "transfer": fr.NONE,
        "orphan": False,
        "free": True,
        "held": NOTHING,
        "index": -1,
    },
)
SLOTS = Part(
    "slots",
    slotstate.SlotState,
    slotstate.TRANSITIONS,
    slotstate.INVARIANTS,
    slotstate.empty,
    "allocated",
    {
        "allocated": False,
        "refcount": 0,
        "transfer": sw.NONE,
        "orphan": False,
        "free": True,
        "held": NOTHING,
        "index": -1,
    },
)
PARTS = (FRAMES, SLOTS)

#: The tables indexed by user; every other table but ``owner`` is indexed by holding.
USER_TABLES = ("held", "index")


def _sort(value: Any) -> Any:
    return BOOL if isinstance(value, bool) else INT


def symbolic_state(part: Part, tag: str = "") -> Any:
    """A state of unconstrained z3 arrays (holdings, users, positions are Ints)."""
    tables = {name: z3.Array(f"{name}{tag}", INT, _sort(v)) for name, v in part.absent.items()}
    owner = z3.Array(f"owner{tag}", INT, z3.ArraySort(INT, INT))
    return part.state(owner=owner, **tables)


def _value(value: Any) -> Any:
    return z3.BoolVal(value) if isinstance(value, bool) else z3.IntVal(value)


def as_arrays(part: Part, state: Counted) -> Any:
    """A concrete state (integer users) as z3 arrays: each table's entries stored over
    its :attr:`Part.absent` default, so a holding the state lacks reads as free (the
    quantified invariants speak of every integer, the runtime ones of the holdings a
    state has)."""
    tables = {}
    for name, default in part.absent.items():
        array = z3.K(INT, _value(default))
        for key, value in getattr(state, name).items():
            array = z3.Store(array, key, _value(value))
        tables[name] = array
    owner = z3.K(INT, z3.K(INT, z3.IntVal(NO_USER)))
    for key, row in state.owner.items():
        stored = z3.K(INT, z3.IntVal(NO_USER))
        for position, user in row.items():
            stored = z3.Store(stored, position, user)
        owner = z3.Store(owner, key, stored)
    return part.state(owner=owner, **tables)


def for_all(invariant: Invariant, state: Counted) -> Any:
    """``invariant`` quantified over every key: any number of holdings, users, positions."""
    keys = [z3.Int(f"q_{kind}") for kind in invariant.kinds]
    return z3.ForAll(keys, invariant.holds(state, *keys))


def all_invariants(part: Part, state: Counted) -> Any:
    """Every invariant of the part, quantified."""
    return z3.And(*(for_all(invariant, state) for invariant in part.invariants))


def arguments(part: Part, transition_name: str) -> list[z3.ExprRef]:
    """Symbolic arguments of a transition: a holding, then its users."""
    _, users = part.transitions[transition_name]
    return [z3.Int("key"), *(z3.Int(f"user{i}") for i in range(users))]


def step_obligation(
    part: Part, transition_name: str, invariant: Invariant, transition: Transition | None = None
) -> Outcome:
    """Invariants and guard before imply ``invariant`` after ``transition`` (by default
    the real one of that name)."""
    op = transition or part.transition(transition_name)
    before = symbolic_state(part)
    guard, after = op(before, *arguments(part, transition_name))
    witness = [z3.Int(f"w_{kind}") for kind in invariant.kinds]
    facts = [all_invariants(part, before), guard, z3.Not(invariant.holds(after, *witness))]
    name = f"{part.name}: {transition_name} keeps {invariant.name}"
    return solve(name, facts, want_sat=False)


def initial_obligation(part: Part, invariant: Invariant) -> Outcome:
    """The empty state (everything free, nothing held) satisfies ``invariant``."""
    empty = as_arrays(part, part.empty(range(0)))
    witness = [z3.Int(f"w_{kind}") for kind in invariant.kinds]
    facts = [z3.Not(invariant.holds(empty, *witness))]
    return solve(f"{part.name}: initial state satisfies {invariant.name}", facts, want_sat=False)


# -- non-vacuity: each transition can be taken ---------------------------------------------

#: The bounded domain in which enabling states and counterexamples are searched: holdings,
#: users (and as many reference positions as users).
BOUND_KEYS, BOUND_USERS = 2, 3
#: How many steps the search for a state enabling each transition may take (over the
#: bounded domain of :data:`BOUND_KEYS` keys and :data:`BOUND_USERS` users).
WITNESS_DEPTH = 8


def enabled_obligation(part: Part, transition_name: str) -> Outcome:
    """The transition's guard holds in a state reached from the empty one by the
    transitions themselves (so the invariants hold there too)."""
    began = time.perf_counter()
    path = reachable_witness(part, transition_name)
    name = f"{part.name}: {transition_name} can be taken"
    return witness_outcome(name, path, time.perf_counter() - began, WITNESS_DEPTH)


def reachable_witness(part: Part, transition_name: str) -> Path | None:
    """The shortest path of transitions from the empty state to one where
    ``transition_name`` is enabled, over a few holdings and users; None if none is found."""
    keys = range(BOUND_KEYS)
    steps = functools.partial(_steps, part, keys, range(BOUND_USERS))
    return enabling_path(part.empty(keys), steps, transition_name, WITNESS_DEPTH)


def _steps(
    part: Part, keys: range, users: range, state: Counted
) -> Iterator[tuple[str, tuple[int, ...], Any, Counted]]:
    for name, (op, count) in part.transitions.items():
        for key in keys:
            for chosen in itertools.product(users, repeat=count):
                guard, after = op(state, key, *chosen)
                yield name, (key, *chosen), guard, after


# -- seeded mutants: each inductive obligation must be refutable ---------------------------


Edit = Callable[[Part, Any, Any, Any, tuple[Any, ...]], tuple[Any, Any]]


def _mutation(edit: Edit) -> Callable[[Part, Transition], Transition]:
    """A seeded bug: ``edit(part, before, after, guard, args)`` changes what a transition
    does."""

    def mutate(part: Part, op: Transition) -> Transition:
        def mutant(state: Any, *args: Any) -> tuple[Any, Any]:
            guard, after = op(state, *args)
            return edit(part, state, after, guard, args)

        return mutant

    return mutate


def _kept(*names: str) -> Edit:
    """The bug of forgetting to change the tables ``names``."""
    return lambda p, s, a, g, args: (g, replace(a, **{n: getattr(s, n) for n in names}))


#: Seeded bugs a kernel's bookkeeping could have, each applicable to any transition and
#: written with ``logic``'s helpers, so the kernel can run a mutant too:
#: a check forgotten, the free list or reverse map not updated, a count off by one or
#: not changed or reset, a state change forgotten, a holding freed while still in use.
MUTATIONS: dict[str, Callable[[Part, Transition], Transition]] = {
    "guard dropped": _mutation(lambda p, s, a, g, args: (True, a)),
    "free list not updated": _mutation(_kept("free")),
    "reverse map not updated": _mutation(_kept("held", "index", "owner")),
    "count off by one": _mutation(
        lambda p, s, a, g, args: (
            g,
            replace(a, refcount=store(a.refcount, args[0], select(a.refcount, args[0], 0) + 1)),
        )
    ),
    "status not updated": _mutation(lambda p, s, a, g, args: _kept(p.status)(p, s, a, g, args)),
    "count not updated": _mutation(_kept("refcount")),
    "count reset to zero": _mutation(
        lambda p, s, a, g, args: (g, replace(a, refcount=store(a.refcount, args[0], 0)))
    ),
    "put on the free list": _mutation(
        lambda p, s, a, g, args: (g, replace(a, free=store(a.free, args[0], True)))
    ),
}


def bounded_counterexample(
    part: Part, transition_name: str, invariant: Invariant, transition: Transition | None = None
) -> tuple[Counted, tuple[int, ...], Counted] | None:
    """A concrete state of a few holdings and users where every invariant holds, the
    transition's guard holds, and ``invariant`` fails after it; None if there is none.

    Quantifiers become conjunctions over the bounded domain, and every table value is
    kept inside it, so a model is a whole state (everything outside the domain free)
    and a real counterexample, found quickly; see :func:`concretize`.
    """
    op = transition or part.transition(transition_name)
    before = symbolic_state(part)
    args = arguments(part, transition_name)
    guard, after = op(before, *args)
    keys, users = range(BOUND_KEYS), range(BOUND_USERS)
    facts = [guard, *_closed(before, keys, users)]
    facts += [
        z3.And(a >= 0, a < (BOUND_KEYS if i == 0 else BOUND_USERS)) for i, a in enumerate(args)
    ]
    for inv in part.invariants:
        facts += [inv.holds(before, *case) for case in _cases(inv, keys, users)]
    broken = [z3.Not(invariant.holds(after, *case)) for case in _cases(invariant, keys, users)]
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*facts, z3.Or(*broken))
    if solver.check() != z3.sat:
        return None
    model = solver.model()
    values = tuple(model.eval(a, model_completion=True).as_long() for a in args)
    return (
        concretize(part, model, before, keys, users),
        values,
        concretize(part, model, after, keys, users),
    )


def _closed(state: Counted, keys: range, users: range) -> list[Any]:
    """Every value the state's tables hold for the domain lies in the domain."""
    facts = []
    for key in keys:
        facts += [z3.And(state.refcount[key] >= 0, state.refcount[key] <= len(users))]
        for position in users:
            holder = state.holder(key, position)
            facts.append(z3.And(holder >= 0, holder < len(users)))
    for user in users:
        target = state.holding(user)
        facts.append(z3.Or(target == NOTHING, z3.And(target >= 0, target < len(keys))))
        facts.append(z3.And(state.index[user] >= 0, state.index[user] < len(users)))
    return facts


def _cases(invariant: Invariant, keys: range, users: range) -> list[tuple[int, ...]]:
    domains = {"key": keys, "user": users, "position": users}
    return list(itertools.product(*(domains[kind] for kind in invariant.kinds)))


def concretize(part: Part, model: z3.ModelRef, state: Any, keys: range, users: range) -> Any:
    """The concrete state a model gives ``state`` on the bounded domain."""

    def value(term: Any) -> Any:
        result = model.eval(term, model_completion=True)
        return z3.is_true(result) if z3.is_bool(result) else result.as_long()

    held = {user: value(state.holding(user)) for user in users}
    holders = [user for user in users if held[user] != NOTHING]
    tables: dict[str, Any] = {
        name: {key: value(getattr(state, name)[key]) for key in keys}
        for name in part.absent
        if name not in USER_TABLES
    }
    tables["held"] = {user: held[user] for user in holders}
    tables["index"] = {user: value(state.index[user]) for user in holders}
    tables["owner"] = {
        key: {i: value(state.holder(key, i)) for i in range(tables["refcount"][key])}
        for key in keys
    }
    return part.state(**tables)


Counterexample = tuple[Counted, tuple[int, ...], Counted]


def confirmed_counterexample(
    part: Part, transition_name: str, invariant: Invariant, transition: Transition | None = None
) -> Counterexample | None:
    """A bounded counterexample that the runtime predicates confirm: every invariant
    holds before the step, and ``invariant`` fails after it."""
    found = bounded_counterexample(part, transition_name, invariant, transition)
    if found is None:
        return None
    before, _, after = found
    broken = any(v.startswith(invariant.name + " ") for v in part.violations(after))
    return found if broken and not part.violations(before) else None


def refuting_mutant(part: Part, transition_name: str, invariant: Invariant) -> str | None:
    """The first mutation of the transition with a confirmed counterexample."""
    op = part.transition(transition_name)
    for name, mutate in MUTATIONS.items():
        if confirmed_counterexample(part, transition_name, invariant, mutate(part, op)):
            return name
    return None


def step_verdict(part: Part, transition_name: str, invariant: Invariant) -> Outcome:
    """The inductive step, proved and shown refutable: a proof that no seeded mutant can
    break would say nothing, so it is ``unknown`` then. A refuted step comes with a
    concrete counterexample, said to be reachable or not (:func:`explain`)."""
    began = time.perf_counter()
    found = confirmed_counterexample(part, transition_name, invariant)
    if found is not None:
        seconds = time.perf_counter() - began
        name = f"{part.name}: {transition_name} keeps {invariant.name}"
        return Outcome(name, "refuted", seconds, explain(part, transition_name, invariant, found))
    outcome = step_obligation(part, transition_name, invariant)
    if outcome.verdict != "proved":
        return outcome
    began = time.perf_counter()
    mutant = refuting_mutant(part, transition_name, invariant)
    seconds = outcome.seconds + time.perf_counter() - began
    if mutant is None:
        return Outcome(outcome.name, "unknown", seconds, "no seeded mutant refutes it")
    return Outcome(outcome.name, "proved", seconds, f"refuted when {mutant}")


# -- counterexamples: reachable, or not --------------------------------------------------------


def canonical(part: Part, state: Counted) -> tuple[object, ...]:
    """What a concrete state says, whatever order its users were counted in: each key's
    protocol fields and set of users, and what each user holds."""
    keys = sorted(getattr(state, part.status))
    fields = [name for name in part.absent if name not in USER_TABLES]
    rows = tuple(
        (key, *(getattr(state, name).get(key) for name in fields), frozenset(state.users(key)))
        for key in keys
    )
    return rows, tuple(sorted(state.held.items()))


def reachable(part: Part, target: Counted) -> tuple[Path | None, int]:
    """The shortest path of transitions from the empty state to ``target`` (None if there
    is none), and how many states were explored: all of those the transitions reach over
    :data:`BOUND_KEYS` keys and :data:`BOUND_USERS` users, a finite set."""
    goal = canonical(part, target)
    steps = functools.partial(_steps, part, range(BOUND_KEYS), range(BOUND_USERS))
    explored = 0
    start = part.empty(range(BOUND_KEYS))
    for state, path in breadth_first(start, steps, key=functools.partial(canonical, part)):
        explored += 1
        if canonical(part, state) == goal:
            return path, explored
    return None, explored


def explain(part: Part, transition_name: str, invariant: Invariant, found: Counterexample) -> str:
    """A refuted step's counterexample, concretely, and whether the transitions reach
    the state it starts from."""
    before, args, after = found
    path, explored = reachable(part, before)
    broken = "; ".join(v for v in part.violations(after) if v.startswith(invariant.name + " "))
    case = f"{transition_name}{args} from {canonical(part, before)} breaks {broken}"
    if path is None:
        return (
            f"unreachable-state counterexample: {case}; none of the {explored} states the "
            "transitions reach is that state, so an invariant is missing, not the code wrong"
        )
    steps = ", ".join(f"{op}{a}" for op, a in path) or "nothing"
    return f"reachable counterexample: {case}; reached by {steps}"


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every bookkeeping obligation, lazily (so progress shows as each is decided)."""
    for part in PARTS:
        for invariant in part.invariants:
            yield functools.partial(initial_obligation, part, invariant)
        for name in part.transitions:
            yield functools.partial(enabled_obligation, part, name)
            for invariant in part.invariants:
                yield functools.partial(step_verdict, part, name, invariant)
