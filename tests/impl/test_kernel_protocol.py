"""The frame and swap-slot protocols: one source for the kernel and for proofs.

Each operation keeps its well-formedness lemma, checked exhaustively over a
small concrete domain and proved with z3 over unbounded integers, by calling
the very functions the kernel runs. A random kernel run shows the kernel's
tables stay well formed and agree with the free lists.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
import z3

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.lib import counted, framestate, logic, slotstate
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib import swap as sw
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.model.config import HardwareConfig
from tests.impl.kernel_workloads import fill_program, make_system, reverse_program

SMALL = range(0, 4)


def all_frames() -> list[fr.Frame]:
    return [
        fr.Frame(status, refcount, transfer, orphan)
        for status, refcount, transfer, orphan in itertools.product(
            (fr.FREE, fr.IN_USE, fr.BUSY), SMALL, (fr.NONE, fr.READ, fr.WRITE), (False, True)
        )
    ]


def all_slots() -> list[sw.Slot]:
    return [
        sw.Slot(allocated, refcount, transfer, orphan)
        for allocated, refcount, transfer, orphan in itertools.product(
            (False, True), SMALL, (sw.NONE, sw.READ, sw.WRITE), (False, True)
        )
    ]


def arguments(arity: int) -> list[tuple[int, ...]]:
    return [tuple(args) for args in itertools.product(SMALL, repeat=arity)]


@pytest.mark.parametrize("name", sorted(fr.TRANSITIONS))
def test_every_frame_operation_keeps_frames_well_formed(name: str) -> None:
    op, arity = fr.TRANSITIONS[name]
    allowed = 0
    for frame in all_frames():
        if not fr.well_formed(frame):
            continue
        for args in arguments(arity):
            guard, after = op(frame, *args)
            if guard:
                allowed += 1
                assert fr.well_formed(after), (name, frame, args, after)
    assert allowed, f"{name} is never allowed"


@pytest.mark.parametrize("name", sorted(sw.TRANSITIONS))
def test_every_slot_operation_keeps_slots_well_formed(name: str) -> None:
    op, arity = sw.TRANSITIONS[name]
    allowed = 0
    for slot in all_slots():
        if not sw.well_formed(slot):
            continue
        for args in arguments(arity):
            guard, after = op(slot, *args)
            if guard:
                allowed += 1
                assert sw.well_formed(after), (name, slot, args, after)
    assert allowed, f"{name} is never allowed"


def prove(claim: Any) -> None:
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    assert solver.check() == z3.unsat, solver.model()


@pytest.mark.parametrize("name", sorted(fr.TRANSITIONS))
def test_z3_proves_frame_operations_keep_the_lemma(name: str) -> None:
    op, arity = fr.TRANSITIONS[name]
    frame = fr.Frame(z3.Int("status"), z3.Int("refcount"), z3.Int("transfer"), z3.Bool("orphan"))
    args = [z3.Int(f"arg{i}") for i in range(arity)]
    guard, after = op(frame, *args)
    prove(z3.Implies(z3.And(fr.well_formed(frame), guard), fr.well_formed(after)))


@pytest.mark.parametrize("name", sorted(sw.TRANSITIONS))
def test_z3_proves_slot_operations_keep_the_lemma(name: str) -> None:
    op, arity = sw.TRANSITIONS[name]
    slot = sw.Slot(z3.Bool("allocated"), z3.Int("refcount"), z3.Int("transfer"), z3.Bool("orphan"))
    args = [z3.Int(f"arg{i}") for i in range(arity)]
    guard, after = op(slot, *args)
    prove(z3.Implies(z3.And(sw.well_formed(slot), guard), sw.well_formed(after)))


def test_a_busy_frame_is_never_reserved_evicted_or_freed_mid_transfer() -> None:
    busy = [f for f in all_frames() if fr.well_formed(f) and f.status == fr.BUSY]
    in_flight = [f for f in busy if f.transfer != fr.NONE]
    assert in_flight
    for frame in in_flight:
        for op in (fr.reserve, fr.evict, fr.free, fr.map_user, fr.start_pagein):
            guard, _ = op(frame)
            assert not guard, (op.__name__, frame)
        guard, after = fr.finish_transfer(frame)
        assert guard and after.status == (fr.FREE if frame.orphan else fr.BUSY)


def test_a_slot_is_freed_only_at_its_last_user_and_after_its_transfer() -> None:
    for slot in all_slots():
        if not sw.well_formed(slot):
            continue
        for op in (sw.release, sw.orphan, sw.finish_transfer, sw.drop_user):
            guard, after = op(slot)
            if guard and not after.allocated:
                assert slot.refcount <= 1 and (op is sw.finish_transfer) == bool(slot.orphan)


# -- the logic helpers ------------------------------------------------------------------------

HELPERS: list[tuple[Callable[..., Any], tuple[Any, ...], Any]] = [
    (logic.ite, (True, 1, 2), 1),
    (logic.ite, (False, 1, 2), 2),
    (logic.all_of, (True, True), True),
    (logic.all_of, (), True),
    (logic.any_of, (False, True), True),
    (logic.any_of, (), False),
    (logic.not_, (False,), True),
    (logic.implies, (False, False), True),
    (logic.implies, (True, False), False),
    (logic.one_of, (2, 1, 2), True),
    (logic.one_of, (3, 1, 2), False),
]


@pytest.mark.parametrize(("helper", "args", "expected"), HELPERS)
def test_logic_helpers_compute_plain_values_without_z3(
    helper: Callable[..., Any], args: tuple[Any, ...], expected: Any
) -> None:
    assert helper(*args) == expected
    assert not logic.is_symbolic(helper(*args))


def test_logic_helpers_build_z3_terms_from_symbolic_arguments() -> None:
    x, flag = z3.Int("x"), z3.Bool("flag")
    term = logic.ite(flag, x, 0)
    assert logic.is_symbolic(term)
    prove(logic.implies(logic.all_of(flag, x == 3), term == 3))
    prove(logic.any_of(logic.not_(flag), flag))
    prove(logic.implies(logic.one_of(x, 1, 2), x >= 1))
    with pytest.raises(TypeError, match="z3 term"):
        logic.concrete(flag)
    assert logic.concrete(True) is True


# -- the kernel runs these operations: its tables stay consistent ------------------------------


def check_tables(kernel: ReferenceKernel) -> None:
    t = kernel.t
    assert framestate.violations(t.fs) == []
    for pfn, frame in t.frames.items():
        assert frame.refcount == len(t.users(pfn)), (pfn, frame, t.users(pfn))
        assert (frame.transfer != fr.NONE) == (pfn in t.transfers), pfn
    assert set(t.free_frames) == {p for p, f in t.frames.items() if f.status == fr.FREE}
    slots = {number: t.ss.slot(number) for number in t.ss.allocated}
    for number, slot in slots.items():
        assert sw.well_formed(slot), (number, slot)
    assert set(t.free_slots) == {n for n, s in slots.items() if not s.allocated}
    assert slotstate.violations(t.ss) == []
    for proc in t.live():
        for entry in proc.mappings:
            home = t.record(entry.page).slot
            held = t.ss.holding((proc.pid, entry.vpn))
            assert held == (counted.NOTHING if home is None else home), (proc.pid, entry)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_tables_stay_well_formed_through_a_random_run(seed: int) -> None:
    hardware = HardwareConfig(
        page_words=4,
        user_frames=4,
        kernel_frames=64,
        disk_order="any",
        page_table=("linear", "hashed", "inverted", "multilevel")[seed],
    )
    programs = [reverse_program(4, (1, 2, 3)).program, fill_program(4, 9, 1, 2, 0).program]
    kernel = KernelConfig(cleaner=seed % 2 == 0, cleaner_threshold=2, policy="second-chance")
    system = make_system(hardware, programs, [0, 1, 0], kernel, max_spawns=2, kills=True)
    rng = random.Random(seed)
    assert isinstance(system.kernel, ReferenceKernel)
    for _ in range(400):
        choices = system.choices()
        if not choices:
            break
        weights = [{"run": 12, "disk": 6, "timer": 2, "spawn": 1, "kill": 1}[c[0]] for c in choices]
        system.apply(rng.choices(choices, weights)[0])
        check_tables(system.kernel)
