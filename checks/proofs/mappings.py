"""z3 proofs about PTE words, TLB entries and dirty pages (:mod:`~pagingcheck.impl.lib.mapping`).

The state is one entry per user (a (process, vpn) mapping): its PTE word and
the TLB's cached copy as 32-bit vectors, the kernel's dirty record, and ghost
fields for writes not yet saved and writes lost. The kernel's transitions are
the functions :mod:`~pagingcheck.impl.lib.vm` calls to compute each PTE word
and TLB duty; the hardware's (:func:`~pagingcheck.impl.lib.mapping.fill`,
:func:`~pagingcheck.impl.lib.mapping.access`) are what the MMU does, checked
against the real MMU by a test. For every transition and invariant:

* the invariants and the guard before imply the invariant after, for any
  number of users and any PTE words (users are unbounded integers);
* the empty state satisfies each invariant;
* the transition can be taken from a state the transitions reach;
* a seeded mutant of the transition (:data:`MUTATIONS`) makes z3 find a
  counterexample, which the runtime predicates confirm on the concrete
  state z3 gives.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import z3

from pagingcheck.checks.proofs.core import (
    TIMEOUT_MS,
    Outcome,
    enabling_path,
    solve,
    witness_outcome,
)
from pagingcheck.impl.lib import mapping as mp
from pagingcheck.impl.lib.counted import Invariant
from pagingcheck.impl.lib.logic import any_of
from pagingcheck.model import bits

INT = z3.IntSort()
BOOL = z3.BoolSort()
WORD = z3.BitVecSort(32)

#: The name each proved obligation starts with.
PART = "mappings"


def symbolic_state(tag: str = "") -> mp.MappingState:
    """A state of unconstrained z3 arrays: users are Ints, words 32-bit vectors."""
    return mp.MappingState(
        pte=z3.Array(f"pte{tag}", INT, WORD),
        cached=z3.Array(f"cached{tag}", INT, BOOL),
        snapshot=z3.Array(f"snapshot{tag}", INT, WORD),
        dirty=z3.Array(f"dirty{tag}", INT, BOOL),
        written=z3.Array(f"written{tag}", INT, BOOL),
        lost=z3.Array(f"lost{tag}", INT, BOOL),
        copied=z3.Array(f"copied{tag}", INT, BOOL),
    )


def as_arrays(state: mp.MappingState) -> mp.MappingState:
    """A concrete state as z3 arrays, every user it lacks reading as :data:`~.mapping.ABSENT`."""

    def array(table: dict[Any, Any], default: Any, sort: Any) -> Any:
        result = z3.K(INT, _value(default, sort))
        for user, value in table.items():
            result = z3.Store(result, user, _value(value, sort))
        return result

    absent = mp.ABSENT
    return mp.MappingState(
        pte=array(state.pte, absent.pte, WORD),
        cached=array(state.cached, absent.cached, BOOL),
        snapshot=array(state.snapshot, absent.snapshot, WORD),
        dirty=array(state.dirty, absent.dirty, BOOL),
        written=array(state.written, absent.written, BOOL),
        lost=array(state.lost, absent.lost, BOOL),
        copied=array(state.copied, absent.copied, BOOL),
    )


def _value(value: Any, sort: Any) -> Any:
    return z3.BitVecVal(value, 32) if sort == WORD else z3.BoolVal(bool(value))


def all_invariants(state: mp.MappingState) -> Any:
    """Every invariant, quantified over every user."""
    user = z3.Int("q_user")
    return z3.And(*(z3.ForAll([user], inv.holds(state, user)) for inv in mp.INVARIANTS))


def arguments(transition_name: str) -> list[Any]:
    """Symbolic arguments of a transition: a user, then its words and conditions."""
    _, kinds = mp.TRANSITIONS[transition_name]
    extra = [
        z3.BitVec(f"word{i}", 32) if k == "word" else z3.Bool(f"flag{i}")
        for i, k in enumerate(kinds)
    ]
    return [z3.Int("user"), *extra]


Transition = Callable[..., mp.Step]


def step_obligation(
    transition_name: str, invariant: Invariant, transition: Transition | None = None
) -> Outcome:
    """Invariants and guard before imply ``invariant`` after the transition."""
    op = transition or mp.TRANSITIONS[transition_name][0]
    before = symbolic_state()
    guard, after = op(before, *arguments(transition_name))
    witness = z3.Int("w_user")
    facts = [all_invariants(before), guard, z3.Not(invariant.holds(after, witness))]
    return solve(f"{PART}: {transition_name} keeps {invariant.name}", facts, want_sat=False)


def initial_obligation(invariant: Invariant) -> Outcome:
    """The empty state satisfies ``invariant``."""
    empty = as_arrays(mp.empty())
    facts = [z3.Not(invariant.holds(empty, z3.Int("w_user")))]
    return solve(f"{PART}: initial state satisfies {invariant.name}", facts, want_sat=False)


# -- non-vacuity: a reachable state enables each transition ---------------------------------

#: The concrete values the search for enabling states draws from.
WITNESS_USERS = range(2)
WITNESS_WORDS = (
    bits.make_pte(5, bits.READ | bits.WRITE | bits.USER),
    bits.make_pte(0, bits.READ | bits.WRITE | bits.USER, present=False),
)
WITNESS_DEPTH = 6


def enabled_obligation(transition_name: str) -> Outcome:
    """The transition's guard holds in a state reached from the empty one."""
    began = time.perf_counter()
    path = enabling_path(mp.empty(), _steps, transition_name, WITNESS_DEPTH)
    name = f"{PART}: {transition_name} can be taken"
    return witness_outcome(name, path, time.perf_counter() - began, WITNESS_DEPTH)


