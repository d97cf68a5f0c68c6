"""Stack growth: the rule, the spec's step, both kernels, out of memory, configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import protocol, traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from pagingcheck.impl.minimal import MinimalKernel
from pagingcheck.impl.mutants import Mutant, factory
from pagingcheck.impl.reference import fault
from pagingcheck.model.asm import assemble
from pagingcheck.model.errors import ConfigError, UserError
from pagingcheck.model.program import Program, stack_growth
from pagingcheck.spec import machine as spec
from pagingcheck.spec.machine import Geometry, Retired, Signalled
from pagingcheck.spec.state import SpecState
from tests.checks.fair import Factory, endings, run_fairly

PW, PAGES = 4, 16
GEOMETRY = Geometry(PW, PAGES)


def program(source: str, **sizes: Any) -> Program:
    return Program("p", tuple(assemble(source)), stack_pages=1, **sizes)


# -- the rule ---------------------------------------------------------------------------------


def test_an_access_just_below_the_stack_grows_it_down_to_its_page() -> None:
    # Stack at vpn 15 (words 60..63), may reach down to vpn 12, 4 words below sp.
    assert stack_growth(59, 60, 15, 12, 4, PW) == range(14, 15)
    assert stack_growth(56, 60, 15, 12, 4, PW) == range(14, 15)
    assert stack_growth(52, 56, 15, 12, 4, PW) == range(13, 15)  # two pages at once


@pytest.mark.parametrize(
    ("va", "sp", "why"),
    [
        (55, 60, "more than the reach below sp"),
        (47, 48, "below the stack's limit"),
        (61, 62, "inside the stack already"),
        (-1, 0, "a negative address"),
    ],
)
def test_other_accesses_do_not_grow_the_stack(va: int, sp: int, why: str) -> None:
    assert stack_growth(va, sp, 15, 12, 4, PW) == range(0), why


def test_programs_say_how_far_their_stack_may_grow() -> None:
    fixed = program("SYS 0")
    assert fixed.stack_limit == 1 and fixed.stack_growth(59, 60, 15, PW, PAGES) == range(0)
    growing = program("SYS 0", max_stack_pages=3, stack_reach=2)
    assert growing.stack_floor(PAGES) == 13
    assert growing.stack_growth(58, 60, 15, PW, PAGES) == range(14, 15)
    assert growing.stack_growth(57, 60, 15, PW, PAGES) == range(0)  # 3 words below


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"max_stack_pages": 0}, r"max_stack_pages \(0\) is below stack_pages \(1\)"),
        ({"stack_reach": -1}, "stack_reach must not be negative"),
        ({"max_stack_pages": 16}, "17 pages do not fit"),
    ],
)
def test_impossible_stack_settings_are_refused(sizes: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        program("SYS 0", **sizes).validate(PW, PAGES)


# -- the spec ---------------------------------------------------------------------------------


def spawned(source: str, **sizes: Any) -> tuple[SpecState, Program]:
    prog = program(source, **sizes)
    return spec.spawn(SpecState(), 1, prog, PW, PAGES), prog


def test_the_spec_grows_the_stack_with_a_zero_page_and_retires_the_instruction() -> None:
    state, prog = spawned("MOV #60, r7\nMOV #9, -(r7)\nSYS 0", max_stack_pages=2)
    state, _ = spec.retire(state, 1, GEOMETRY, prog)
    state, outcome = spec.retire(state, 1, GEOMETRY, prog)
    assert outcome == Retired(((59, 9),), None)
    assert state.page_of(1, 14) == (0, 0, 0, 9)
    assert [vpn for vpn, _ in state.processes[0].space] == [0, 1, 14, 15]


def test_the_spec_signals_an_access_past_the_limit_or_the_reach() -> None:
    past, prog = spawned("MOV #56, r7\nMOV #9, -(r7)\nSYS 0", max_stack_pages=2)
    past, _ = spec.retire(past, 1, GEOMETRY, prog)
    assert spec.retire(past, 1, GEOMETRY, prog)[1] == Signalled("invalid", 55)
    far, prog = spawned("STORE r7, @50\nSYS 0", max_stack_pages=4)
    assert spec.retire(far, 1, GEOMETRY, prog)[1] == Signalled("invalid", 50)


def test_growth_is_judged_from_the_stack_pointer_the_instruction_starts_with() -> None:
    """The push writes 59 after decrementing r7 to 59: judged from the start's 60, a reach of
    one word lets it grow the stack and a reach of none does not."""
    source = "MOV #60, r7\nMOV #9, -(r7)\nSYS 0"
    for reach, grows in ((1, True), (0, False)):
        state, prog = spawned(source, max_stack_pages=2, stack_reach=reach)
        state, _ = spec.retire(state, 1, GEOMETRY, prog)
        _, outcome = spec.retire(state, 1, GEOMETRY, prog)
        assert isinstance(outcome, Retired) is grows


# -- the kernels, checked -----------------------------------------------------------------------


def stack_config() -> CheckConfig:
    return checkconfig.load_reference("stack")


@pytest.mark.parametrize(
    "build", [resolve_factory(REFERENCE_KERNEL), MinimalKernel], ids=["reference", "minimal"]
)
def test_both_kernels_grow_the_stack_and_signal_what_the_rule_refuses(build: Factory) -> None:
    run = run_fairly(stack_config(), build)
    # climber (pid 1) grew into vpn 14, then overflowed; diver (pid 2) reached too far.
    assert endings(run) == {1: "invalid", 2: "invalid"}
    assert run.result.coverage.counts["stack_growth"] == 1


@pytest.mark.parametrize("page_table", ["linear", "multilevel", "hashed", "inverted"])
@pytest.mark.parametrize("restart", ["precise", "state_register", "decode"])
@pytest.mark.parametrize("refill", ["hardware", "software"])
def test_the_stack_grows_alike_on_every_kind_of_machine(
    page_table: str, restart: str, refill: str
) -> None:
    config = stack_config()
    hardware = config.hardware.replace(
        page_table=page_table,
        restart=restart,
        tlb_refill=refill,
        tlb_entries=4 if refill == "software" else 2,
        kernel_frames=16,  # a linear or hashed table takes more than a multi-level one
    )
    for build in (resolve_factory(REFERENCE_KERNEL), MinimalKernel):
        run = run_fairly(dataclasses.replace(config, hardware=hardware), build)
        assert endings(run) == {1: "invalid", 2: "invalid"}
        assert run.result.coverage.counts["stack_growth"] == 1


def short_of_swap() -> CheckConfig:
    """climber alone, with swap for its own pages only: the growth finds no slot."""
    config = stack_config()
    return dataclasses.replace(
        config,
        hardware=config.hardware.replace(swap_slots=1),
        workload=dataclasses.replace(config.workload, initial=(0,)),
    )


@pytest.mark.parametrize(
    "build", [resolve_factory(REFERENCE_KERNEL), MinimalKernel], ids=["reference", "minimal"]
)
def test_a_stack_that_swap_cannot_back_kills_only_its_process(build: Factory) -> None:
    run = run_fairly(short_of_swap(), build)
    assert endings(run) == {1: "out of memory"}


def always_out_of_memory(original: Callable[..., object]) -> Callable[..., object]:
    def plan_growth(*args: Any) -> object:
        pages = original(*args)
        return fault.Signal("out of memory") if pages else pages

    return plan_growth


def test_an_out_of_memory_kill_with_swap_to_spare_is_a_refinement_failure() -> None:
    liar = Mutant(
        "claims_out_of_memory",
        "kills a growing stack although swap is free",
        "refinement",
        ((fault, "plan_growth", always_out_of_memory),),
    )
    config = stack_config()
    run = Run(config, factory(liar), None)
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "refinement"
    assert "killed, but the spec retires" in violation.message


# -- configuration, traces, protocol -------------------------------------------------------


def test_the_settings_round_trip_through_traces_and_the_protocol() -> None:
    prog = program("SYS 0", max_stack_pages=3, stack_reach=2)
    assert traces.program_from_data(traces.program_to_data(prog), "p") == prog
    assert protocol.decode_program(protocol.encode_program(prog)) == prog
    fixed = program("SYS 0")
    assert protocol.decode_program(protocol.encode_program(fixed)) == fixed


def test_a_negative_reach_in_a_configuration_is_one_clear_error() -> None:
    source = "name: p\ntext: SYS 0\nstack_reach: -2\n"
    expected = r"programs\[0\].stack_reach: expected an integer in 0\.\."
    with pytest.raises(ConfigError, match=expected):
        checkconfig.parse_program(yaml.safe_load(source), "workload.programs[0]")
