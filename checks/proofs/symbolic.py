"""Run unchanged Python code on z3 values: a small re-execution symbolic engine.

The page-table walkers (``pagingcheck.model.pagetable``) and editors
(``pagingcheck.impl.lib.pagetable``) branch in Python on words they read
from memory. To prove things about *that* code, rather than a copy of it,
this module runs it on symbolic values:

* :class:`Sym` is a 64-bit z3 bit-vector that behaves like a Python ``int``
  under ``+ - * % & | ^ << >>`` and comparisons (signed, so differences
  compare as Python's unbounded integers do; words from memory are 32-bit
  and zero-extended, so no sum the code forms can overflow);
* a comparison gives a :class:`SymBool`; when the code asks for its truth
  (``if``, ``while``, ``and``, ``not``), the :class:`Engine` decides it: it
  takes a side the path so far allows and, when z3 says both sides are
  feasible, remembers the other side to explore later;
* :func:`explore` re-executes the code from the start once per feasible
  path, depth first, replaying the recorded decisions; each path ends with
  goals (z3 conditions) that must hold under the path's condition.

Memory is a z3 array (:class:`SymbolicMemory`); table memory is handed out
by :class:`SymbolicAllocator`, whose words are fresh symbols assumed to lie
in the kernel region and outside every word already in use. A symbolic
value used where Python needs a concrete ``int`` (an index, ``range``, a
dictionary key) raises TypeError, so code the engine cannot follow fails
loudly instead of being explored wrongly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import z3

#: Bits of every symbolic integer: twice a memory word, so sums of words never wrap.
WIDTH = 36
#: Bits of a memory word.
WORD_BITS = 32

ADDRESS = z3.BitVecSort(WIDTH)
WORD = z3.BitVecSort(WORD_BITS)

#: Paths one exploration may take before its verdict is unknown.
MAX_PATHS = 20_000
#: Decisions one path may take (every loop of the formats is bounded; this is a guard).
MAX_DECISIONS = 5_000


class Infeasible(Exception):
    """The path's assumptions contradict each other: it is no path at all."""


class Undecided(Exception):
    """z3 answered unknown on a branch, or a budget ran out."""


def lift(value: Any) -> Any:
    """The z3 term of a :class:`Sym`, ``bool`` or ``int`` (a 64-bit bit-vector)."""
    if isinstance(value, Sym):
        return value.term
    if isinstance(value, int):
        return z3.BitVecVal(value, WIDTH)
    raise TypeError(f"not an integer: {value!r}")


def as_condition(value: Any) -> Any:
    """The z3 Boolean of a :class:`SymBool` or a plain ``bool``."""
    if isinstance(value, SymBool):
        return value.term
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if z3.is_bool(value):
        return value
    raise TypeError(f"not a condition: {value!r}")


class Sym:
    """A symbolic integer: a 64-bit z3 term that Python code can compute with."""

    __slots__ = ("engine", "term")
    __hash__ = None  # type: ignore[assignment]  # a symbolic key would compare by identity

    def __init__(self, term: Any, engine: Engine) -> None:
        self.term = term
        self.engine = engine

    def _make(self, term: Any) -> Sym:
        return Sym(term, self.engine)

    def _cond(self, term: Any) -> SymBool:
        return SymBool(term, self.engine)

    def __add__(self, other: Any) -> Sym:
        return self._make(self.term + lift(other))

    def __radd__(self, other: Any) -> Sym:
        return self._make(lift(other) + self.term)

    def __sub__(self, other: Any) -> Sym:
        return self._make(self.term - lift(other))

    def __rsub__(self, other: Any) -> Sym:
        return self._make(lift(other) - self.term)

    def __mul__(self, other: Any) -> Sym:
        return self._make(self.term * lift(other))

    def __rmul__(self, other: Any) -> Sym:
        return self._make(lift(other) * self.term)

    def __mod__(self, other: Any) -> Sym:
        # z3 % on bit-vectors is bvsmod: the sign of the divisor, as Python's %.
        return self._make(self.term % lift(other))

    def __rmod__(self, other: Any) -> Sym:
        return self._make(lift(other) % self.term)

    def __and__(self, other: Any) -> Sym:
        return self._make(self.term & lift(other))

    def __rand__(self, other: Any) -> Sym:
        return self._make(lift(other) & self.term)

    def __or__(self, other: Any) -> Sym:
        return self._make(self.term | lift(other))

    def __ror__(self, other: Any) -> Sym:
        return self._make(lift(other) | self.term)

    def __xor__(self, other: Any) -> Sym:
        return self._make(self.term ^ lift(other))

    def __rxor__(self, other: Any) -> Sym:
        return self._make(lift(other) ^ self.term)

    def __lshift__(self, other: Any) -> Sym:
        return self._make(self.term << lift(other))

    def __rshift__(self, other: Any) -> Sym:
        # Arithmetic shift, as Python's >> on (two's complement) integers.
        return self._make(self.term >> lift(other))

    def __neg__(self) -> Sym:
        return self._make(-self.term)

    def __invert__(self) -> Sym:
        return self._make(~self.term)

    def __eq__(self, other: object) -> SymBool:  # type: ignore[override]
        return self._cond(self.term == lift(other))

    def __ne__(self, other: object) -> SymBool:  # type: ignore[override]
        return self._cond(self.term != lift(other))

    def __lt__(self, other: Any) -> SymBool:
        return self._cond(self.term < lift(other))

    def __le__(self, other: Any) -> SymBool:
        return self._cond(self.term <= lift(other))

    def __gt__(self, other: Any) -> SymBool:
        return self._cond(self.term > lift(other))

    def __ge__(self, other: Any) -> SymBool:
        return self._cond(self.term >= lift(other))

    def __bool__(self) -> bool:
        return self.engine.decide(self.term != 0)

    def __index__(self) -> int:
        raise TypeError(f"symbolic value {self.term} used where a concrete int is needed")

    def __format__(self, spec: str) -> str:
        # Error messages format the values they report; a term prints as itself.
        return str(self.term)

    def __repr__(self) -> str:
        return f"Sym({self.term})"


