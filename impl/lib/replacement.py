"""Page-replacement policies: which frame gives up its page when none is free.

One implementation serves two callers: the reference kernel, which runs a
policy on the hardware model's referenced (R) and modified (M) bits, and the
trace simulator (:mod:`pagingcheck.impl.simulate`), which emulates those bits
for a reference string. Both drive the same objects through :class:`Policy`.

The caller tells a policy what happens to frames; the policy keeps only what
it needs::

    loaded(frame, page, now)       a page was placed in frame (a reference at now)
    accessed(frame, now, write)    a reference to frame's page was observed
    removed(frame)                 frame holds no page any more
    tick(now, bits)                the periodic clock interrupt
    victim(candidates, now, bits)  choose the frame to evict (decide only: the
                                   caller evicts, then calls removed)

``now`` is the caller's clock (the simulator's reference index, the kernel's
time) and never decreases. Every candidate must hold a page the policy was
told about (loaded and not removed). A policy only ever returns one of the
candidates, so **local or global allocation is the caller's choice**: pass the
faulting process's own frames for local allocation, every in-use frame for
global allocation. Ties break deterministically (lowest frame number, or
queue order for the queue-based policies), and the only randomness is a seeded
generator held in the policy, so a copy of a policy makes the same choices.

Every policy's state is plain ints, dicts and ordered dicts: :meth:`Policy.copy`
shares nothing mutable with the original, and :meth:`Policy.snapshot` is a
hashable tuple of the policy's name and ints, for fingerprints and equality
(equal snapshots make equal choices).

A caller that breaks the protocol (an empty candidate list, loading a frame
twice, removing or naming a frame the policy never saw) gets
:class:`InternalError` where the policy can tell; the fast paths taken when
every tracked frame is a candidate check only the frame they return. A user's
bad policy name or option gets :class:`UserError` from :func:`make_policy`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Protocol

from pagingcheck.model.errors import InternalError, UserError

POLICY_NAMES = (
    "fifo",
    "second-chance",
    "clock",
    "nru",
    "lru",
    "aging",
    "wsclock",
    "working-set",
    "opt",
    "random",
)

DEFAULT_TAU = 1000
"""Working-set window, in units of ``now`` (references, for the simulator)."""

AGING_BITS = 8
"""Width of an aging counter; a tick shifts R into the top bit."""


class RefBits(Protocol):
    """The hardware referenced (R) and modified (M) bits of the page in each frame."""

    def referenced(self, frame: int) -> bool:
        """R: the page in ``frame`` was used since R was last cleared."""

    def modified(self, frame: int) -> bool:
        """M: the page in ``frame`` was written since it was loaded or cleaned."""

    def clear_referenced(self, frame: int) -> None:
        """Clear R (the kernel's version also invalidates the TLB entry that caches it)."""


class Policy(Protocol):
    """A page-replacement policy, driven by the kernel or the simulator."""

    name: str

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """``page`` was placed in ``frame`` (which held none); a reference at ``now``."""

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """A reference to ``frame``'s page was observed at ``now``."""

    def removed(self, frame: int) -> None:
        """``frame`` no longer holds a page."""

    def tick(self, now: int, bits: RefBits) -> None:
        """The periodic clock interrupt; may read and clear R bits."""

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """One of ``candidates`` (non-empty) to evict; may clear R bits as it scans.

        Decides only: the caller evicts the page and then calls :meth:`removed`.
        """

    def copy(self) -> Policy:
        """An independent copy that makes the same choices."""

    def snapshot(self) -> tuple[object, ...]:
        """A hashable, deterministic value of the policy's whole state."""


def needs_tick(policy: Policy) -> bool:
    """Whether ``policy`` learns anything from :meth:`Policy.tick` that it cannot learn otherwise.

    True for NRU (ticks clear R) and aging (ticks shift R into the counters):
    their classes set ``uses_tick = True``. The simulator ticks such policies
    by default; the others ignore ticks or, driven by the simulator, already
    hear of every reference through accessed.
    """
    return bool(getattr(policy, "uses_tick", False))


def make_policy(
    name: str,
    *,
    seed: int = 0,
    future: Sequence[Hashable] | None = None,
    tau: int = DEFAULT_TAU,
) -> Policy:
    """Build a fresh policy by name (one of :data:`POLICY_NAMES`).

    ``seed`` seeds "random"; ``future`` is the whole reference string (pages
    in order, indexed by ``now``) that "opt" needs; ``tau`` is the window of
    "working-set" and "wsclock". Raises UserError for an unknown name, "opt"
    without ``future``, or a negative ``tau``.
    """
    if tau < 0:
        raise UserError(f"tau: {tau} must be at least 0 (it is a window length in time units)")
    match name:
        case "fifo":
            return Fifo()
        case "second-chance":
            return SecondChance()
        case "clock":
            return Clock()
        case "nru":
            return Nru()
        case "lru":
            return Lru()
        case "aging":
            return Aging()
        case "wsclock":
            return WsClock(tau)
        case "working-set":
            return WorkingSet(tau)
        case "opt":
            if future is None:
                raise UserError(
                    "policy 'opt' needs the future reference string (pass future=...); "
                    "it can only run on a known trace"
                )
            return Opt(future)
        case "random":
            return Random(seed)
    raise UserError(
        f"unknown replacement policy {name!r}; choose one of: {', '.join(POLICY_NAMES)}"
    )


# -- helpers shared by the policies --------------------------------------------------------


def _nonempty(candidates: Sequence[int], who: str) -> None:
    if not candidates:
        raise InternalError(f"{who}.victim: called with no candidate frames")


def abstract_snapshot(policy: Policy, now: int) -> tuple[object, ...]:
    """``policy``'s state and the clock ``now``, as much of them as its future choices
    depend on: LRU's use times only by their order (:meth:`Lru.ranked`), the working-set
    policies' by their ages within the window (:func:`_ages`); every other policy (whose
    clock stays 0 in the kernel) as its snapshot and the clock as they are."""
    if isinstance(policy, Lru | WorkingSet | WsClock):
        return policy.ranked(now)
    return (policy.snapshot(), now)


def _unknown(who: str, what: str, frame: int) -> InternalError:
    return InternalError(f"{who}.{what}: frame {frame} holds no page this policy was told about")


def _ascending(candidates: Sequence[int]) -> Sequence[int]:
    """The candidates in increasing frame order (a range with step 1 already is)."""
    if isinstance(candidates, range) and candidates.step == 1:
        return candidates
    return sorted(candidates)


def _from_hand(candidates: Sequence[int], hand: int) -> tuple[Sequence[int], int]:
    """The candidates in frame order and the index of the first one at or after ``hand``.

    Scanning ``order[(start + k) % len(order)]`` for k = 0, 1, ... walks the
    candidates round the circle of frame numbers, starting at the hand.
    """
    order = _ascending(candidates)
    return order, bisect_left(order, hand) % len(order)


def _least(order: Sequence[int], values: dict[int, int], who: str) -> int:
    """The frame of ``order`` (ascending) with the smallest value, lowest frame on ties."""
    try:
        return min(order, key=values.__getitem__)  # min keeps the first of equals
    except KeyError as missing:
        raise _unknown(who, "victim", missing.args[0]) from None


class _Queue:
    """Frames in the order they entered a queue (load order, or requeue order)."""

    name = "queue"

    def __init__(self) -> None:
        self._queue: OrderedDict[int, None] = OrderedDict()

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Append ``frame`` to the tail. Requires: frame is not in the queue."""
        if frame in self._queue:
            raise InternalError(f"{self.name}.loaded: frame {frame} already holds a page")
        self._queue[frame] = None

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Ignored: queue order depends on loads (and, for second chance, on R bits)."""

    def removed(self, frame: int) -> None:
        """Drop ``frame`` from the queue."""
        try:
            del self._queue[frame]
        except KeyError:
            raise _unknown(self.name, "removed", frame) from None

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored."""

    def _in_queue_order(self, candidates: Sequence[int]) -> list[int]:
        """The candidates ordered head first. Raises InternalError for one not queued."""
        wanted = set(candidates)
        if not wanted <= self._queue.keys():
            frame = min(wanted - self._queue.keys())
            raise _unknown(self.name, "victim", frame)
        return [frame for frame in self._queue if frame in wanted]

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, tuple(self._queue))


class Fifo(_Queue):
    """First in, first out: evict the candidate that was loaded longest ago.

    Ignores use entirely, which is why it can fault more with more frames
    (Belady's anomaly).
    """

    name = "fifo"

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """The candidate nearest the head of the load queue. Changes nothing."""
        _nonempty(candidates, self.name)
        queue = self._queue
        if len(candidates) == len(queue):
            head = next(iter(queue))
            if head in candidates:
                return head
        return self._in_queue_order(candidates)[0]

    def copy(self) -> Fifo:
        twin = Fifo()
        twin._queue = self._queue.copy()
        return twin


class SecondChance(_Queue):
    """FIFO that spares referenced pages: a head page with R set has R cleared
    and goes to the tail as if just loaded; the first head page with R clear is
    evicted. If every candidate was referenced, the first one cleared is evicted.
    """

    name = "second-chance"

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """Scan from the head. Changes: clears R of and requeues every candidate passed over."""
        _nonempty(candidates, self.name)
        queue = self._queue
        if len(candidates) == len(queue) and next(iter(queue)) in candidates:
            # Every queued frame is a candidate: rotate the queue itself.
            for _ in range(len(queue)):
                head = next(iter(queue))
                if not bits.referenced(head):
                    return head
                bits.clear_referenced(head)
                queue.move_to_end(head)
            return next(iter(queue))
        order = self._in_queue_order(candidates)
        for frame in order:
            if not bits.referenced(frame):
                return frame
            bits.clear_referenced(frame)
            queue.move_to_end(frame)
        return order[0]

    def copy(self) -> SecondChance:
        twin = SecondChance()
        twin._queue = self._queue.copy()
        return twin


class Clock:
    """Second chance with the frames on a circle (in frame-number order) and a hand.

    The hand sweeps from where it stopped: a frame with R set has R cleared and
    is passed; the first with R clear is evicted and the hand stops just past
    it. After a full sweep of referenced frames the frame under the hand goes.
    """

    name = "clock"

    def __init__(self) -> None:
        self._hand = 0

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Ignored: the circle is the frame numbers themselves."""

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Ignored: the hand reads R bits."""

    def removed(self, frame: int) -> None:
        """Ignored."""

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored."""

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """Sweep from the hand. Changes: clears R of frames passed; moves the hand."""
        _nonempty(candidates, self.name)
        order, start = _from_hand(candidates, self._hand)
        count = len(order)
        chosen = order[start]
        for step in range(count):
            frame = order[(start + step) % count]
            if not bits.referenced(frame):
                chosen = frame
                break
            bits.clear_referenced(frame)
        self._hand = chosen + 1
        return chosen

    def copy(self) -> Clock:
        twin = Clock()
        twin._hand = self._hand
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, self._hand)


class _Resident:
    """Base for policies that keep one int per resident frame in ``self._value``."""

    name = "resident"

    def __init__(self) -> None:
        self._value: dict[int, int] = {}

    def _initial(self, now: int) -> int:
        return now

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Start tracking ``frame``. Requires: frame is not tracked."""
        if frame in self._value:
            raise InternalError(f"{self.name}.loaded: frame {frame} already holds a page")
        self._value[frame] = self._initial(now)

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Ignored unless the policy overrides it."""

    def removed(self, frame: int) -> None:
        """Stop tracking ``frame``."""
        try:
            del self._value[frame]
        except KeyError:
            raise _unknown(self.name, "removed", frame) from None

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored unless the policy overrides it."""

    def _get(self, frame: int) -> int:
        try:
            return self._value[frame]
        except KeyError:
            raise _unknown(self.name, "victim", frame) from None

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, tuple(sorted(self._value.items())))


class Nru(_Resident):
    """Not recently used: class = 2*R + M; evict from the lowest non-empty class.

    Class 0 is neither referenced nor modified, class 1 modified only (R was
    cleared by a tick), class 2 referenced only, class 3 both. Each tick clears
    every R bit. Within a class the lowest frame goes (textbook NRU picks at
    random; a fixed choice keeps runs reproducible).
    """

    name = "nru"
    uses_tick = True

    def _initial(self, now: int) -> int:
        return 0

    def tick(self, now: int, bits: RefBits) -> None:
        """Clear R of every tracked frame, in frame order."""
        for frame in sorted(self._value):
            if bits.referenced(frame):
                bits.clear_referenced(frame)

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """The candidate of lowest (class, frame). Changes nothing."""
        _nonempty(candidates, self.name)
        missing = set(candidates) - self._value.keys()
        if missing:
            raise _unknown(self.name, "victim", min(missing))
        best, best_class = -1, 4
        for frame in _ascending(candidates):
            rank = 2 * bits.referenced(frame) + bits.modified(frame)
            if rank < best_class:
                if rank == 0:
                    return frame
                best, best_class = frame, rank
        return best

    def copy(self) -> Nru:
        twin = Nru()
        twin._value = dict(self._value)
        return twin


class Aging(_Resident):
    """Aging: an 8-bit counter per frame; each tick shifts it right and puts R in
    the top bit (then clears R). The candidate with the smallest counter goes,
    lowest frame on ties. A newly loaded page starts at 0, so until the next
    tick it competes with the longest-idle pages.
    """

    name = "aging"
    uses_tick = True

    def _initial(self, now: int) -> int:
        return 0

    def tick(self, now: int, bits: RefBits) -> None:
        """Shift every counter, adding R at the top; clear R. In frame order."""
        top = 1 << (AGING_BITS - 1)
        counters = self._value
        for frame in sorted(counters):
            counter = counters[frame] >> 1
            if bits.referenced(frame):
                counter |= top
                bits.clear_referenced(frame)
            counters[frame] = counter

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """The candidate of lowest (counter, frame). Changes nothing."""
        _nonempty(candidates, self.name)
        return _least(_ascending(candidates), self._value, self.name)

    def copy(self) -> Aging:
        twin = Aging()
        twin._value = dict(self._value)
        return twin


class Lru:
    """Least recently used, exactly, from the times given to loaded and accessed.

    Frames sit in an ordered dict from least to most recently used, so the
    usual victim is the head. Equal times (the kernel samples several R bits
    at once) go to the lowest frame. Exact when every reference is reported
    (the simulator); as good as the sampling when the kernel reports them.
    """

    name = "lru"

    def __init__(self) -> None:
        self._recent: OrderedDict[int, int] = OrderedDict()

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Make ``frame`` most recent, used at ``now``. Requires: not tracked."""
        if frame in self._recent:
            raise InternalError(f"{self.name}.loaded: frame {frame} already holds a page")
        self._recent[frame] = now

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Make ``frame`` most recent, used at ``now``."""
        recent = self._recent
        try:
            recent.move_to_end(frame)
        except KeyError:
            raise _unknown(self.name, "accessed", frame) from None
        recent[frame] = now

    def removed(self, frame: int) -> None:
        """Stop tracking ``frame``."""
        try:
            del self._recent[frame]
        except KeyError:
            raise _unknown(self.name, "removed", frame) from None

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored: use times come from accessed."""

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """The candidate of lowest (last use, frame). Changes nothing."""
        _nonempty(candidates, self.name)
        recent = self._recent
        if len(candidates) == len(recent):
            # Every frame is a candidate: the head group of equal times holds the answer.
            entries = iter(recent.items())
            best, oldest = next(entries)
            for frame, used in entries:
                if used != oldest:
                    break
                best = min(best, frame)
            if best in candidates:
                return best

        return _least(_ascending(candidates), recent, self.name)

    def copy(self) -> Lru:
        twin = Lru()
        twin._recent = self._recent.copy()
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, tuple(self._recent.items()))

    def ranked(self, now: int) -> tuple[object, ...]:
        """The snapshot with use times and ``now`` replaced by their ranks among each other.

        Victims depend only on the order of use times (ties included), and a new
        use time is ``now``, never below any kept one; so two states whose times
        are ordered alike, ``now`` among them, choose alike for ever. This keeps a
        running clock from making every state new to the explorer.
        """
        times = sorted({*self._recent.values(), now})
        rank = {time: index for index, time in enumerate(times)}
        return (self.name, tuple((f, rank[t]) for f, t in self._recent.items()), rank[now])


