"""The console: PUTC and WRITE in the spec, in both Python kernels, and as the checks see
it; WRITE's fault in kernel mode and the call run again."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.describe import describe_state
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from pagingcheck.impl.minimal import MinimalKernel
from pagingcheck.impl.mutants import Mutant, factory
from pagingcheck.impl.reference import process
from pagingcheck.model.asm import assemble
from pagingcheck.model.isa import SYS_PUTC, WRITE_FAILED
from pagingcheck.model.program import Program
from pagingcheck.spec import machine as spec
from pagingcheck.spec.machine import Geometry
from pagingcheck.spec.state import SpecState
from tests.checks.fair import Factory, run_fairly

KERNELS = [resolve_factory(REFERENCE_KERNEL), MinimalKernel]

PRINTER = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0]
  timer: false
  kills: false
  max_spawns: 0
  programs:
    - name: printer
      data: [104, 105, 0x10a]
      text: |
        MOV @16, r1
        SYS 2
        MOV @17, r1
        SYS 2
        MOV @18, r1
        SYS 2
        SYS 0
"""


def checker(run: Run) -> Checker:
    assert run.checker is not None, "the run did not boot"
    return run.checker


def printer_config(**workload: Any) -> CheckConfig:
    config = checkconfig.load_text(PRINTER)
    return dataclasses.replace(config, workload=dataclasses.replace(config.workload, **workload))


# -- the spec ---------------------------------------------------------------------------------


def test_putc_prints_the_low_byte_of_r1_and_changes_no_register() -> None:
    source = "MOV #0x141, r1\nSYS 2\nSYS 3\nSYS 0"
    program = Program("p", tuple(assemble(source)), stack_pages=0)
    state = spec.spawn(SpecState(), 1, program, 4, 16)
    state, _ = spec.retire(state, 1, Geometry(4, 16), program)
    before = state.process(1)
    state, outcome = spec.retire(state, 1, Geometry(4, 16), program)
    after = state.process(1)
    assert isinstance(outcome, spec.Retired) and outcome.syscall == SYS_PUTC
    assert state.console == (0x41,)
    assert before is not None and after is not None
    assert after.regs.regs == before.regs.regs and after.regs.pc == before.regs.pc + 1
    state, _ = spec.retire(state, 1, Geometry(4, 16), program)  # another call prints nothing
    assert state.console == (0x41,)
    state, _ = spec.retire(state, 1, Geometry(4, 16), program)  # the output outlives exit
    assert state.processes == () and state.console == (0x41,)


# -- the kernels, checked -----------------------------------------------------------------------


@pytest.mark.parametrize("build", KERNELS, ids=["reference", "minimal"])
def test_both_kernels_print_what_the_program_prints(build: Factory) -> None:
    run = run_fairly(printer_config(), build)
    assert checker(run).system.machine.console == (104, 105, 10)
    assert checker(run).spec_state.console == (104, 105, 10)


def test_the_console_is_shown_in_the_state_a_failure_prints() -> None:
    run = run_fairly(printer_config(), resolve_factory(REFERENCE_KERNEL))
    assert "console: 'hi\\n'" in describe_state(checker(run).observed, None)


def printing_twice(original: Callable[..., None]) -> Callable[..., None]:
    def putc(t: Any, port: Any, pid: int) -> None:
        port.console_write(port.context().regs[1] & 0xFF)  # once too often
        original(t, port, pid)

    return putc


def test_a_byte_printed_twice_is_a_refinement_failure_named_on_the_console() -> None:
    mutant = Mutant("twice", "prints twice", "refinement", ((process, "putc", printing_twice),))
    run = Run(printer_config(), factory(mutant), None)
    violation = run.continue_fairly(50)
    assert violation is not None and violation.property == "refinement"
    assert "console: spec 'h', system 'hh'" in violation.explain()


def test_two_printers_interleave_as_their_instructions_retire() -> None:
    config = printer_config(initial=(0, 0), timer=True)
    run = run_fairly(config, resolve_factory(REFERENCE_KERNEL))
    console = checker(run).system.machine.console
    assert sorted(console) == sorted((104, 105, 10) * 2)
    assert console == checker(run).spec_state.console