class SymBool:
    """A symbolic condition; asking for its truth makes the engine decide it."""

    __slots__ = ("engine", "term")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, term: Any, engine: Engine) -> None:
        self.term = term
        self.engine = engine

    def __bool__(self) -> bool:
        return self.engine.decide(self.term)

    def __repr__(self) -> str:
        return f"SymBool({self.term})"


class Engine:
    """Decides the branches of one execution along a recorded prefix of decisions.

    The solver holds one scope per event (a decision or an assumption) of the
    current path, so a re-execution that shares a prefix with the previous
    path reuses the solver's work on it.
    """

    def __init__(self) -> None:
        self.solver = z3.Solver()
        self.prefix: tuple[bool, ...] = ()
        self.trace: list[bool] = []
        self.terms: list[Any] = []
        self.alternatives: list[tuple[tuple[bool, ...], Any]] = []
        self.model: Any = None
        self.known: dict[int, tuple[Any, bool]] = {}
        self.names = 0
        self.checks = 0

    # -- values ----------------------------------------------------------------------

    def word(self, name: str) -> Any:
        """A fresh, unconstrained 32-bit word (a :class:`Sym`; typed ``Any`` because it
        stands for an ``int`` in the code under proof, which is typed for ints)."""
        return Sym(z3.ZeroExt(WIDTH - WORD_BITS, z3.BitVec(self._name(name), WORD_BITS)), self)

    def flag(self, name: str) -> SymBool:
        """A fresh, unconstrained condition."""
        return SymBool(z3.Bool(self._name(name)), self)

    def case_split(self, value: Sym, cases: range) -> int:
        """The case of ``cases`` that ``value`` equals on this path (a branch per feasible
        case; the caller must have assumed the value lies in ``cases``). Code then runs on
        the concrete case, which keeps its terms small: a small symbolic index becomes a
        few paths with concrete arithmetic rather than one path with symbolic addresses."""
        for case in cases[:-1]:
            if self.decide(value.term == case):
                return case
        self.assume(value.term == cases[-1])
        return cases[-1]

    def _name(self, name: str) -> str:
        # Names are numbered per execution, so a re-execution makes the same terms.
        self.names += 1
        return f"{name}!{self.names}"

    # -- one execution ------------------------------------------------------------------

    def begin(self, prefix: tuple[bool, ...], model: Any = None) -> None:
        """Start an execution that replays ``prefix`` (its last decision is new; ``model``,
        if given, satisfies the prefix)."""
        keep = max(len(prefix) - 1, 0)
        self.solver.pop(self.solver.num_scopes() - keep)
        del self.terms[keep:]
        self.prefix, self.trace, self.alternatives, self.names = prefix, [], [], 0
        self.model = model
        self.known = {}

    def assume(self, *conditions: Any) -> None:
        """Add ``conditions`` to the path; raise Infeasible when they contradict it."""
        term = z3.And(*(as_condition(c) for c in conditions))
        index = len(self.trace)
        if index < len(self.prefix):
            self._replay(index, term)
            self.trace.append(True)
            return
        if not self._holds(term):
            if self._check(term) == z3.unsat:
                raise Infeasible
            self.model = self.solver.model()
        self._record(True, term)

    def decide(self, condition: Any) -> bool:
        """The truth of ``condition`` on this path (branching when both are feasible)."""
        term = as_condition(condition)
        known = self.known.get(term.get_id())
        if known is not None:
            return bool(known[1])  # decided before on this path: implied, no new event
        index = len(self.trace)
        if index >= MAX_DECISIONS:
            raise Undecided(f"more than {MAX_DECISIONS} decisions on one path")
        if index < len(self.prefix):
            choice = self.prefix[index]
            if index < len(self.prefix) - 1:
                self._replay(index, term)
                self.trace.append(choice)
            else:
                self._record(choice, term)
        else:
            choice = self._choose(term)
            self._record(choice, term)
        # Keep the term alive with its id, so the id cannot be reused by another term.
        self.known[term.get_id()] = (term, choice)
        return choice

    def _choose(self, term: Any) -> bool:
        simple = z3.simplify(term)
        if z3.is_true(simple):
            return True
        if z3.is_false(simple):
            return False
        # The current model satisfies the path: the side it takes needs no check.
        side = self._holds(term)
        if self._check(term if not side else z3.Not(term)) == z3.sat:
            self.alternatives.append(((*self.trace, not side), self.solver.model()))
        return side

    def _holds(self, term: Any) -> bool:
        """Whether the path's current model satisfies ``term`` (finding a model if needed)."""
        if self.model is None:
            if self._check(z3.BoolVal(True)) != z3.sat:
                raise Infeasible
            self.model = self.solver.model()
        return z3.is_true(self.model.eval(term, model_completion=True)) is True

    def _check(self, term: Any) -> Any:
        self.checks += 1
        result = self.solver.check(term)
        if result == z3.unknown:
            raise Undecided(f"z3: {self.solver.reason_unknown()}")
        return result

    def _record(self, choice: bool, term: Any) -> None:
        self.solver.push()
        self.solver.add(term if choice else z3.Not(term))
        self.terms.append(term)
        self.trace.append(choice)

    def _replay(self, index: int, term: Any) -> None:
        # The code must make the same decisions in the same order when replayed.
        if not term.eq(self.terms[index]):
            raise RuntimeError("symbolic execution is not deterministic: a replay diverged")
        if index == len(self.prefix) - 1:
            raise RuntimeError("a replay met an assumption where it flipped a decision")

    def counterexample(self, goal: Any) -> str | None:
        """A model of this path where ``goal`` fails, or None when it holds on the path."""
        broken = z3.Not(as_condition(goal))
        if not self._holds(broken):
            if self._check(broken) == z3.unsat:
                return None
            self.model = self.solver.model()
        model = self.model
        shown = sorted(
            (str(d.name()), str(model[d]))
            for d in model.decls()
            if d.arity() == 0 and not z3.is_array(model[d]) and not str(d.name()).startswith("z3")
        )
        return ", ".join(f"{name} = {value}" for name, value in shown)[:2000]


