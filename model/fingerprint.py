"""Stable digests of state values, for the explorer's visited set and for traces.

``fingerprint(*parts)`` hashes its parts with BLAKE2b. Every part is encoded
as a type tag, a length and a payload, so different structures never share
an encoding, and nothing depends on Python's per-run ``hash()`` seed: the
same state gives the same bytes in every run and on every machine.

Encoded types:

* numpy arrays: dtype, shape and the raw bytes (C order);
* ``bytes``: the bytes themselves (so digests of components nest);
* ``None``, ``bool``, ``int``, ``float``, ``str`` and enum members: ``repr``;
* tuples and lists: their items in order; sets and frozensets: their items'
  encodings sorted; dicts: their (key, value) encodings sorted;
* dataclass instances: the class name and the fields in order.

Anything else raises :class:`InternalError`: its ``repr`` might hold a memory
address, which would make the digest differ from run to run.

A frozen dataclass instance is a value, so its encoding is computed once and
kept on the instance: states that share records (copies share every record
they did not change) encode only what changed. That holds when nothing in it
can change: it is kept only if no list, dict, set or array was met inside,
or if its class declares ``FINGERPRINT_VALUE = True`` (its containers are
never changed after it is built, as the kernel library's whole-state tables).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from enum import Enum
from itertools import chain
from typing import Any

import numpy as np

from pagingcheck.model.errors import InternalError

DIGEST_BYTES = 16

_MEMO = "_fingerprint_encoding"
_mutable_met = 0  # containers met so far that could change after encoding
# Encodings of the ints and strings met: a state is mostly small numbers and a few names.
_SCALARS: dict[int | str, bytes] = {}
_SCALARS_KEPT = 1 << 16

Encoder = Callable[[Any], bytes]


def fingerprint(*parts: object) -> bytes:
    """A 16-byte digest of ``parts``; equal values give equal digests in every run."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(_encode(parts))
    return digest.digest()


def encoding(part: object) -> bytes:
    """The canonical encoding of ``part`` that :func:`fingerprint` hashes: equal values give
    equal encodings, different values (or structures, or types) different ones. For a
    caller that keeps the encodings of values it knows do not change."""
    return _encode(part)


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "little") + payload


def _encode(part: object) -> bytes:
    # The commonest kinds inline, by exact type; every other kind through the encoder its
    # type was given once (:func:`_encoder_for`), rather than a chain of isinstance tests
    # per value: the same bytes either way.
    kind = type(part)
    if kind is int or kind is str:
        known = _SCALARS.get(part)  # type: ignore[call-overload]
        if known is None:
            known = _frame(b"S", repr(part).encode())
            if len(_SCALARS) < _SCALARS_KEPT:
                _SCALARS[part] = known  # type: ignore[index]
        return known  # type: ignore[no-any-return]
    if kind is tuple:
        return _frame(b"T", b"".join([_encode(item) for item in part]))  # type: ignore[attr-defined]
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        encoder = _ENCODERS[kind] = _encoder_for(kind)
    return encoder(part)


def _encoder_for(kind: type) -> Encoder:
    """How values of exactly ``kind`` are encoded. The tests run in this order, so a type
    of two kinds (an ``IntEnum`` is an enum and an int) is encoded as the first."""
    if issubclass(kind, np.ndarray):
        return _encode_array
    if issubclass(kind, np.generic):
        return _encode_numpy_scalar
    if issubclass(kind, bytes | bytearray):
        return _encode_bytearray if issubclass(kind, bytearray) else _encode_bytes
    if issubclass(kind, Enum):
        return _encode_enum
    if kind is type(None) or issubclass(kind, bool | int | float | str):
        return _encode_repr
    if issubclass(kind, tuple):
        return _encode_tuple
    if issubclass(kind, list):
        return _encode_list
    if issubclass(kind, set | frozenset):
        return _encode_set if issubclass(kind, set) else _encode_frozenset
    if issubclass(kind, dict):
        return _encode_dict
    if dataclasses.is_dataclass(kind) and not issubclass(kind, type):
        return _encode_dataclass
    return _unencodable


def _encode_array(part: np.ndarray) -> bytes:
    global _mutable_met
    _mutable_met += 1
    header = f"{part.dtype.str}{part.shape!r}".encode()
    return _frame(b"A", _frame(b"h", header) + np.ascontiguousarray(part).tobytes())