def _steps(state: mp.MappingState) -> Iterator[tuple[str, tuple[Any, ...], Any, mp.MappingState]]:
    for name, (op, kinds) in mp.TRANSITIONS.items():
        domains = [WITNESS_WORDS if kind == "word" else (False, True) for kind in kinds]
        for user in WITNESS_USERS:
            for extra in itertools.product(*domains):
                guard, after = op(state, user, *extra)
                yield name, (user, *extra), guard, after


# -- seeded mutants -------------------------------------------------------------------------

Edit = Callable[[mp.Entry, mp.Entry, Any], tuple[Any, mp.Entry]]


def _mutation(edit: Edit) -> Callable[[Transition], Transition]:
    """A seeded bug: ``edit(before, after, guard)`` changes what one user's step does."""

    def mutate(op: Transition) -> Transition:
        def mutant(state: mp.MappingState, user: Any, *args: Any) -> mp.Step:
            guard, after = op(state, user, *args)
            changed_guard, entry = edit(state.entry(user), after.entry(user), guard)
            return changed_guard, after.with_entry(user, entry)

        return mutant

    return mutate


#: Seeded bugs a kernel or an MMU could have, each applicable to any transition.
MUTATIONS: dict[str, Callable[[Transition], Transition]] = {
    "guard dropped": _mutation(lambda b, a, g: (True, a)),
    "TLB not invalidated": _mutation(lambda b, a, g: (g, replace(a, cached=b.cached))),
    "PTE not written": _mutation(lambda b, a, g: (g, replace(a, pte=b.pte))),
    "M bit not harvested": _mutation(lambda b, a, g: (g, replace(a, dirty=b.dirty))),
    "dirty record cleared": _mutation(lambda b, a, g: (g, replace(a, dirty=False))),
    "frame reused": _mutation(
        lambda b, a, g: (g, replace(a, written=False, lost=any_of(a.lost, b.written, a.written)))
    ),
    "TLB entry zeroed, left valid": _mutation(
        lambda b, a, g: (g, replace(a, cached=b.cached, snapshot=0))
    ),
    "TLB loaded with the old word": _mutation(
        lambda b, a, g: (g, replace(a, cached=True, snapshot=b.pte))
    ),
    "marked clean, not saved": _mutation(
        lambda b, a, g: (g, replace(a, dirty=False, written=b.written))
    ),
    "dirty page discarded": _mutation(
        lambda b, a, g: (True, replace(a, dirty=False, written=b.written))
    ),
    "write left in the PTE": _mutation(lambda b, a, g: (g, replace(a, pte=a.pte | bits.WRITE))),
}