@dataclass
class Exploration:
    """What every feasible path of one execution said about its goals."""

    paths: int = 0
    seconds: float = 0.0
    checks: int = 0
    #: Goal name to the first counterexample found (a model of the path's inputs).
    refuted: dict[str, str] = field(default_factory=dict)
    #: The first error the code under proof raised on a feasible path, with its inputs.
    error: str = ""
    #: Why the exploration stopped early without deciding everything, if it did.
    undecided: str = ""


Body = Callable[[Engine], dict[str, Any]]


def explore(
    body: Body,
    stop_when: Callable[[Exploration], bool] = lambda _: False,
    errors: tuple[type[BaseException], ...] = (),
) -> Exploration:
    """Run ``body`` once per feasible path and check the goals it returns on each.

    A path on which ``body`` raises one of ``errors`` refutes every goal (the
    code under proof failed there). Exploration stops early when ``stop_when``
    says so (a mutant needs one counterexample), or with ``undecided`` set.
    """
    engine = Engine()
    result = Exploration()
    began = time.perf_counter()
    pending: list[tuple[tuple[bool, ...], Any]] = [((), None)]
    try:
        while pending and not stop_when(result):
            if result.paths >= MAX_PATHS:
                raise Undecided(f"more than {MAX_PATHS} paths")
            engine.begin(*pending.pop())
            try:
                goals = body(engine)
            except Infeasible:
                pending.extend(engine.alternatives)  # deepest last: popped first
                continue
            except errors as error:
                goals = {}
                if not result.error:
                    model = engine.counterexample(z3.BoolVal(False))
                    result.error = f"raises {type(error).__name__}: {error} ({model})"
            pending.extend(engine.alternatives)
            result.paths += 1
            _check_goals(result, engine, goals)
    except Undecided as why:
        result.undecided = str(why)
    result.seconds = time.perf_counter() - began
    result.checks = engine.checks
    return result


def _check_goals(result: Exploration, engine: Engine, goals: dict[str, Any]) -> None:
    for name, goal in goals.items():
        if name in result.refuted:
            continue
        found = engine.counterexample(goal)
        if found is not None:
            result.refuted[name] = found