def _encode_numpy_scalar(part: np.generic) -> bytes:
    return _encode(part.item())


def _encode_bytes(part: bytes) -> bytes:
    return _frame(b"B", bytes(part))


def _encode_bytearray(part: bytearray) -> bytes:
    global _mutable_met
    _mutable_met += 1
    return _frame(b"B", bytes(part))


def _encode_enum(part: Enum) -> bytes:
    return _frame(b"E", f"{type(part).__qualname__}.{part.name}".encode())


def _encode_repr(part: object) -> bytes:
    return _frame(b"S", repr(part).encode())


def _encode_tuple(part: tuple[object, ...]) -> bytes:
    return _frame(b"T", b"".join([_encode(item) for item in part]))


def _encode_list(part: list[object]) -> bytes:
    global _mutable_met
    _mutable_met += 1
    return _frame(b"L", b"".join([_encode(item) for item in part]))


def _encode_frozenset(part: frozenset[object]) -> bytes:
    return _frame(b"F", b"".join(sorted([_encode(item) for item in part])))


def _encode_set(part: set[object]) -> bytes:
    global _mutable_met
    _mutable_met += 1
    return _encode_frozenset(part)  # type: ignore[arg-type]


def _encode_dict(part: dict[object, object]) -> bytes:
    global _mutable_met
    _mutable_met += 1
    flat = _flat_dict(part)
    if flat is not None:
        return flat
    items = sorted([_encode(key) + _encode(value) for key, value in part.items()])
    return _frame(b"D", b"".join(items))


def _unencodable(part: object) -> bytes:
    raise InternalError(
        f"fingerprint: cannot encode a {type(part).__name__} stably; "
        "pass a snapshot made of tuples, ints, strings, enums, bytes and numpy arrays"
    )


def _flat_dict(part: dict[object, object]) -> bytes | None:
    """The encoding of a dict from ints (or tuples of ints) to ints or bools, the kernel's
    commonest table: the ``repr`` of its sorted items, under a tag of its own (so no other
    value shares it; ``repr`` tells ``True`` from ``1``); None for any other dict."""
    if not part:
        return None
    key_types = set(map(type, part))
    if key_types == _TUPLE:
        if not set(map(type, chain.from_iterable(part))) <= _INT:  # type: ignore[arg-type]
            return None
    elif key_types != _INT:
        return None
    if not set(map(type, part.values())) <= _INT_OR_BOOL:
        return None
    return _frame(b"I", repr(sorted(part.items())).encode())


_INT: frozenset[type] = frozenset({int})
_INT_OR_BOOL: frozenset[type] = frozenset({int, bool})
_TUPLE: frozenset[type] = frozenset({tuple})


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What encoding a dataclass needs of its class, found once per class."""

    names: tuple[str, ...]  # its fields, in order
    name: bytes  # the encoding of its qualified name
    keeps: bool  # frozen with a ``__dict__``: a value whose encoding may be kept on it


_LAYOUTS: dict[type, _Layout] = {}


def _layout(kind: type) -> _Layout:
    found = _LAYOUTS.get(kind)
    if found is None:
        params = getattr(kind, "__dataclass_params__", None)
        found = _LAYOUTS[kind] = _Layout(
            tuple(field.name for field in dataclasses.fields(kind)),
            _encode(kind.__qualname__),
            params is not None and bool(params.frozen),
        )
    return found


def _encode_dataclass(part: object) -> bytes:
    global _mutable_met
    kept = getattr(part, "__dict__", None)
    if kept is not None:
        memo = kept.get(_MEMO)
        if memo is not None:
            return memo  # type: ignore[no-any-return]
    layout = _layout(type(part))
    before = _mutable_met
    fields = b"".join([_encode(getattr(part, name)) for name in layout.names])
    encoding = _frame(b"C", layout.name + _frame(b"T", fields))
    if (
        layout.keeps
        and kept is not None
        and (_mutable_met == before or getattr(part, "FINGERPRINT_VALUE", False))
    ):
        object.__setattr__(part, _MEMO, encoding)
        _mutable_met = before  # what is inside is a value: it cannot change
    return encoding


_ENCODERS: dict[type, Encoder] = {}
