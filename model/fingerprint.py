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
from enum import Enum

import numpy as np

from pagingcheck.model.errors import InternalError

DIGEST_BYTES = 16

_MEMO = "_fingerprint_encoding"
_mutable_met = 0  # containers met so far that could change after encoding
# Encodings of the ints and strings met: a state is mostly small numbers and a few names.
_SCALARS: dict[int | str, bytes] = {}
_SCALARS_KEPT = 1 << 16


def fingerprint(*parts: object) -> bytes:
    """A 16-byte digest of ``parts``; equal values give equal digests in every run."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(_encode(parts))
    return digest.digest()


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "little") + payload


def _encode(part: object) -> bytes:
    global _mutable_met
    # The commonest kinds first, by exact type: the same bytes as the general cases below.
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
    kept = getattr(part, "__dict__", None)
    if kept is not None and _MEMO in kept:
        return kept[_MEMO]  # type: ignore[no-any-return]
    if isinstance(part, np.ndarray):
        _mutable_met += 1
        header = f"{part.dtype.str}{part.shape!r}".encode()
        return _frame(b"A", _frame(b"h", header) + np.ascontiguousarray(part).tobytes())
    if isinstance(part, np.generic):
        return _encode(part.item())
    if isinstance(part, bytes | bytearray):
        if isinstance(part, bytearray):
            _mutable_met += 1
        return _frame(b"B", bytes(part))
    if isinstance(part, Enum):
        return _frame(b"E", f"{type(part).__qualname__}.{part.name}".encode())
    if part is None or isinstance(part, bool | int | float | str):
        return _frame(b"S", repr(part).encode())
    if isinstance(part, tuple | list):
        if isinstance(part, tuple):
            return _frame(b"T", b"".join(_encode(item) for item in part))
        _mutable_met += 1
        return _frame(b"L", b"".join(_encode(item) for item in part))
    if isinstance(part, set | frozenset):
        if isinstance(part, set):
            _mutable_met += 1
        return _frame(b"F", b"".join(sorted(_encode(item) for item in part)))
    if isinstance(part, dict):
        _mutable_met += 1
        flat = _flat_dict(part)
        if flat is not None:
            return flat
        items = sorted(_encode(key) + _encode(value) for key, value in part.items())
        return _frame(b"D", b"".join(items))
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        return _encode_dataclass(part)
    raise InternalError(
        f"fingerprint: cannot encode a {type(part).__name__} stably; "
        "pass a snapshot made of tuples, ints, strings, enums, bytes and numpy arrays"
    )


def _flat_dict(part: dict[object, object]) -> bytes | None:
    """The encoding of a dict from ints (or tuples of ints) to ints, the kernel's commonest
    table: the ``repr`` of its sorted items, under a tag of its own (so no other value
    shares it); None for any other dict."""
    keys = iter(part)
    first = next(keys, None)
    if type(first) is tuple:
        if not all(type(key) is tuple and all(type(i) is int for i in key) for key in part):
            return None
    elif type(first) is not int or not all(type(key) is int for key in keys):
        return None
    if not all(type(value) is int for value in part.values()):
        return None
    return _frame(b"I", repr(sorted(part.items())).encode())


def _encode_dataclass(part: object) -> bytes:
    global _mutable_met
    kept = getattr(part, "__dict__", {}).get(_MEMO)
    if kept is not None:
        return kept  # type: ignore[no-any-return]
    before = _mutable_met
    fields = [getattr(part, field.name) for field in dataclasses.fields(part)]  # type: ignore[arg-type]
    encoding = _frame(b"C", _encode(type(part).__qualname__) + _encode(tuple(fields)))
    params = getattr(type(part), "__dataclass_params__", None)
    frozen = params is not None and params.frozen and hasattr(part, "__dict__")
    if frozen and (_mutable_met == before or getattr(part, "FINGERPRINT_VALUE", False)):
        object.__setattr__(part, _MEMO, encoding)
        _mutable_met = before  # what is inside is a value: it cannot change
    return encoding
