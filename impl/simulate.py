"""Trace-driven simulation of a replacement policy with a fixed number of frames.

:func:`simulate` runs a reference string, a sequence of ``(page, write)``
pairs, through a :class:`~pagingcheck.impl.lib.replacement.Policy` (the very
objects the kernel uses) on ``frames`` frames, emulating the hardware:

* every reference sets the R bit of its frame, and a write sets M;
* a reference to a resident page is a hit, reported with ``accessed``;
* any other reference is a fault (cold misses included): the page goes to
  the lowest free frame, or, when none is free, to the frame of the victim
  the policy picks among all frames (one process, so global and local
  allocation agree); evicting a page whose M bit is set counts a writeback;
  the new page is reported with ``loaded``, which counts as its reference;
* every ``tick`` references the policy's ``tick`` runs (0: never). By
  default only policies that learn from ticks (NRU, aging) are ticked, once
  every ``frames`` references.

``now`` is the index of the current reference, so "opt" can be given the
reference string itself as its future. Pages still dirty at the end are not
written back and not counted.

Input readers turn text into references: :func:`parse_refs` for
``"1,2w,3"``; and lazily, a block of lines at a time, :func:`read_refs` for
a file of one page per line, :func:`read_kinds` for ``KIND PAGE`` lines and
:func:`read_lackey` for a valgrind ``--tool=lackey --trace-mem=yes`` log;
:func:`open_trace` opens a file (gzip-compressed or not) and
:func:`detect_format` tells these formats apart. Bad input raises
:class:`UserError` naming the item or the line.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from io import BufferedReader
from itertools import accumulate, chain, compress, count, islice, repeat
from operator import add, floordiv, itemgetter, ne, sub
from typing import BinaryIO, Literal

from pagingcheck.impl.lib.replacement import DEFAULT_TAU, Policy, make_policy, needs_tick
from pagingcheck.model.errors import InternalError, UserError, quote, shorten

Ref = tuple[Hashable, bool]
"""One reference: the page, and whether it is a write."""

PROGRESS_EVERY = 1 << 16
"""References between two calls of the progress callback."""

_first = itemgetter(0)
_second = itemgetter(1)


@dataclass(frozen=True)
class SimResult:
    """Counts from one simulation run; ``hits + faults == references``."""

    policy: str
    frames: int
    tick: int
    references: int
    faults: int
    hits: int
    writebacks: int | None  # None: counted in one pass over every frame count (faults only)

    @property
    def fault_rate(self) -> float:
        """Faults per reference (0.0 for an empty reference string)."""
        return self.faults / self.references if self.references else 0.0

    def as_dict(self) -> dict[str, object]:
        """The result as a JSON-ready mapping, fault rate included."""
        return {
            "policy": self.policy,
            "frames": self.frames,
            "tick": self.tick,
            "references": self.references,
            "faults": self.faults,
            "hits": self.hits,
            "writebacks": self.writebacks,
            "fault_rate": self.fault_rate,
        }


@dataclass(frozen=True)
class Step:
    """What one reference did, to follow a simulation by hand: whether it hit, the frame
    that holds its page now, the page a fault evicted (None if the frame was free) and
    whether that page was written back, then every frame's page, R and M bits and the
    policy's own state (:meth:`Policy.snapshot`) after it."""

    index: int
    page: Hashable
    write: bool
    hit: bool
    frame: int
    evicted: Hashable | None
    written_back: bool
    frames: tuple[Hashable | None, ...]
    referenced: tuple[int, ...]
    modified: tuple[int, ...]
    policy: tuple[object, ...]

    def as_dict(self) -> dict[str, object]:
        """The step as a JSON-ready mapping (its tuples as lists)."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}


def _plain(value: object) -> object:
    """``value`` with tuples as lists, for JSON."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


