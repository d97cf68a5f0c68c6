"""Boolean and arithmetic helpers that work on plain Python values and on z3 terms alike.

The frame-table and swap-slot protocols (:mod:`pagingcheck.impl.lib.frames`,
:mod:`pagingcheck.impl.lib.swap`) are written once, over values whose fields
may be Python ``int``/``bool`` (when the kernel runs them) or z3 terms (when
a proof runs them). Python's ``and``, ``or``, ``not`` and ``x if c else y``
do not work on z3 terms, so the protocol code uses these helpers instead;
tables are read and written with :func:`select` and :func:`store`, which
work on dictionaries and on z3 arrays.

Each helper looks at its arguments: if none is a z3 term it computes the
plain Python answer; otherwise it imports z3 (only then) and builds the
term. So running the kernel never imports z3.

``Term`` and ``Cond`` are documentation aliases: an ``int`` or an integer z3
term, a ``bool`` or a boolean z3 term.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Term: TypeAlias = Any
"""An ``int``, or an integer-sorted z3 term."""

Cond: TypeAlias = Any
"""A ``bool``, or a boolean-sorted z3 term."""


#: Types no z3 term has, answered without looking at their module: the kernel asks about
#: these on every table read and guard, so the common answer must be cheap.
_PLAIN: frozenset[type] = frozenset({int, bool, dict, tuple, str, type(None)})


def is_symbolic(*values: object) -> bool:
    """Whether any of ``values`` is a z3 term (checked without importing z3)."""
    for value in values:
        kind = type(value)
        if kind not in _PLAIN and kind.__module__.startswith("z3"):
            return True
    return False


def _z3() -> Any:
    import z3

    return z3


def ite(cond: Cond, then: Term, otherwise: Term) -> Term:
    """``then`` if ``cond`` holds, else ``otherwise``."""
    if is_symbolic(cond, then, otherwise):
        return _z3().If(cond, then, otherwise)
    return then if cond else otherwise


def all_of(*conds: Cond) -> Cond:
    """The conjunction of ``conds`` (true when there are none)."""
    if is_symbolic(*conds):
        return _z3().And(*conds)
    return all(bool(c) for c in conds)


def any_of(*conds: Cond) -> Cond:
    """The disjunction of ``conds`` (false when there are none)."""
    if is_symbolic(*conds):
        return _z3().Or(*conds)
    return any(bool(c) for c in conds)


def not_(cond: Cond) -> Cond:
    """The negation of ``cond``."""
    if is_symbolic(cond):
        return _z3().Not(cond)
    return not cond


def implies(premise: Cond, conclusion: Cond) -> Cond:
    """``premise`` implies ``conclusion``."""
    if is_symbolic(premise, conclusion):
        return _z3().Implies(premise, conclusion)
    return (not premise) or bool(conclusion)


def one_of(value: Term, *choices: int) -> Cond:
    """``value`` equals one of ``choices``."""
    return any_of(*(value == choice for choice in choices))


def select(table: Any, key: Any, default: Any = None) -> Any:
    """``table[key]``: of a dict (``default`` for a key it lacks) or of a z3 array."""
    if type(table) is dict:  # the kernel's case, first: a dict is never symbolic
        return table.get(key, default)
    if is_symbolic(table):
        return _z3().Select(table, key)
    return table.get(key, default)


def store(table: Any, key: Any, value: Any) -> Any:
    """A new table equal to ``table`` but mapping ``key`` to ``value`` (a dict is copied,
    not changed; a z3 array gets a ``Store`` term). A dict that already maps ``key`` to
    an equal value of the same type is returned itself: tables are values, never changed
    once built, and an unchanged table keeps its identity (and what is cached about it)."""
    if is_symbolic(table):
        return _z3().Store(table, key, value)
    if key in table:
        old = table[key]
        if type(old) is type(value) and type(value) in _PLAIN and old == value:
            return table
    changed = dict(table)
    changed[key] = value
    return changed


def concrete(cond: Cond) -> bool:
    """A plain ``bool`` from a concrete condition; raises TypeError for a z3 term.

    The kernel calls this on every guard it evaluates, so a symbolic value
    leaking into running code fails loudly instead of being taken as true.
    """
    if is_symbolic(cond):
        raise TypeError(f"logic.concrete: {cond} is a z3 term, not a concrete condition")
    return bool(cond)