class WorkingSet(_Resident):
    """Working set: a page used within the last ``tau`` time units is in the
    working set. Scanning candidates in frame order, the first one outside the
    window (now - last use > tau) goes; if all are inside, the least recently
    used goes (lowest frame on ties).

    Last use comes from loaded and accessed; a tick samples R bits: a frame
    with R set whose last use is older than the previous tick was used since
    then without being reported, so its last use becomes ``now``. R is cleared.
    """

    name = "working-set"

    def __init__(self, tau: int) -> None:
        super().__init__()
        self._tau = tau
        self._last_tick = 0

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Record a use of ``frame`` at ``now``."""
        if frame not in self._value:
            raise _unknown(self.name, "accessed", frame)
        self._value[frame] = now

    def tick(self, now: int, bits: RefBits) -> None:
        """Sample and clear R bits in frame order (see the class docstring)."""
        last = self._value
        for frame in sorted(last):
            if bits.referenced(frame):
                if last[frame] < self._last_tick:
                    last[frame] = now
                bits.clear_referenced(frame)
        self._last_tick = now

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """First candidate outside the window, else the least recently used. Changes nothing."""
        _nonempty(candidates, self.name)
        order = _ascending(candidates)
        for frame in order:
            if now - self._get(frame) > self._tau:
                return frame
        return _least(order, self._value, self.name)

    def copy(self) -> WorkingSet:
        twin = WorkingSet(self._tau)
        twin._value = dict(self._value)
        twin._last_tick = self._last_tick
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, self._tau, self._last_tick, tuple(sorted(self._value.items())))

    def ranked(self, now: int) -> tuple[object, ...]:
        """The snapshot with times as :func:`_ages` gives them (the last tick among them)."""
        age = _ages([*self._value.values(), self._last_tick], now, self._tau)
        uses = tuple((frame, age(used)) for frame, used in sorted(self._value.items()))
        return (self.name, self._tau, age(self._last_tick), uses)


class WsClock(_Resident):
    """WSClock: the clock hand over the working-set rule, preferring clean pages.

    The hand sweeps the candidates (a circle in frame-number order) once. A
    frame with R set was just used: R is cleared and its last use becomes
    ``now``. A frame with R clear and last use more than ``tau`` ago is old:
    the first old *clean* frame is evicted at once. Without one, the fallbacks
    are, in order: the first old dirty frame met (the textbook would schedule
    its writeback and come back for it; here the caller does that writeback
    as part of the eviction), then the clean frame least recently used, then
    the frame least recently used (lowest frame on ties). The hand stops just
    past the victim. Ticks are ignored: the hand does the sampling.
    """

    name = "wsclock"

    def __init__(self, tau: int) -> None:
        super().__init__()
        self._tau = tau
        self._hand = 0

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Record a use of ``frame`` at ``now``."""
        if frame not in self._value:
            raise _unknown(self.name, "accessed", frame)
        self._value[frame] = now

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """One sweep from the hand. Changes: clears R and refreshes last use of frames
        with R set; moves the hand."""
        _nonempty(candidates, self.name)
        last = self._value
        for frame in candidates:
            self._get(frame)
        order, start = _from_hand(candidates, self._hand)
        count = len(order)
        old_dirty: int | None = None
        for step in range(count):
            frame = order[(start + step) % count]
            if bits.referenced(frame):
                bits.clear_referenced(frame)
                last[frame] = now
            elif now - last[frame] > self._tau:
                if not bits.modified(frame):
                    self._hand = frame + 1
                    return frame
                if old_dirty is None:
                    old_dirty = frame
        if old_dirty is not None:
            chosen = old_dirty
        else:
            clean = [frame for frame in order if not bits.modified(frame)]
            chosen = _least(clean or order, last, self.name)
        self._hand = chosen + 1
        return chosen

    def copy(self) -> WsClock:
        twin = WsClock(self._tau)
        twin._value = dict(self._value)
        twin._hand = self._hand
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, self._tau, self._hand, tuple(sorted(self._value.items())))

    def ranked(self, now: int) -> tuple[object, ...]:
        """The snapshot with times as :func:`_ages` gives them."""
        age = _ages(self._value.values(), now, self._tau)
        uses = tuple((frame, age(used)) for frame, used in sorted(self._value.items()))
        return (self.name, self._tau, self._hand, uses)