def bounded_counterexample(
    transition_name: str, invariant: Invariant, transition: Transition
) -> tuple[mp.MappingState, tuple[Any, ...], mp.MappingState] | None:
    """Concrete states of two users where the invariants hold before, the guard holds,
    and ``invariant`` fails after; None if there is none."""
    before = symbolic_state()
    args = arguments(transition_name)
    guard, after = transition(before, *args)
    users = range(2)
    facts = [guard, z3.Or(*(args[0] == u for u in users))]
    facts += [inv.holds(before, u) for inv in mp.INVARIANTS for u in users]
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*facts, z3.Or(*(z3.Not(invariant.holds(after, u)) for u in users)))
    if solver.check() != z3.sat:
        return None
    model = solver.model()
    values = tuple(_concrete(model, a) for a in args)
    return _concretize(model, before, users), values, _concretize(model, after, users)


def _concrete(model: z3.ModelRef, term: Any) -> Any:
    result = model.eval(term, model_completion=True)
    return z3.is_true(result) if z3.is_bool(result) else result.as_long()


def _concretize(model: z3.ModelRef, state: mp.MappingState, users: range) -> mp.MappingState:
    concrete = mp.empty()
    for user in users:
        entry = state.entry(user)
        values = [_concrete(model, getattr(entry, f)) for f in mp.Entry.__dataclass_fields__]
        concrete = concrete.with_entry(user, mp.Entry(*values))
    return concrete


def confirmed_counterexample(
    transition_name: str, invariant: Invariant, transition: Transition
) -> tuple[mp.MappingState, tuple[Any, ...]] | None:
    """A bounded counterexample that the concrete transition and the runtime predicates
    confirm: the state before, and the arguments."""
    found = bounded_counterexample(transition_name, invariant, transition)
    if found is None:
        return None
    before, args, _ = found
    _, after = transition(before, *args)  # run again on concrete values
    broken = any(v.startswith(invariant.name + " ") for v in mp.violations(after))
    return (before, args) if broken and not mp.violations(before) else None


def refuting_mutant(transition_name: str, invariant: Invariant) -> str | None:
    """The first mutation with a confirmed counterexample to the obligation."""
    op = mp.TRANSITIONS[transition_name][0]
    for name, mutate in MUTATIONS.items():
        if confirmed_counterexample(transition_name, invariant, mutate(op)):
            return name
    return None


def step_verdict(transition_name: str, invariant: Invariant) -> Outcome:
    """The inductive step, proved and shown refutable (else ``unknown``); a refuted step
    comes with a concrete counterexample."""
    name = f"{PART}: {transition_name} keeps {invariant.name}"
    began = time.perf_counter()
    found = confirmed_counterexample(transition_name, invariant, mp.TRANSITIONS[transition_name][0])
    if found is not None:
        before, args = found
        detail = f"counterexample: {transition_name}{args} from {before}"
        return Outcome(name, "refuted", time.perf_counter() - began, detail)
    outcome = step_obligation(transition_name, invariant)
    if outcome.verdict != "proved":
        return outcome
    mutant = refuting_mutant(transition_name, invariant)
    seconds = time.perf_counter() - began
    if mutant is None:
        return Outcome(outcome.name, "unknown", seconds, "no seeded mutant refutes it")
    return Outcome(outcome.name, "proved", seconds, f"refuted when {mutant}")


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every mapping obligation, lazily."""
    for invariant in mp.INVARIANTS:
        yield functools.partial(initial_obligation, invariant)
    for name in mp.TRANSITIONS:
        yield functools.partial(enabled_obligation, name)
        for invariant in mp.INVARIANTS:
            yield functools.partial(step_verdict, name, invariant)
