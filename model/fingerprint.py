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
"""

from __future__ import annotations

import dataclasses
import hashlib
from enum import Enum

import numpy as np

from pagingcheck.model.errors import InternalError

DIGEST_BYTES = 16


def fingerprint(*parts: object) -> bytes:
    """A 16-byte digest of ``parts``; equal values give equal digests in every run."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(_encode(parts))
    return digest.digest()


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "little") + payload


def _encode(part: object) -> bytes:
    if isinstance(part, np.ndarray):
        header = f"{part.dtype.str}{part.shape!r}".encode()
        return _frame(b"A", _frame(b"h", header) + np.ascontiguousarray(part).tobytes())
    if isinstance(part, np.generic):
        return _encode(part.item())
    if isinstance(part, bytes | bytearray):
        return _frame(b"B", bytes(part))
    if isinstance(part, Enum):
        return _frame(b"E", f"{type(part).__qualname__}.{part.name}".encode())
    if part is None or isinstance(part, bool | int | float | str):
        return _frame(b"S", repr(part).encode())
    if isinstance(part, tuple | list):
        tag = b"T" if isinstance(part, tuple) else b"L"
        return _frame(tag, b"".join(_encode(item) for item in part))
    if isinstance(part, set | frozenset):
        return _frame(b"F", b"".join(sorted(_encode(item) for item in part)))
    if isinstance(part, dict):
        items = sorted(_encode(key) + _encode(value) for key, value in part.items())
        return _frame(b"D", b"".join(items))
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        fields = [getattr(part, field.name) for field in dataclasses.fields(part)]
        return _frame(b"C", _encode(type(part).__qualname__) + _encode(tuple(fields)))
    raise InternalError(
        f"fingerprint: cannot encode a {type(part).__name__} stably; "
        "pass a snapshot made of tuples, ints, strings, enums, bytes and numpy arrays"
    )