def _ages(times: Iterable[int], now: int, tau: int) -> Callable[[int], tuple[int, int]]:
    """How much of a time ``t`` the working-set policies' futures depend on: its exact age
    while within the window (``now - t <= tau``), else only its place among the older ones.

    Their choices compare ages with ``tau``, order times within the window, and order
    a last use against the last tick; ages only grow, so a time that leaves the window is
    younger than every time already out of it. Two states whose times match so stay
    alike for ever, and the clock need not be kept.
    """
    old = sorted({t for t in times if now - t > tau})
    place = {t: index for index, t in enumerate(old)}
    return lambda t: (0, now - t) if now - t <= tau else (1, place[t])


def _next_uses(future: Sequence[Hashable]) -> array[int]:
    """``nxt[i]``: the next index after i that references ``future[i]``, or len(future)."""
    size = len(future)
    nxt = array("q", bytes(8 * size))
    seen: dict[Hashable, int] = {}
    for index in range(size - 1, -1, -1):
        page = future[index]
        nxt[index] = seen.get(page, size)
        seen[page] = index
    return nxt


class Opt:
    """Belady's optimal policy: evict the candidate whose page is next used
    farthest in the future (never again counts as farthest; lowest frame on
    ties). ``now`` must be the index into ``future`` of the current reference.

    Each frame remembers an index at which its page occurs; the victim scan
    follows the precomputed next-occurrence chain forward to the first use at
    or after ``now``, so accessed has nothing to do. The future and that chain
    are read-only and shared between copies.
    """

    name = "opt"

    def __init__(self, future: Sequence[Hashable]) -> None:
        self._future = future
        self._next = _next_uses(future)
        self._first: dict[Hashable, int] | None = None
        self._use: dict[int, int] = {}

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Remember where ``page`` next occurs at or after ``now``. Requires: frame not tracked."""
        if frame in self._use:
            raise InternalError(f"{self.name}.loaded: frame {frame} already holds a page")
        future = self._future
        if 0 <= now < len(future) and future[now] == page:
            self._use[frame] = now
            return
        if self._first is None:
            first: dict[Hashable, int] = {}
            for index, item in enumerate(future):
                first.setdefault(item, index)
            self._first = first
        self._use[frame] = self._advance(self._first.get(page, len(future)), now)

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Ignored: the next-occurrence chain already knows every use."""

    def removed(self, frame: int) -> None:
        """Forget ``frame``."""
        try:
            del self._use[frame]
        except KeyError:
            raise _unknown(self.name, "removed", frame) from None

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored."""

    def _advance(self, index: int, now: int) -> int:
        nxt = self._next
        while index < now:
            index = nxt[index]
        return index

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """The candidate of farthest next use, lowest frame on ties. Changes: brings the
        remembered occurrences up to ``now`` (no effect on later choices)."""
        _nonempty(candidates, self.name)
        use = self._use
        best = -1
        best_use = -1
        for frame in candidates:
            try:
                index = self._advance(use[frame], now)
            except KeyError:
                raise _unknown(self.name, "victim", frame) from None
            use[frame] = index
            if index > best_use or (index == best_use and frame < best):
                best, best_use = frame, index
        return best

    def copy(self) -> Opt:
        twin = Opt.__new__(Opt)
        twin._future = self._future
        twin._next = self._next
        twin._first = self._first
        twin._use = dict(self._use)
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, tuple(sorted(self._use.items())))


_MASK64 = (1 << 64) - 1


class Random:
    """Evict a uniformly chosen candidate, from a seeded splitmix64 generator.

    The generator is one int held in the policy, so a copy continues the same
    sequence and the snapshot includes it. The draw indexes the candidates in
    frame order, so the caller's ordering of candidates does not matter.
    """

    name = "random"

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        """Ignored."""

    def accessed(self, frame: int, now: int, write: bool) -> None:
        """Ignored."""

    def removed(self, frame: int) -> None:
        """Ignored."""

    def tick(self, now: int, bits: RefBits) -> None:
        """Ignored."""

    def _draw(self) -> int:
        self._state = state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
        return state ^ (state >> 31)

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        """A seeded draw among the candidates. Changes: advances the generator."""
        _nonempty(candidates, self.name)
        order = _ascending(candidates)
        return order[self._draw() % len(order)]

    def copy(self) -> Random:
        twin = Random(0)
        twin._state = self._state
        return twin

    def snapshot(self) -> tuple[object, ...]:
        return (self.name, self._state)
