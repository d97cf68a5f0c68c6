"""Exact reference counts as a ghost bijection, shared by frames and swap slots.

A *user* is one (process, vpn) page. A frame or a swap slot (a *holding*)
is held by the users whose page lives there, and counts them. Instead of
trusting a number, the count is backed by three tables, as Hyperkernel
keeps its reference counts:

==========  ===========================================================
refcount    holding -> how many users hold it
held        user -> the holding it holds, or :data:`NOTHING`
index       user -> its position among the holding's counted references
owner       (holding, position) -> the user counted there
==========  ===========================================================

``owner`` and ``index`` are a bijection between positions ``0 ..
refcount-1`` and the users that hold the holding, so "the count is exact"
is a statement about each position and each user, which z3 proves for any
number of holdings and users without counting.

Everything here works on dictionaries (the kernel) and on z3 arrays (a
proof) through :mod:`~pagingcheck.impl.lib.logic`'s ``select``/``store``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any, ClassVar, Self

from pagingcheck.impl.lib.logic import Cond, Term, all_of, implies, ite, select, store
from pagingcheck.model.fingerprint import DIGEST_BYTES, encoding

#: ``held[user]`` of a user that holds nothing.
NOTHING = -1
#: The user read at a reference position nobody holds (no real user is negative).
NO_USER = -7

Table = Any
"""A dictionary when the kernel runs, a z3 array when a proof runs."""


@dataclass(frozen=True)
class Counted:
    """The counted references of every holding (see the module docstring).

    Concretely each table is a ``dict``; a key it lacks reads as the default
    (a user not in ``held`` holds :data:`NOTHING`). A value: changes return a
    new one.
    """

    # Its dictionaries are never changed once built, so a fingerprint may keep its encoding.
    FINGERPRINT_VALUE: ClassVar[bool] = True

    refcount: Table
    held: Table
    index: Table
    owner: Table

    @cached_property
    def behaviour_digest(self) -> bytes:
        """A fingerprint of every table but the ghost positions (``index`` and ``owner``),
        which only the proofs read: what the kernel's future depends on. Concrete
        states only; kept, as the tables never change.

        It hashes the class's name, then each table's name and encoding: every encoding
        carries its own length, so the sequence is told apart from any other."""
        digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
        digest.update(encoding(type(self).__name__))
        for f in fields(self):
            if f.name not in ("index", "owner"):
                digest.update(encoding(f.name))
                digest.update(_table_encoding(getattr(self, f.name)))
        return digest.digest()

    def holding(self, user: Hashable) -> Term:
        """What ``user`` holds, or :data:`NOTHING`."""
        return select(self.held, user, NOTHING)

    def holder(self, key: Term, position: Term) -> Any:
        """The user counted at ``position`` of ``key``'s references."""
        return select(select(self.owner, key, {}), position, NO_USER)

    def users(self, key: int) -> tuple[Any, ...]:
        """The users holding ``key``, in counted order (concrete states only)."""
        return tuple(self.holder(key, i) for i in range(int(self.refcount[key])))

    def counted(self, key: Term, position: Term, user: Any) -> Self:
        """``user`` holds ``key`` and is counted at ``position``."""
        row = store(select(self.owner, key, {}), position, user)
        return replace(
            self,
            held=store(self.held, user, key),
            index=store(self.index, user, position),
            owner=store(self.owner, key, row),
        )

    def uncounted(self, key: Term, user: Any) -> Self:
        """``user`` stops holding ``key``: the last counted user takes its position."""
        last = self.holder(key, select(self.refcount, key, 0) - 1)
        position = select(self.index, user, -1)
        row = store(select(self.owner, key, {}), position, last)
        return replace(
            self,
            held=store(store(self.held, user, NOTHING), last, ite(last == user, NOTHING, key)),
            index=store(self.index, last, position),
            owner=store(self.owner, key, row),
        )


#: The encodings of tables met lately, by identity (with the table, so its id is not
#: reused while kept). A transition changes some of a state's tables and keeps the
#: others (``store`` returns a table unchanged when its value is): exploring ``tiny``,
#: over two in five of the tables a new state has were encoded for an earlier one.
_TABLE_ENCODINGS: dict[int, tuple[Table, bytes]] = {}
#: How many tables' encodings are kept; past it the cache starts again.
TABLES_KEPT = 1 << 14


def _table_encoding(table: Table) -> bytes:
    """The fingerprint encoding of concrete ``table`` (a dict no one changes)."""
    found = _TABLE_ENCODINGS.get(id(table))
    if found is not None and found[0] is table:
        return found[1]
    code = encoding(table)
    if len(_TABLE_ENCODINGS) >= TABLES_KEPT:
        _TABLE_ENCODINGS.clear()
    _TABLE_ENCODINGS[id(table)] = (table, code)
    return code


def user_counted(s: Counted, user: Any, live: Cond) -> Cond:
    """A user that holds something holds a ``live`` one, and is counted there at its index.

    ``live`` says whether what the user holds may be held (a frame in use,
    an allocated slot); the caller computes it for ``s.holding(user)``.
    """
    key = s.holding(user)
    position = select(s.index, user, -1)
    return implies(
        key != NOTHING,
        all_of(
            live,
            position >= 0,
            position < select(s.refcount, key, 0),
            s.holder(key, position) == user,
        ),
    )


def reference_held(s: Counted, key: Term, position: Term) -> Cond:
    """Each counted reference of a holding is a user that holds it, indexed there."""
    holder = s.holder(key, position)
    return implies(
        all_of(key >= 0, position >= 0, position < select(s.refcount, key, 0)),
        all_of(s.holding(holder) == key, select(s.index, holder, -1) == position),
    )


@dataclass(frozen=True)
class Invariant:
    """One invariant: its name, what it says, and its per-element predicate over
    ``kinds`` of keys: "key" (a frame or a slot), "user", "position"."""

    name: str
    statement: str
    kinds: tuple[str, ...]
    holds: Callable[..., Cond]


def violations(s: Counted, invariants: Iterable[Invariant], keys: Iterable[Any]) -> list[str]:
    """Each of ``invariants`` broken by the concrete state ``s`` (whose holdings are
    ``keys``), with the element that breaks it."""
    keys = list(keys)
    positions = [(k, i) for k in keys for i in range(max(int(s.refcount[k]), 0))] + [
        (k, i) for k, row in s.owner.items() for i in row
    ]
    cases: dict[tuple[str, ...], list[tuple[Any, ...]]] = {
        ("key",): [(k,) for k in keys],
        ("user",): [(user,) for user in s.held],
        ("key", "position"): list(dict.fromkeys(positions)),
    }
    return [
        f"{invariant.name} at {case}"
        for invariant in invariants
        for case in cases[invariant.kinds]
        if not invariant.holds(s, *case)
    ]