# -- memory and the kernel allocator, symbolic ------------------------------------------


@dataclass(frozen=True)
class Write:
    """One word written: its address and value terms."""

    address: Any
    value: Any


class SymbolicMemory:
    """Physical memory as a z3 array from addresses to 32-bit words, and writes over it.

    Reads zero-extend the word; writes keep its low 32 bits, as the hardware's
    memory does. The writes are kept as a list and a read resolves them
    itself, newest first, skipping those whose address simplifies to another
    (``root + 1`` is not ``root + 2``): z3 then sees if-then-else terms over
    reads of one unwritten array, which it decides far faster than chains of
    stores. The list also lets a seeded mutant change what an edit wrote
    (:meth:`rewrite`).
    """

    def __init__(self, engine: Engine, base: Any) -> None:
        self.engine = engine
        self.base = base
        self.writes: list[Write] = []

    @classmethod
    def fresh(cls, engine: Engine, name: str = "memory") -> SymbolicMemory:
        """Memory whose every word is unconstrained."""
        return cls(engine, z3.Array(name, ADDRESS, WORD))

    def read(self, pa: Any) -> Any:
        """The word at ``pa`` (a :class:`Sym`, standing for an ``int``)."""
        address = lift(pa)
        for write in reversed(self.writes):
            same = address == write.address
            decided = z3.simplify(same)
            if z3.is_false(decided):
                continue
            # Which write a read sees is decided per path (most aliasing is infeasible
            # and z3 says so at once), so no term carries a chain of if-then-elses.
            if z3.is_true(decided) or self.engine.decide(same):
                return Sym(z3.ZeroExt(WIDTH - WORD_BITS, write.value), self.engine)
        return Sym(z3.ZeroExt(WIDTH - WORD_BITS, z3.Select(self.base, address)), self.engine)

    def write(self, pa: Any, value: Any) -> None:
        """Store the low 32 bits of ``value`` at ``pa``."""
        self.writes.append(Write(lift(pa), z3.Extract(WORD_BITS - 1, 0, lift(value))))

    def rewrite(self, start: int, mutate: Callable[[list[Write]], list[Write]]) -> None:
        """Replace the writes made since there were ``start`` of them by ``mutate(writes)``."""
        self.writes = [*self.writes[:start], *mutate(self.writes[start:])]


Range = tuple[Any, int]


def within(start: Any, words: int, limit: int) -> SymBool | bool:
    """``words`` words from ``start`` lie in ``[1, limit)`` (word 0 is the null link)."""
    if isinstance(start, int):
        return start >= 1 and start + words <= limit
    return SymBool(z3.And(lift(start) >= 1, lift(start) + words <= limit), start.engine)


def disjoint(a: Range, b: Range) -> Any:
    """The word ranges ``a`` and ``b`` do not overlap (a z3 condition)."""
    (x, m), (y, n) = a, b
    return z3.Or(lift(x) + m <= lift(y), lift(y) + n <= lift(x))


def all_disjoint(ranges: Iterable[Range]) -> Any:
    """No two of ``ranges`` overlap."""
    listed = list(ranges)
    return z3.And(
        *(disjoint(a, b) for i, a in enumerate(listed) for b in listed[i + 1 :]), z3.BoolVal(True)
    )


class SymbolicAllocator:
    """The kernel allocator's contract, symbolically: ``alloc`` hands out fresh words.

    Each allocation is a fresh address assumed to lie in the kernel region
    (``[1, region_words)``) and, when ``fresh_words`` holds, to overlap no
    range in ``in_use`` (the tables' words, and earlier allocations). Freed
    words are not handed out again within one exploration: the proofs cover
    edits whose allocations are all fresh. Allocation never fails here.
    """

    def __init__(
        self, engine: Engine, region_words: int, in_use: list[Range], fresh_words: bool = True
    ) -> None:
        self.engine = engine
        self.region_words = region_words
        self.in_use = in_use
        self.fresh_words = fresh_words

    def alloc(self, words: int, align: int = 1) -> Any:
        """A fresh range of ``words`` words (alignment 1 only: no editor asks for more)."""
        if align != 1:
            raise TypeError("SymbolicAllocator: only alignment 1 is modelled")
        address = self.engine.word("table")
        self.engine.assume(within(address, words, self.region_words))
        if self.fresh_words:
            self.engine.assume(*(disjoint((address, words), used) for used in self.in_use))
        self.in_use.append((address, words))
        return address

    def free(self, address: Any, words: int) -> None:
        """Nothing: freed words stay out of reach of later allocations (see the class)."""

    def copy(self) -> SymbolicAllocator:
        """An independent allocator with the same words in use (for trial allocations)."""
        return SymbolicAllocator(
            self.engine, self.region_words, list(self.in_use), self.fresh_words
        )