class SimBits:
    """Emulated R and M bits, one byte each per frame (a :class:`RefBits`)."""

    __slots__ = ("m", "r")

    def __init__(self, frames: int) -> None:
        self.r = bytearray(frames)
        self.m = bytearray(frames)

    def referenced(self, frame: int) -> bool:
        return self.r[frame] != 0

    def modified(self, frame: int) -> bool:
        return self.m[frame] != 0

    def clear_referenced(self, frame: int) -> None:
        self.r[frame] = 0


def default_tick(policy: Policy, frames: int) -> int:
    """The tick interval used when none is given: ``frames`` for policies that
    need ticks (see :func:`~pagingcheck.impl.lib.replacement.needs_tick`), else 0."""
    return frames if needs_tick(policy) else 0


def simulate(
    refs: Iterable[Ref],
    policy: Policy,
    frames: int,
    *,
    tick: int | None = None,
    progress: Callable[[int], None] | None = None,
    watch: Callable[[Step], None] | None = None,
) -> SimResult:
    """Run ``refs`` through ``policy`` on ``frames`` empty frames and count.

    Requires: ``policy`` is fresh (it has been told of no frames). ``tick`` is
    the number of references between ticks (0: never; None: see
    :func:`default_tick`); a tick at time t runs before reference t.
    ``progress`` is called with the number of references done so far every
    :data:`PROGRESS_EVERY` references. ``watch``, when given, is called with the
    :class:`Step` of every reference, in order (the loop then stops after each
    one, so it is for small traces). Changes: the policy's state. Raises
    UserError for frames < 1 or tick < 0 (and passes on the UserError of a
    reader that meets bad input); InternalError if the policy returns a frame
    that is not a candidate.
    """
    _check(frames, tick)
    if tick is None:
        tick = default_tick(policy, frames)

    bits = SimBits(frames)
    r = bits.r
    m = bits.m
    where: dict[Hashable, int] = {}  # resident page -> frame
    page_of: list[Hashable] = [None] * frames
    free = list(range(frames - 1, -1, -1))  # pop() gives the lowest frame
    candidates = range(frames)
    where_get = where.get
    accessed = policy.accessed
    loaded = policy.loaded
    removed = policy.removed
    victim = policy.victim

    never = sys.maxsize
    next_tick = tick if tick else never
    next_report = PROGRESS_EVERY if progress is not None else never
    source = iter(refs)
    done = 0
    faults = 0
    writebacks = 0
    while True:
        # Run up to the next tick, progress report or watched step without checking.
        stop = min(next_tick, next_report, done + 1 if watch is not None else never)
        before = (page_of[:], faults, writebacks) if watch is not None else None
        now = done - 1
        for now, (page, write) in enumerate(islice(source, stop - done), done):
            frame = where_get(page)
            if frame is not None:
                r[frame] = 1
                if write:
                    m[frame] = 1
                accessed(frame, now, write)
                continue
            faults += 1
            if free:
                frame = free.pop()
            else:
                frame = victim(candidates, now, bits)
                if frame not in candidates:
                    raise InternalError(
                        f"simulate: policy {policy.name!r} chose frame {frame!r}, "
                        f"not one of frames 0..{frames - 1}"
                    )
                del where[page_of[frame]]
                if m[frame]:
                    writebacks += 1
                removed(frame)
            where[page] = frame
            page_of[frame] = page
            r[frame] = 1
            m[frame] = 1 if write else 0
            loaded(frame, page, now)
        done = now + 1
        if before is not None and watch is not None and done == stop:
            watch(_step(now, page, write, where[page], before, (faults, writebacks), bits, policy))
        if done < stop:
            break
        if done == next_tick:
            policy.tick(done, bits)
            next_tick += tick
        if done == next_report and progress is not None:
            progress(done)
            next_report += PROGRESS_EVERY
    return SimResult(
        policy=policy.name,
        frames=frames,
        tick=tick,
        references=done,
        faults=faults,
        hits=done - faults,
        writebacks=writebacks,
    )


