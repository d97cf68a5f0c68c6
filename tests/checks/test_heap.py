"""The heap and SBRK: the rule, the spec's step, both kernels, lazy slots, out of memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import protocol, traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from pagingcheck.impl.minimal import MinimalKernel
from pagingcheck.impl.mutants import Mutant, factory
from pagingcheck.impl.reference import fault
from pagingcheck.model.asm import assemble
from pagingcheck.model.errors import UserError
from pagingcheck.model.isa import SBRK_FAILED
from pagingcheck.model.program import Program, heap_break, signed
from pagingcheck.spec import machine as spec
from pagingcheck.spec.machine import Geometry
from pagingcheck.spec.state import SpecState
from tests.checks.fair import Factory, endings, run_fairly

PW, PAGES = 4, 16
GEOMETRY = Geometry(PW, PAGES)
KERNELS = [resolve_factory(REFERENCE_KERNEL), MinimalKernel]


def test_the_break_moves_within_the_heaps_room() -> None:
    assert heap_break(3, 2, 3, 3) == 5
    assert heap_break(5, -2, 3, 3) == 3
    assert heap_break(5, 1, 3, 3) == 6  # the whole room
    assert heap_break(5, 2, 3, 3) is None  # past it
    assert heap_break(4, -2, 3, 3) is None  # below the heap's start
    assert signed(0xFFFF_FFFE) == -2 and signed(5) == 5


def test_a_heap_room_smaller_than_the_heap_is_refused() -> None:
    with pytest.raises(UserError, match=r"max_heap_pages \(1\) is below heap_pages \(2\)"):
        Program("p", (0,), heap_pages=2, max_heap_pages=1).validate(PW, PAGES)
    with pytest.raises(UserError, match="do not fit"):
        Program("p", (0,), max_heap_pages=15).validate(PW, PAGES)


# -- the spec ---------------------------------------------------------------------------------


def run_spec(source: str, steps: int, **sizes: Any) -> tuple[SpecState, Program]:
    prog = Program("p", tuple(assemble(source)), stack_pages=0, **sizes)
    state = spec.spawn(SpecState(), 1, prog, PW, PAGES)
    for _ in range(steps):
        state, _ = spec.retire(state, 1, GEOMETRY, prog)
    return state, prog


def test_sbrk_grows_the_heap_with_zero_pages_and_returns_the_old_break() -> None:
    # Text: 3 words, one page; the heap starts empty at vpn 1.
    state, _ = run_spec("MOV #2, r1\nSYS 1\nSYS 0", 2, max_heap_pages=3)
    (process,) = state.processes
    assert process.regs.regs[0] == 1 * PW
    assert [vpn for vpn, _ in process.space] == [0, 1, 2]
    assert state.page_of(1, 2) == (0,) * PW


def test_sbrk_shrinks_the_heap_and_its_pages_disappear() -> None:
    source = "MOV #2, r1\nSYS 1\nMOV #-1, r1\nSYS 1\nSYS 0"
    state, _ = run_spec(source, 4, max_heap_pages=3)
    (process,) = state.processes
    assert process.regs.regs[0] == 4 * PW  # the break before the shrink (text: vpns 0-1)
    assert [vpn for vpn, _ in process.space] == [0, 1, 2]
    assert ("private", 1, 3) not in dict(state.objects)


def test_sbrk_past_the_room_or_below_the_start_fails_and_changes_nothing() -> None:
    for change in ("#4", "#-1"):
        state, _ = run_spec(f"MOV {change}, r1\nSYS 1\nSYS 0", 2, max_heap_pages=3)
        (process,) = state.processes
        assert process.regs.regs[0] == SBRK_FAILED
        assert [vpn for vpn, _ in process.space] == [0]  # text only; the heap stays empty


# -- the kernels, checked -----------------------------------------------------------------------


def heap_config(**hardware: Any) -> CheckConfig:
    config = checkconfig.load_reference("heap")
    return dataclasses.replace(config, hardware=config.hardware.replace(**hardware))


@pytest.mark.parametrize("page_table", ["linear", "multilevel", "hashed", "inverted"])
@pytest.mark.parametrize("restart", ["precise", "state_register", "decode"])
@pytest.mark.parametrize("refill", ["hardware", "software"])
def test_both_kernels_resize_the_heap_alike_on_every_kind_of_machine(
    page_table: str, restart: str, refill: str
) -> None:
    config = heap_config(
        page_table=page_table,
        restart=restart,
        tlb_refill=refill,
        tlb_entries=4 if refill == "software" else 2,
        kernel_frames=16,
    )
    for build in KERNELS:
        run = run_fairly(config, build)
        assert endings(run) == {1: "exit"}
        counts = run.result.coverage.counts
        assert counts["heap_growth"] == counts["heap_shrink"] == 1
        assert counts["lazy_first_touch"] == 2


@pytest.mark.parametrize("build", KERNELS, ids=["reference", "minimal"])
def test_a_first_touch_that_finds_swap_full_kills_only_its_process(build: Factory) -> None:
    """One slot: the first new page takes it, the second finds none."""
    run = run_fairly(heap_config(swap_slots=1), build)
    assert endings(run) == {1: "out of memory"}
    counts = run.result.coverage.counts
    assert (counts["lazy_first_touch"], counts["out_of_memory_kill"]) == (2, 1)


def never_backed(original: Callable[..., object]) -> Callable[..., object]:
    def reserve_slot(*args: Any) -> object:
        return False  # claims swap is full on every first touch

    return reserve_slot


def test_an_out_of_memory_kill_with_swap_to_spare_is_a_refinement_failure() -> None:
    liar = Mutant(
        "claims_swap_full",
        "kills at a first touch although swap is free",
        "refinement",
        ((fault, "reserve_slot", never_backed),),
    )
    config = heap_config()
    violation = Run(config, factory(liar), None).continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "refinement"
    assert "killed, but the spec retires" in violation.message


def test_the_heap_room_round_trips_through_traces_and_the_protocol() -> None:
    prog = Program("p", (0,), heap_pages=1, max_heap_pages=3)
    assert traces.program_from_data(traces.program_to_data(prog), "p") == prog
    assert protocol.decode_program(protocol.encode_program(prog)) == prog
