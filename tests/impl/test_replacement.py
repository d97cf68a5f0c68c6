"""Replacement policies: each one's defining choice, by hand, and theorems by Hypothesis."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pagingcheck.impl.lib.replacement import (
    POLICY_NAMES,
    Policy,
    abstract_snapshot,
    make_policy,
    needs_tick,
)
from pagingcheck.impl.simulate import Ref, parse_refs, run
from pagingcheck.model.errors import InternalError, UserError
from pagingcheck.model.fingerprint import fingerprint

BELADY = "1,2,3,4,1,2,5,1,2,3,4,5"
TEXTBOOK = "7,0,1,2,0,3,0,4,2,3,0,3,2,1,2,0,1,7,0,1"


class Bits:
    """Hand-set R and M bits that record which R bits a policy cleared."""

    def __init__(self, r: Sequence[int] = (), m: Sequence[int] = ()) -> None:
        self.r = set(r)
        self.m = set(m)
        self.cleared: list[int] = []

    def referenced(self, frame: int) -> bool:
        return frame in self.r

    def modified(self, frame: int) -> bool:
        return frame in self.m

    def clear_referenced(self, frame: int) -> None:
        self.r.discard(frame)
        self.cleared.append(frame)


def policy(name: str, **options: object) -> Policy:
    return make_policy(name, **options)  # type: ignore[arg-type]


def load(target: Policy, frames: Sequence[int], start: int = 0) -> None:
    """Load page 100+f into each frame f, one time unit apart from ``start``."""
    for offset, frame in enumerate(frames):
        target.loaded(frame, 100 + frame, start + offset)


def faults(name: str, refs: str, frames: int) -> int:
    return run(name, parse_refs(refs), frames).faults


# -- classic reference strings -------------------------------------------------------------


def test_fifo_shows_beladys_anomaly() -> None:
    assert faults("fifo", BELADY, 3) == 9
    assert faults("fifo", BELADY, 4) == 10


@pytest.mark.parametrize(("name", "expected"), [("fifo", 15), ("lru", 12), ("opt", 9)])
def test_textbook_string_with_three_frames(name: str, expected: int) -> None:
    assert faults(name, TEXTBOOK, 3) == expected


# -- each policy's defining choice ---------------------------------------------------------


def test_fifo_evicts_the_earliest_loaded_whatever_the_use() -> None:
    fifo = policy("fifo")
    load(fifo, [2, 0, 1])
    fifo.accessed(2, 10, False)
    assert fifo.victim([0, 1, 2], 11, Bits(r=[2])) == 2
    assert fifo.victim([0, 1], 11, Bits()) == 0  # local allocation: only these frames


def test_second_chance_spares_a_referenced_page() -> None:
    chance = policy("second-chance")
    load(chance, [0, 1, 2])
    bits = Bits(r=[0])
    assert chance.victim([0, 1, 2], 5, bits) == 1
    assert bits.cleared == [0] and not bits.referenced(0)
    # Frame 0 went to the tail: after 1 leaves, 2 is now the oldest.
    chance.removed(1)
    chance.loaded(1, 200, 6)
    assert chance.victim([0, 1, 2], 7, Bits()) == 2


def test_second_chance_among_local_candidates_requeues_only_those_passed() -> None:
    chance = policy("second-chance")
    load(chance, [0, 1, 2, 3])
    bits = Bits(r=[0, 1])
    assert chance.victim([1, 2, 3], 4, bits) == 2  # 0 is not a candidate: left alone
    assert bits.cleared == [1]
    chance.removed(2)
    chance.loaded(2, 200, 5)
    # Queue now 0, 3, 1, 2.
    assert chance.victim([1, 2, 3], 6, Bits()) == 3


def test_second_chance_with_every_page_referenced_degrades_to_fifo() -> None:
    chance = policy("second-chance")
    load(chance, [0, 1, 2])
    bits = Bits(r=[0, 1, 2])
    assert chance.victim([0, 1, 2], 5, bits) == 0
    assert bits.cleared == [0, 1, 2]


def test_clock_hand_resumes_where_it_stopped() -> None:
    clock = policy("clock")
    load(clock, [0, 1, 2, 3])
    bits = Bits(r=[0, 1, 3])
    assert clock.victim(range(4), 4, bits) == 2
    assert bits.cleared == [0, 1]
    clock.removed(2)
    clock.loaded(2, 300, 5)
    # The hand is at frame 3 (R set: cleared and passed), so 0 goes next, not 1.
    bits = Bits(r=[2, 3])
    assert clock.victim(range(4), 6, bits) == 0
    assert bits.cleared == [3]


def test_clock_with_every_page_referenced_takes_the_frame_under_the_hand() -> None:
    clock = policy("clock")
    load(clock, [0, 1, 2])
    clock.victim([0, 1, 2], 3, Bits())  # evicts 0; the hand moves to 1
    bits = Bits(r=[0, 1, 2])
    assert clock.victim([0, 1, 2], 4, bits) == 1
    assert bits.cleared == [1, 2, 0]


def test_nru_takes_the_lowest_class() -> None:
    nru = policy("nru")
    load(nru, [0, 1, 2, 3])
    bits = Bits(r=[0, 1], m=[0, 2])  # classes: 0 -> 3, 1 -> 2, 2 -> 1, 3 -> 0
    assert nru.victim(range(4), 4, bits) == 3
    assert nru.victim([0, 1, 2], 4, bits) == 2
    assert nru.victim([0, 1], 4, bits) == 1
    assert bits.cleared == []


def test_nru_tick_clears_every_r_bit() -> None:
    nru = policy("nru")
    load(nru, [0, 1, 2])
    bits = Bits(r=[0, 2], m=[2])
    nru.tick(10, bits)
    assert bits.cleared == [0, 2]
    assert nru.victim([0, 1, 2], 11, bits) == 0  # class 0, lowest frame


def test_aging_takes_the_smallest_counter() -> None:
    aging = policy("aging")
    load(aging, [0, 1, 2])
    aging.tick(10, Bits(r=[0, 2]))  # counters 0x80, 0x00, 0x80
    aging.tick(20, Bits(r=[1, 2]))  # counters 0x40, 0x80, 0xC0
    assert aging.snapshot() == ("aging", ((0, 0x40), (1, 0x80), (2, 0xC0)))
    # Frame 0 was used before frame 1, so it has aged more.
    assert aging.victim([0, 1, 2], 21, Bits(r=[0])) == 0
    assert aging.victim([1, 2], 21, Bits()) == 1


def test_aging_breaks_equal_counters_by_lowest_frame() -> None:
    aging = policy("aging")
    load(aging, [2, 0, 1])
    assert aging.victim([2, 1, 0], 3, Bits()) == 0


def test_aging_counters_keep_eight_bits() -> None:
    aging = policy("aging")
    load(aging, [0])
    for now in range(12):
        aging.tick(now, Bits(r=[0]))
    assert aging.snapshot() == ("aging", ((0, 0xFF),))


def test_lru_evicts_the_least_recently_used() -> None:
    lru = policy("lru")
    load(lru, [0, 1, 2])
    lru.accessed(0, 5, False)
    lru.accessed(2, 6, True)
    assert lru.victim([0, 1, 2], 7, Bits()) == 1
    assert lru.victim([0, 2], 7, Bits()) == 0


def test_lru_breaks_equal_times_by_lowest_frame() -> None:
    lru = policy("lru")
    for frame in (3, 1, 2):
        lru.loaded(frame, frame, 0)
    assert lru.victim([1, 2, 3], 1, Bits()) == 1
    assert lru.victim([3, 2], 1, Bits()) == 2


def test_working_set_evicts_a_page_outside_the_window() -> None:
    ws = policy("working-set", tau=5)
    for frame, now in ((2, 0), (1, 1), (0, 2)):
        ws.loaded(frame, frame, now)
    ws.accessed(0, 8, False)
    # At 9 the ages are 1, 8 and 9: frames 1 and 2 are outside the window and the
    # scan meets 1 first, although 2 is the least recently used.
    assert ws.victim([0, 1, 2], 9, Bits()) == 1
    wide = policy("working-set", tau=100)
    for frame, now in ((2, 0), (1, 1), (0, 2)):
        wide.loaded(frame, frame, now)
    assert wide.victim([0, 1, 2], 9, Bits()) == 2  # all inside: the oldest


def test_working_set_tick_samples_unreported_use() -> None:
    ws = policy("working-set", tau=5)
    load(ws, [0, 1])
    ws.tick(3, Bits())
    bits = Bits(r=[0])
    ws.tick(20, bits)  # frame 0 was used since the tick at 3 without being reported
    assert bits.cleared == [0]
    assert ws.victim([0, 1], 21, Bits()) == 1


def test_wsclock_prefers_an_old_clean_page() -> None:
    wsclock = policy("wsclock", tau=5)
    load(wsclock, [0, 1, 2])
    wsclock.accessed(2, 9, False)
    # Frame 0 is old but dirty, 1 old and clean, 2 recently used.
    assert wsclock.victim([0, 1, 2], 10, Bits(m=[0])) == 1


def test_wsclock_falls_back_to_an_old_dirty_page_then_to_the_oldest_clean() -> None:
    wsclock = policy("wsclock", tau=5)
    load(wsclock, [0, 1, 2])
    assert wsclock.victim([0, 1, 2], 10, Bits(m=[0, 1, 2])) == 0
    young = policy("wsclock", tau=50)
    load(young, [0, 1, 2])
    # Nothing is old: the least recently used clean page goes.
    assert young.victim([0, 1, 2], 10, Bits(m=[0])) == 1


def test_wsclock_clears_r_and_counts_it_as_use() -> None:
    wsclock = policy("wsclock", tau=5)
    load(wsclock, [0, 1])
    bits = Bits(r=[0])
    assert wsclock.victim([0, 1], 10, bits) == 1
    assert bits.cleared == [0]
    assert wsclock.snapshot() == ("wsclock", 5, 2, ((0, 10), (1, 1)))


def test_opt_evicts_the_page_used_farthest_ahead() -> None:
    future: list[Hashable] = [1, 2, 3, 4, 2, 1, 3]
    opt = policy("opt", future=future)
    for frame, page in enumerate((1, 2, 3)):
        opt.loaded(frame, page, frame)
    assert opt.victim([0, 1, 2], 3, Bits()) == 2  # page 3 is next used at 6
    assert opt.victim([0, 1], 3, Bits()) == 0  # page 1 at 5, page 2 at 4


def test_opt_prefers_pages_never_used_again_lowest_frame_first() -> None:
    opt = policy("opt", future=[5, 6, 7, 8, 5])
    for frame, page in ((2, 5), (1, 6), (0, 7)):
        opt.loaded(frame, page, {5: 0, 6: 1, 7: 2}[page])
    assert opt.victim([0, 1, 2], 3, Bits()) == 0


def test_opt_finds_the_next_use_of_a_page_loaded_out_of_step() -> None:
    opt = policy("opt", future=[1, 2, 3, 1, 2])
    opt.loaded(0, 2, 0)  # future[0] is page 1, not 2: the policy looks page 2 up
    opt.loaded(1, 1, 1)
    assert opt.victim([0, 1], 2, Bits()) == 0  # page 2 is next used at 4, page 1 at 3


def test_random_is_reproducible_by_seed() -> None:
    def draws(seed: int) -> list[int]:
        rand = policy("random", seed=seed)
        load(rand, range(8))
        return [rand.victim(range(8), now, Bits()) for now in range(40)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert set(draws(7)) == set(range(8))


def test_random_ignores_the_order_candidates_come_in() -> None:
    one, two = policy("random", seed=3), policy("random", seed=3)
    assert [one.victim([4, 1, 9], 0, Bits()) for _ in range(10)] == [
        two.victim([9, 4, 1], 0, Bits()) for _ in range(10)
    ]


# -- the interface -------------------------------------------------------------------------


def test_make_policy_knows_every_name() -> None:
    for name in POLICY_NAMES:
        built = make_policy(name, future=[1, 2])
        assert built.name == name


def test_make_policy_rejects_an_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown replacement policy 'lfu'.*fifo, second-chance"):
        make_policy("lfu")


def test_opt_needs_the_future() -> None:
    with pytest.raises(UserError, match=r"opt.*future"):
        make_policy("opt")


def test_negative_tau_is_refused() -> None:
    with pytest.raises(UserError, match="tau"):
        make_policy("working-set", tau=-1)


def test_only_nru_and_aging_need_ticks() -> None:
    ticking = {name for name in POLICY_NAMES if needs_tick(make_policy(name, future=[]))}
    assert ticking == {"nru", "aging"}


@pytest.mark.parametrize("name", [name for name in POLICY_NAMES if name not in ("clock", "random")])
def test_protocol_breaches_are_internal_errors(name: str) -> None:
    target = make_policy(name, future=[100, 101])
    load(target, [0, 1])
    with pytest.raises(InternalError, match="no candidate"):
        target.victim([], 2, Bits())
    with pytest.raises(InternalError, match="frame 5"):
        target.victim([0, 1, 5], 2, Bits())
    with pytest.raises(InternalError, match="already holds a page"):
        target.loaded(0, 100, 3)
    with pytest.raises(InternalError, match="frame 7"):
        target.removed(7)


# -- copies, snapshots and theorems --------------------------------------------------------

Op = tuple[str, int, bool]

ops = st.lists(
    st.tuples(st.sampled_from(["access", "evict", "tick"]), st.integers(0, 5), st.booleans()),
    max_size=40,
)
names = st.sampled_from(POLICY_NAMES)


FUTURE = [(n * 7) % 11 for n in range(200)]


def drive(target: Policy, script: list[Op], bits: Bits, start: int) -> list[int]:
    """Replay ``script`` on a policy holding frames 0..5; return the victims chosen.

    An eviction takes a victim among all frames or all but one (local
    allocation) and at once loads the page of :data:`FUTURE` at that time.
    """
    chosen = []
    for step, (kind, frame, flag) in enumerate(script):
        now = min(start + step, len(FUTURE) - 1)
        if kind == "access":
            bits.r.add(frame)
            if flag:
                bits.m.add(frame)
            target.accessed(frame, now, flag)
        elif kind == "tick":
            target.tick(now, bits)
        else:
            candidates = [f for f in range(6) if f != frame] if flag else list(range(6))
            victim = target.victim(candidates, now, bits)
            assert victim in candidates
            chosen.append(victim)
            target.removed(victim)
            bits.r.add(victim)
            bits.m.discard(victim)
            target.loaded(victim, FUTURE[now], now)
    return chosen


def started(name: str) -> Policy:
    """Policy ``name`` with frames 0..5 loaded in step with :data:`FUTURE`."""
    target = make_policy(name, seed=4, future=FUTURE, tau=3)
    for frame in range(6):
        target.loaded(frame, FUTURE[frame], frame)
    return target


@pytest.mark.parametrize("name", POLICY_NAMES)
@given(before=ops, after=ops)
def test_copies_share_nothing_and_replay_identically(
    name: str, before: list[Op], after: list[Op]
) -> None:
    original = started(name)
    drive(original, before, Bits(), 6)
    twin = original.copy()
    frozen = twin.snapshot()
    assert frozen == original.snapshot()
    assert fingerprint(frozen) == fingerprint(original.snapshot())
    start = 6 + len(before)
    after = [*after, ("tick", 0, False), ("access", 1, True), ("evict", 0, False)]
    victims = drive(original, after, Bits(), start)
    assert twin.snapshot() == frozen  # the original's later life did not touch the copy
    assert drive(twin, after, Bits(), start) == victims
    assert twin.snapshot() == original.snapshot()
    hash(frozen)


@pytest.mark.parametrize("name", POLICY_NAMES)
@given(before=ops, after=ops)
def test_equal_snapshots_mean_equal_choices(name: str, before: list[Op], after: list[Op]) -> None:
    fresh = started(name)
    driven = fresh.copy()
    drive(driven, before, Bits(), 6)
    if fresh.snapshot() == driven.snapshot():
        start = 6 + len(before)
        assert drive(fresh, after, Bits(), start) == drive(driven, after, Bits(), start)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_removing_from_the_original_leaves_the_copy_alone(name: str) -> None:
    original = started(name)
    twin = original.copy()
    frozen = twin.snapshot()
    original.removed(0)
    original.victim([1, 2], 7, Bits(r=[1]))
    assert twin.snapshot() == frozen


refs_strategy = st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=60)


def _faults(name: str, refs: list[Ref], frames: int, tick: int | None = None) -> int:
    return run(name, refs, frames, tau=4, seed=1, tick=tick).faults


@given(refs_strategy, st.integers(1, 6), names, st.sampled_from([None, 0, 1, 3]))
def test_opt_never_faults_more_than_any_policy(
    refs: list[Ref], frames: int, name: str, tick: int | None
) -> None:
    assert _faults("opt", refs, frames) <= _faults(name, refs, frames, tick)


@given(refs_strategy, st.integers(1, 6), st.sampled_from(["lru", "opt"]))
def test_stack_policies_never_fault_more_with_more_frames(
    refs: list[Ref], frames: int, name: str
) -> None:
    assert _faults(name, refs, frames + 1) <= _faults(name, refs, frames)


@given(refs_strategy, names)
def test_with_a_frame_per_page_only_cold_misses_fault(refs: list[Ref], name: str) -> None:
    distinct = len({page for page, _ in refs})
    assert _faults(name, refs, max(distinct, 1)) == distinct


@given(refs_strategy, st.integers(1, 6))
def test_clock_is_second_chance_on_a_circle(refs: list[Ref], frames: int) -> None:
    # The simulator fills frames 0, 1, ... in order and the hand starts at 0, so
    # the circle read from the hand is the second-chance queue read from its head.
    assert _faults("clock", refs, frames) == _faults("second-chance", refs, frames)


# -- the explorer's abstraction of time ------------------------------------------------------

WINDOW = 3
SLOTS = 4
operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 5)),
        st.tuples(st.just("access"), st.integers(0, SLOTS - 1)),
        st.tuples(st.just("tick"), st.frozensets(st.integers(0, SLOTS - 1))),
        st.tuples(
            st.just("evict"),
            st.frozensets(st.integers(0, SLOTS - 1)),
            st.frozensets(st.integers(0, SLOTS - 1)),
        ),
    ),
    max_size=25,
)


def perform(target: Policy, step: tuple[object, ...], now: int) -> tuple[int, int | None]:
    """Apply one operation; the clock after it and the victim chosen, if any."""
    kind = step[0]
    if kind == "advance":
        return now + int(step[1]), None  # type: ignore[call-overload]
    if kind == "access":
        target.accessed(int(step[1]), now, False)  # type: ignore[call-overload]
    elif kind == "tick":
        target.tick(now, Bits(r=sorted(step[1])))  # type: ignore[call-overload]
    else:
        chosen = target.victim(range(SLOTS), now, Bits(sorted(step[1]), sorted(step[2])))  # type: ignore[call-overload]
        target.removed(chosen)
        target.loaded(chosen, 200 + chosen, now)
        return now, chosen
    return now, None


def distorted(target: Policy, now: int, ages: list[int]) -> Policy:
    """A copy whose times differ where the abstraction looks only at their order (LRU's
    below ``now``, the working-set policies' outside the window): each such time is moved
    to one of ``ages`` further back, in any order. The test keeps only the copies the
    abstraction merges with the original, so a too coarse abstraction is caught."""
    twin = target.copy()
    times: dict[int, int] = getattr(twin, "_recent", None) or twin._value  # type: ignore[attr-defined]
    window = None if target.name == "lru" else WINDOW
    base = now - 1 if window is None else now - window - 1
    last = getattr(twin, "_last_tick", None)
    kept = [*times.values(), *([last] if isinstance(last, int) else [])]
    movable = sorted({t for t in kept if (now - t > window if window else t < now)})
    moved = {t: base - ages[index % len(ages)] for index, t in enumerate(movable)}
    for frame, used in times.items():
        times[frame] = moved.get(used, used)
    if isinstance(last, int):
        twin._last_tick = moved.get(last, last)  # type: ignore[attr-defined]
    return twin


# A last use and the last tick both out of the window, in an order that decides whether
# a tick brings the page back into the working set: a coarser abstraction merges them.
@example(
    "working-set",
    [("tick", frozenset()), ("advance", 1), ("access", 0), ("advance", 5)],
    [("tick", frozenset({0})), ("evict", frozenset(), frozenset())],
    [4, 4, 4, 0, 1],
)
@settings(max_examples=400)
@given(
    st.sampled_from(["lru", "working-set", "wsclock"]),
    operations,
    operations,
    st.lists(st.integers(0, 6), min_size=1, max_size=8),
)
def test_states_the_explorer_merges_choose_alike_for_ever(
    name: str, history: list[tuple[object, ...]], future: list[tuple[object, ...]], ages: list[int]
) -> None:
    first = policy(name, tau=WINDOW)
    load(first, range(SLOTS))
    now = SLOTS
    for step in history:
        now, _ = perform(first, step, now)
    second = distorted(first, now, ages)
    assume(abstract_snapshot(first, now) == abstract_snapshot(second, now))
    for step in future:
        later, chosen = perform(first, step, now)
        _, twin_chosen = perform(second, step, now)
        now = later
        assert chosen == twin_chosen
        assert abstract_snapshot(first, now) == abstract_snapshot(second, now)