def _step(
    index: int,
    page: Hashable,
    write: bool,
    frame: int,
    before: tuple[list[Hashable], int, int],
    after: tuple[int, int],
    bits: SimBits,
    policy: Policy,
) -> Step:
    """The :class:`Step` of reference ``index``, from the frames' pages and the fault and
    writeback counts before it and the counts after."""
    pages, faults, writebacks = before
    hit = after[0] == faults
    return Step(
        index=index,
        page=page,
        write=bool(write),
        hit=hit,
        frame=frame,
        evicted=None if hit else pages[frame],
        written_back=after[1] > writebacks,
        frames=tuple(_pages_after(pages, frame, page)),
        referenced=tuple(bits.r),
        modified=tuple(bits.m),
        policy=policy.snapshot(),
    )


def _pages_after(pages: list[Hashable], frame: int, page: Hashable) -> list[Hashable]:
    """The frames' pages after a reference put ``page`` in ``frame``."""
    after = list(pages)
    after[frame] = page
    return after


def _check(frames: int, tick: int | None) -> None:
    if frames < 1:
        raise UserError(f"frames: {frames} must be at least 1")
    if tick is not None and tick < 0:
        raise UserError(f"tick: {tick} must be at least 0 (0 means never)")


def run(
    name: str,
    refs: Iterable[Ref],
    frames: int,
    *,
    seed: int = 0,
    tau: int = DEFAULT_TAU,
    tick: int | None = None,
    progress: Callable[[int], None] | None = None,
    watch: Callable[[Step], None] | None = None,
) -> SimResult:
    """Build policy ``name`` (see :func:`make_policy`) and :func:`simulate` ``refs`` with it
    (``watch`` as there).

    For "opt" the references are first loaded into memory (compactly, see
    :func:`load`) to serve as its future, and ``progress`` reports that
    loading pass; every other policy streams them.
    """
    _check(frames, tick)
    if name == "opt":
        pages, writes = load(refs, progress)
        policy = make_policy(name, future=pages)
        refs = zip(pages, map(bool, writes), strict=True)
        return simulate(refs, policy, frames, tick=tick, watch=watch)
    policy = make_policy(name, seed=seed, tau=tau)
    return simulate(refs, policy, frames, tick=tick, progress=progress, watch=watch)


def load(
    refs: Iterable[Ref], progress: Callable[[int], None] | None = None
) -> tuple[Sequence[Hashable], bytearray]:
    """All of ``refs`` in memory: the pages (an unsigned 64-bit array when every
    page is such an int, else a list) and a bytearray of write flags.

    ``progress`` is called as in :func:`simulate`.
    """
    pages: array[int] = array("Q")
    mixed: list[Hashable] | None = None
    writes = bytearray()
    source = iter(refs)
    done = 0
    while chunk := list(islice(source, PROGRESS_EVERY)):
        chunk_pages = list(map(_first, chunk))
        writes.extend(map(bool, map(_second, chunk)))
        if mixed is None:
            try:
                pages.extend(array("Q", chunk_pages))
            except (TypeError, OverflowError):
                mixed = [*pages, *chunk_pages]
        else:
            mixed.extend(chunk_pages)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return (pages if mixed is None else mixed), writes


# -- every frame count -------------------------------------------------------------------

#: Policies that are stack algorithms (Mattson et al., 1970): the pages resident with F
#: frames are always among those resident with F + 1, so one pass over the references,
#: measuring each one's depth in the policy's stack, gives the faults for every F, and
#: more frames never fault more.
STACK_POLICIES = ("lru", "opt")


@dataclass(frozen=True)
class Curve:
    """The faults of one policy for every frame count of ``sizes``, and where more frames
    fault more (Belady's anomaly): each ``(frames, faults, faults with one frame more)``."""

    policy: str
    points: tuple[SimResult, ...]
    one_pass: bool  # a stack algorithm, measured in one pass

    @property
    def anomalies(self) -> tuple[tuple[int, int, int], ...]:
        """Each frame count after which one more frame faults more."""
        pairs = zip(self.points, self.points[1:], strict=False)
        return tuple(
            (a.frames, a.faults, b.faults)
            for a, b in pairs
            if b.frames == a.frames + 1 and b.faults > a.faults
        )