# -- WRITE: a system call that reads user memory -------------------------------------------------

WRITER = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0, 0]
  timer: false
  kills: false
  max_spawns: 0
  programs:
    - name: writer
      data: [104, 105, 10]
      text: |
        MOV #16, r1
        MOV #3, r2
        SYS 3
        MOV #300, r1
        SYS 3
        SYS 0
"""


def test_write_prints_a_buffer_within_one_readable_page_or_fails() -> None:
    source = "MOV #4, r1\nMOV #3, r2\nSYS 3\nSYS 0"
    program = Program("p", tuple(assemble(source)), (7, 0x161, 9, 5), stack_pages=0)
    geometry = Geometry(4, 16)
    state = spec.spawn(SpecState(), 1, program, 4, 16)

    def after(r1: int, r2: int) -> tuple[tuple[int, ...], int]:
        proc = state.process(1)
        assert proc is not None
        regs = dataclasses.replace(proc.regs, regs=(0, r1, r2, 0, 0, 0, 0, 0))
        printed, regs = spec.write(state, 1, regs, geometry.page_words)
        return printed.console, regs.regs[0]

    data = 4 * 2  # text is 7 words (vpns 0-1); data from vpn 2
    assert after(data, 3) == ((7, 0x61, 9), 3)  # low bytes of the words, r0 the count
    assert after(data + 1, 3) == ((0x61, 9, 5), 3)
    assert after(data + 2, 3) == ((), WRITE_FAILED)  # crosses into vpn 3
    assert after(data, 0) == ((), WRITE_FAILED)
    assert after(60, 1) == ((), WRITE_FAILED)  # no page there
    assert after(0, 1) == ((program.text[0] & 0xFF,), 1)  # text is readable


@pytest.mark.parametrize("build", KERNELS, ids=["reference", "minimal"])
def test_a_write_from_a_page_not_yet_in_faults_in_kernel_mode_and_prints_once(
    build: Factory,
) -> None:
    run = run_fairly(checkconfig.load_text(WRITER), build)
    assert checker(run).system.machine.console == tuple(b"hi\nhi\n")
    assert run.result.coverage.counts["kernel_mode_fault"] >= 1
    restarted = [
        r for r in run.result.records if r.result and r.result.syscall == 3 and not r.result.retired
    ]
    assert restarted, "no write ran again"
    assert all(r.start is not None for r in restarted)


def test_a_kernel_that_never_brings_the_page_in_makes_no_progress() -> None:
    from pagingcheck.impl.mutants import BY_NAME

    run = Run(checkconfig.load_text(WRITER), factory(BY_NAME["kernel_fault_ignored"]), None)
    violation = run.continue_fairly(20)
    assert violation is not None and violation.property == "progress"


def test_a_fault_in_kernel_mode_pins_the_page_of_its_sys_with_the_buffer() -> None:
    """The call runs again from its SYS once the buffer is in: were the SYS's own text page
    free to go for the buffer, and the buffer for the text page, the call could go round
    for ever on a full memory (as a derandomised campaign on an inverted table showed)."""
    run = Run(checkconfig.load_text(WRITER), resolve_factory(REFERENCE_KERNEL), None)
    check = checker(run)
    for _ in range(100):
        enabled = check.choices()
        record, violation = check.step(next(c for c in enabled if c[0] in ("run", "disk")))
        assert violation is None, violation.explain()
        faulted = [e for e in record.events if e.kind == "kernel_fault"]
        if faulted:
            break
    else:
        raise AssertionError("no fault in kernel mode")
    tables = check.system.kernel.t  # type: ignore[attr-defined]
    writer = tables.processes[faulted[0].pid]
    pages = {entry.vpn: entry.page for entry in writer.mappings}
    assert writer.ticket is not None
    assert {pages[0], pages[1]} <= set(writer.pinned)  # the SYS's text page, the buffer's