def curve(
    name: str,
    refs: Iterable[Ref],
    sizes: range,
    *,
    seed: int = 0,
    tau: int = DEFAULT_TAU,
    tick: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Curve:
    """The faults of policy ``name`` for every number of frames in ``sizes`` (step 1).
    The references are loaded into memory once (``progress`` reports that pass); a stack
    algorithm (:data:`STACK_POLICIES`) then takes one more pass for all of ``sizes``, any
    other policy a run per size."""
    (found,) = curves([name], refs, sizes, seed=seed, tau=tau, tick=tick, progress=progress)
    return found


def curves(
    names: Sequence[str],
    refs: Iterable[Ref],
    sizes: range,
    *,
    seed: int = 0,
    tau: int = DEFAULT_TAU,
    tick: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Curve]:
    """The :func:`curve` of each policy in ``names`` over the same references, read
    once (``progress`` reports that pass)."""
    if sizes.step != 1 or not sizes or sizes.start < 1:
        raise UserError(f"frames: {sizes.start}-{sizes.stop - 1} is not a range of counts >= 1")
    _check(sizes.start, tick)
    pages, writes = load(refs, progress)
    return [_curve(name, pages, writes, sizes, seed, tau, tick) for name in names]


def _curve(
    name: str,
    pages: Sequence[Hashable],
    writes: bytearray,
    sizes: range,
    seed: int,
    tau: int,
    tick: int | None,
) -> Curve:
    """:func:`curve` over references already loaded by :func:`load`."""
    if name in STACK_POLICIES:
        depths = (_lru_depths if name == "lru" else _opt_depths)(pages, sizes.stop - 1)
        hits = list(accumulate(depths))
        points = tuple(
            SimResult(name, size, 0, len(pages), len(pages) - hits[size - 1], hits[size - 1], None)
            for size in sizes
        )
        return Curve(name, points, one_pass=True)
    runs = (
        run(name, zip(pages, map(bool, writes), strict=True), size, seed=seed, tau=tau, tick=tick)
        for size in sizes
    )
    return Curve(name, tuple(runs), one_pass=False)


def _lru_depths(pages: Sequence[Hashable], top: int) -> list[int]:
    """How many references hit at each depth 0 .. top-1 of the LRU stack (most recent
    first): a reference at depth d hits with more than d frames. The stack is kept to
    ``top`` pages, so each step is a search and a move in C."""
    stack: list[Hashable] = []
    members: set[Hashable] = set()
    depths = [0] * top
    for page in pages:
        if page in members:
            depth = stack.index(page)
            depths[depth] += 1
            if depth:
                del stack[depth]
                stack.insert(0, page)
            continue
        stack.insert(0, page)
        members.add(page)
        if len(stack) > top:
            members.discard(stack.pop())
    return depths


def _opt_depths(pages: Sequence[Hashable], top: int) -> list[int]:
    """As :func:`_lru_depths` for OPT, whose stack is ordered by priority: after each
    reference the referenced page is on top, and down to its old depth each level keeps
    whichever of its page and the one pushed down from above is needed sooner (Mattson's
    update), the other going on down."""
    never = len(pages)
    upcoming = [never] * len(pages)  # when each reference's page is referenced next
    last: dict[Hashable, int] = {}
    for index in range(len(pages) - 1, -1, -1):
        upcoming[index] = last.get(pages[index], never)
        last[pages[index]] = index
    due: dict[Hashable, int] = {}
    stack: list[Hashable] = []
    members: set[Hashable] = set()
    depths = [0] * top
    for index, page in enumerate(pages):
        if page in members:
            depth = stack.index(page)
            depths[depth] += 1
        else:
            depth = len(stack)  # below the bottom: a fault with every number of frames
            members.add(page)
        due[page] = upcoming[index]
        if not stack:
            stack.append(page)
            continue
        if depth == 0:
            continue
        carried, stack[0] = stack[0], page
        for level in range(1, min(depth, len(stack))):
            if due[carried] < due[stack[level]]:
                carried, stack[level] = stack[level], carried
        if depth < len(stack):
            stack[depth] = carried
        elif len(stack) < top:
            stack.append(carried)
        else:
            members.discard(carried)
    return depths


# -- input formats -----------------------------------------------------------------------

_ITEM = re.compile(rb"\s*(\d+)\s*([rRwW]?)\s*")

#: Page numbers are below this (64 bits), so at most this many digits long.
MAX_PAGE = 1 << 64
MAX_PAGE_DIGITS = 20
#: The largest access a lackey record may describe, in bytes (real ones are a few words).
MAX_ACCESS_BYTES = 1 << 16


def _item(text: bytes, where: str) -> Ref:
    """Parse ``PAGE``, ``PAGEr`` or ``PAGEw`` (a non-negative decimal page number)."""
    if text[-1:] in (b"w", b"W") and text[:-1].isdigit() and len(text) <= MAX_PAGE_DIGITS:
        return int(text[:-1]), True
    match = _ITEM.fullmatch(text)
    if match is None:
        shown = quote(text.decode(errors="replace").strip())
        raise UserError(
            f"{where}: {shown} is not a page number "
            "(expected a non-negative integer, optionally followed by w for a write)"
        )
    if len(match[1]) > MAX_PAGE_DIGITS:
        raise UserError(f"{where}: a page number of {len(match[1])} digits is too large")
    return int(match[1]), match[2] in (b"w", b"W")


def parse_refs(text: str) -> list[Ref]:
    """Parse a comma-separated list such as ``"1,2w,3"`` (w marks a write).

    Raises UserError naming the bad item.
    """
    items = text.encode().split(b",")
    return [_item(item, f"--refs item {index}") for index, item in enumerate(items, 1)]


BLOCK_BYTES = 1 << 20
"""How much of a file the readers parse at once: memory stays bounded however
long the file is, and most of the parsing loops run in C."""


def _blocks(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Whole lines of ``stream``, about :data:`BLOCK_BYTES` at a time, each block
    with the line number (from 1) of its first line. Every block ends with a
    newline (one is added after an unterminated last line)."""
    first_line = 1
    rest = b""
    while True:
        data = stream.read(BLOCK_BYTES)
        if data:
            data = rest + data
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            if not block:
                continue  # a line longer than a block: keep reading
        elif rest:
            block, rest = rest + b"\n", b""
        else:
            return
        yield first_line, block
        first_line += block.count(b"\n")


def _lines(block: bytes) -> list[bytes]:
    """The lines of a block from :func:`_blocks`, without their newlines."""
    lines = block.split(b"\n")
    lines.pop()  # the empty string after the final newline
    return lines


def read_refs(stream: BinaryIO, source: str = "refs") -> Iterator[Ref]:
    """References from a binary stream of one page number per line (``12`` or ``12w``).

    Blank lines and lines starting with ``#`` are skipped. Reads a block at a
    time (see :data:`BLOCK_BYTES`). Raises UserError naming ``source`` and the
    line.
    """
    return chain.from_iterable(_ref_blocks(stream, source))


def _ref_blocks(stream: BinaryIO, source: str) -> Iterator[Iterable[Ref]]:
    for first_line, block in _blocks(stream):
        lines = _lines(block)
        refs = _refs_fast(lines)
        if refs is None or (refs[0] and max(refs[0]) >= MAX_PAGE):
            yield _refs_slow(lines, first_line, source)
            continue
        pages, writes = refs
        if pages and min(pages) < 0:
            index = next(index for index, page in enumerate(pages) if page < 0)
            raise UserError(
                f"{source}:{first_line + index}: page number {pages[index]} is negative"
            )
        yield zip(pages, writes, strict=False)  # writes may be an endless repeat


def _refs_fast(lines: list[bytes]) -> tuple[list[int], Iterable[bool]] | None:
    """Fast paths, looping in C: every line a page number, or a page number with
    an optional ``w``. None when some line needs the careful per-line parse."""
    try:
        return list(map(int, lines)), repeat(False)
    except ValueError:
        pass
    try:
        pages = list(map(int, map(bytes.removesuffix, lines, repeat(b"w"))))
    except ValueError:
        return None
    return pages, list(map(bytes.endswith, lines, repeat(b"w")))


def _refs_slow(lines: list[bytes], first_line: int, source: str) -> list[Ref]:
    """The references of ``lines`` (numbered from ``first_line``), one line at a time."""
    refs: list[Ref] = []
    for number, line in enumerate(lines, first_line):
        try:
            page = int(line)
        except ValueError:
            stripped = line.strip()
            if stripped and not stripped.startswith(b"#"):
                refs.append(_item(stripped, f"{source}:{number}"))
            continue
        if not 0 <= page < MAX_PAGE:
            problem = "is negative" if page < 0 else "is too large (at most 64 bits)"
            raise UserError(f"{source}:{number}: page number {shorten(str(page))} {problem}")
        refs.append((page, False))
    return refs


_LACKEY_READ = frozenset({b"I  ", b" L "})
_LACKEY_WRITE = frozenset({b" S ", b" M "})
_LACKEY_KINDS = _LACKEY_READ | _LACKEY_WRITE
_kind = itemgetter(slice(0, 3))
_body = itemgetter(slice(3, None))


def read_lackey(stream: BinaryIO, page_size: int, source: str = "lackey") -> Iterator[Ref]:
    """References from a valgrind lackey memory trace (``--tool=lackey --trace-mem=yes``).

    Record lines are ``I  ADDR,SIZE`` (instruction fetch), `` L ADDR,SIZE``
    (load), `` S ADDR,SIZE`` (store) and `` M ADDR,SIZE`` (modify: load then
    store), ADDR in hex. I and L read, S and M write; one record is one
    reference to page ADDR // page_size, and a record that straddles pages
    is one reference to each page it overlaps, in address order. Blank lines,
    valgrind's own ``==PID==`` / ``--PID--`` lines and ``SB`` (superblock)
    lines are skipped; any other line is malformed and raises UserError naming
    ``source`` and the line. Reads a block at a time (see :data:`BLOCK_BYTES`).
    """
    if page_size < 1:
        raise UserError(f"page size: {page_size} must be at least 1 byte")
    return chain.from_iterable(_lackey_blocks(stream, page_size, source))


def _lackey_blocks(stream: BinaryIO, page_size: int, source: str) -> Iterator[Iterable[Ref]]:
    for first_line, block in _blocks(stream):
        refs = _lackey_fast(block, page_size)
        if refs is None:
            refs = _lackey_slow(_lines(block), first_line, page_size, source)
        yield refs


def _lackey_fast(block: bytes, page_size: int) -> Iterable[Ref] | None:
    """The references of a block in which every line is a well-formed record,
    parsed with loops in C; None if any line needs the careful per-line parse.

    Splitting at commas and newlines alike gives, for well-formed lines, the
    fields "KIND ADDR" and "SIZE" alternately. Any other line breaks that:
    a record head where a size should be fails to parse as a size, so every
    head lands on a head field, and the field count then leaves exactly one
    comma per line.
    """
    fields = block.replace(b"\n", b",").split(b",")
    if len(fields) != 2 * block.count(b"\n") + 1:
        return None
    heads = fields[0:-1:2]
    if not heads:
        return []
    kinds = list(map(_kind, heads))
    if not _LACKEY_KINDS.issuperset(kinds):
        return None
    try:
        addresses = list(map(int, map(_body, heads), repeat(16)))
        sizes = list(map(int, fields[1::2]))
    except ValueError:
        return None
    if min(addresses) < 0 or min(sizes) < 1 or max(sizes) > MAX_ACCESS_BYTES:
        return None
    pages = list(map(floordiv, addresses, repeat(page_size)))
    ends = map(sub, map(add, addresses, sizes), repeat(1))
    lasts = list(map(floordiv, ends, repeat(page_size)))
    writes = list(map(_LACKEY_WRITE.__contains__, kinds))
    if pages == lasts:
        return zip(pages, writes, strict=True)
    # Some records straddle pages (few): splice their further pages in.
    parts: list[Iterable[Ref]] = []
    start = 0
    for index in compress(count(), map(ne, pages, lasts)):
        parts.append(zip(pages[start : index + 1], writes[start : index + 1], strict=True))
        write = writes[index]
        parts.append([(page, write) for page in range(pages[index] + 1, lasts[index] + 1)])
        start = index + 1
    parts.append(zip(pages[start:], writes[start:], strict=True))
    return chain.from_iterable(parts)


def _lackey_slow(lines: list[bytes], first_line: int, page_size: int, source: str) -> list[Ref]:
    """The references of ``lines`` (numbered from ``first_line``), one line at a time."""
    refs: list[Ref] = []
    for number, line in enumerate(lines, first_line):
        kind = line[:3]
        if kind not in _LACKEY_KINDS:
            stripped = line.strip()
            if not stripped or stripped.startswith((b"==", b"--", b"SB ")):
                continue
            raise _malformed(source, number, line)
        address_text, comma, size_text = line[3:].partition(b",")
        try:
            address = int(address_text, 16)
            size = int(size_text)
        except ValueError:
            raise _malformed(source, number, line) from None
        if not comma or address < 0 or size < 1:
            raise _malformed(source, number, line)
        if size > MAX_ACCESS_BYTES:
            raise UserError(
                f"{source}:{number}: an access of {size} bytes; lackey records are at most "
                f"{MAX_ACCESS_BYTES} bytes long, so this is not a lackey log"
            )
        write = kind in _LACKEY_WRITE
        last = (address + size - 1) // page_size
        refs.extend((page, write) for page in range(address // page_size, last + 1))
    return refs


#: The kinds of a ``KIND PAGE`` line, as lackey names its records: fetch, load, store
#: and modify; a store or a modify dirties the page.
_KIND_READ = frozenset({b"I", b"L"})
_KIND_WRITE = frozenset({b"S", b"M"})
_KINDS = _KIND_READ | _KIND_WRITE


def read_kinds(stream: BinaryIO, source: str = "refs") -> Iterator[Ref]:
    """References from ``KIND PAGE`` lines: KIND is ``I`` (fetch) or ``L`` (load), which
    read, or ``S`` (store) or ``M`` (modify), which write; PAGE a page number, decimal or
    ``0x`` hex. The form a lackey log takes once its addresses are turned into pages.

    Blank lines and lines starting with ``#`` are skipped. Reads a block at a time
    (see :data:`BLOCK_BYTES`). Raises UserError naming ``source`` and the line.
    """
    return chain.from_iterable(_kind_blocks(stream, source))


def _kind_blocks(stream: BinaryIO, source: str) -> Iterator[Iterable[Ref]]:
    for first_line, block in _blocks(stream):
        lines = _lines(block)
        refs = _kinds_fast(lines)
        yield _kinds_slow(lines, first_line, source) if refs is None else refs


def _kinds_fast(lines: list[bytes]) -> Iterable[Ref] | None:
    """The references of ``lines`` when every one is ``KIND DECIMAL`` with one space,
    parsed with loops in C; None when some line needs the careful per-line parse."""
    kinds = list(map(_kind_letter, lines))
    if not _KINDS.issuperset(kinds) or not all(map(_spaced, lines)):
        return None
    try:
        pages = list(map(int, map(_kind_page, lines)))
    except ValueError:
        return None
    if pages and (min(pages) < 0 or max(pages) >= MAX_PAGE):
        return None
    return zip(pages, map(_KIND_WRITE.__contains__, kinds), strict=True)


_kind_letter = itemgetter(slice(0, 1))
_kind_page = itemgetter(slice(2, None))


def _spaced(line: bytes) -> bool:
    return line[1:2] == b" " and line[2:3].isdigit()


def _kinds_slow(lines: list[bytes], first_line: int, source: str) -> list[Ref]:
    """The references of ``lines`` (numbered from ``first_line``), one line at a time."""
    refs: list[Ref] = []
    for number, line in enumerate(lines, first_line):
        fields = line.split()
        if not fields or fields[0].startswith(b"#"):
            continue
        if len(fields) != 2 or fields[0].upper() not in _KINDS:
            shown = quote(line.decode(errors="replace").strip())
            raise UserError(
                f"{source}:{number}: {shown} is not a 'KIND PAGE' line (KIND is I, L, S or M; "
                "PAGE a page number)"
            )
        try:
            page = int(fields[1], 0)
        except ValueError:
            shown = quote(fields[1].decode(errors="replace"))
            raise UserError(f"{source}:{number}: {shown} is not a page number") from None
        if not 0 <= page < MAX_PAGE:
            problem = "is negative" if page < 0 else "is too large (at most 64 bits)"
            raise UserError(f"{source}:{number}: page number {shorten(str(page))} {problem}")
        refs.append((page, fields[0].upper() in _KIND_WRITE))
    return refs


# -- files -------------------------------------------------------------------------------

Format = Literal["pages", "kinds", "lackey"]
FORMATS: tuple[str, ...] = ("pages", "kinds", "lackey")
GZIP_MAGIC = b"\x1f\x8b"

_LACKEY_LINE = re.compile(rb"(?:I  | [LSM] )[0-9a-fA-F]+,[0-9]+\s*|(?:==|--)[0-9]+(?:==|--).*")
_KIND_LINE = re.compile(rb"[ILSMilsm]\s+(?:0[xX][0-9a-fA-F]+|[0-9]+)\s*")


def open_trace(raw: BufferedReader) -> BinaryIO:
    """The references' bytes of ``raw`` (a file opened for reading in binary): through
    gzip when the file is gzip-compressed (told by its first two bytes, whatever its
    name), else ``raw`` itself. ``raw.tell()`` still says how far into the file reading
    has gone."""
    if raw.peek(2)[:2] != GZIP_MAGIC:
        return raw
    import gzip  # only for a compressed file: simulate starts without it

    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def detect_format(stream: BinaryIO, source: str = "refs") -> Format:
    """Which format the first record line of ``stream`` is in, without consuming it (the
    stream must offer ``peek``): a lackey record or valgrind line is a lackey log, a
    ``KIND PAGE`` line a kinds file, anything else a page list (whose reader names a
    line it cannot parse). A file that starts as no text does is refused here."""
    head = stream.peek(1 << 16)[: 1 << 16]  # type: ignore[attr-defined]
    if b"\0" in head:
        raise UserError(
            f"{source}: not a text file of references (it holds NUL bytes); give page "
            "numbers, 'KIND PAGE' lines or a lackey log, plain or gzip-compressed"
        )
    for line in head.split(b"\n")[:-1] or [head]:
        text = line.rstrip(b"\r")
        if not text.strip() or text.lstrip().startswith(b"#"):
            continue
        if _LACKEY_LINE.fullmatch(text):
            return "lackey"
        if _KIND_LINE.fullmatch(text.strip()):
            return "kinds"
        return "pages"
    return "pages"


def read_trace(stream: BinaryIO, fmt: Format, page_size: int, source: str) -> Iterator[Ref]:
    """The references of ``stream`` in format ``fmt`` (``page_size`` for lackey logs)."""
    if fmt == "lackey":
        return read_lackey(stream, page_size, source)
    if fmt == "kinds":
        return read_kinds(stream, source)
    return read_refs(stream, source)


def _malformed(source: str, number: int, line: bytes) -> UserError:
    shown = quote(line.decode(errors="replace").rstrip("\r\n"))
    return UserError(
        f"{source}:{number}: malformed lackey line {shown} "
        "(expected 'I  ADDR,SIZE', ' L ADDR,SIZE', ' S ADDR,SIZE' or ' M ADDR,SIZE', "
        "ADDR in hex)"
    )
