"""READ: a system call that writes user memory, with console input. The spec's step, both
Python kernels, the fault in kernel mode and the copy-on-write break it needs, its bugs."""

from __future__ import annotations

import dataclasses

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import Limits
from pagingcheck.checks.contained import contained_factory
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from pagingcheck.checks.traces import workload_from_data, workload_to_data
from pagingcheck.impl.minimal import MinimalKernel
from pagingcheck.impl.mutants import BY_NAME, factory
from pagingcheck.model.asm import assemble
from pagingcheck.model.errors import ConfigError
from pagingcheck.model.isa import READ_FAILED, SYS_READ
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Program
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import SpecState
from tests.checks.fair import Factory, run_fairly

KERNELS = [resolve_factory(REFERENCE_KERNEL), MinimalKernel]

# Reads three bytes into its data page (not yet in: the kernel's write faults), prints
# them, and reads again: two processes share the input, so the second READs get less.
ECHO = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0, 0]
  timer: false
  kills: false
  input: "hey!"
  programs:
    - name: echo
      data: [0, 0, 0]
      text: |
        MOV #16, r1
        MOV #3, r2
        SYS 7
        MOV r0, r2
        SYS 3
        MOV #3, r2
        SYS 7
        SYS 0
"""

# The parent READs into the data page (from word 32: the text is 19 words) it shares
# copy-on-write with its child, which then prints the word the parent read into: still
# its own 0.
FORKER = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0]
  timer: false
  kills: false
  input: "A"
  programs:
    - name: forker
      data: [7, 0]
      text: |
        LOAD r2, @32
        SYS 4
        CMP r0, r1
        BEQ @child
        MOV #33, r1
        MOV #1, r2
        SYS 7
        LOAD r1, @33
        SYS 2
        SYS 0
        child:  LOAD r1, @33
        SYS 2
        SYS 0
      stack_pages: 0
"""

# A READ into the data page (from word 32), then enough other pages touched to evict it on
# a four-frame machine, then the page printed: the input must have been written back.
EVICTOR = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
kernel: {policy: fifo}
workload:
  initial: [0]
  timer: false
  kills: false
  input: "xyz"
  programs:
    - name: evictor
      data: [1, 2, 3]
      text: |
        MOV #32, r1
        MOV #3, r2
        SYS 7
        MOV #1, @48
        MOV #1, @64
        MOV #1, @80
        MOV #1, @96
        SYS 3
        SYS 0
      heap_pages: 4
      stack_pages: 0
"""


def machine_of(run: Run) -> Machine:
    assert run.checker is not None, "the run did not boot"
    return run.checker.system.machine


# -- the spec ---------------------------------------------------------------------------------


def spec_read(state: SpecState, r1: int, r2: int) -> tuple[SpecState, int]:
    proc = state.process(1)
    assert proc is not None
    regs = dataclasses.replace(proc.regs, regs=(0, r1, r2, 0, 0, 0, 0, 0))
    after, regs = spec.read(state, 1, regs, 4)
    return after, regs.regs[0]


def test_read_fills_a_writable_buffer_from_the_input_until_it_runs_out() -> None:
    program = Program("p", tuple(assemble("SYS 7\nSYS 0")), (9, 9, 9, 9), stack_pages=0)
    state = dataclasses.replace(spec.spawn(SpecState(), 1, program, 4, 16), console_input=(1, 2))
    data = 4  # text is 2 words (vpn 0); data from vpn 1
    after, r0 = spec_read(state, data + 1, 3)
    assert r0 == 2 and after.console_input == ()
    assert after.page_of(1, 1) == (9, 1, 2, 9)  # the third word keeps what it held
    again, r0 = spec_read(after, data, 3)
    assert r0 == 0 and again.page_of(1, 1) == after.page_of(1, 1)  # the input is exhausted


@pytest.mark.parametrize(
    ("r1", "r2"),
    [(0, 1), (6, 3), (4, 0), (60, 1)],
    ids=["read-only text", "crosses a page", "empty", "no page there"],
)
def test_read_into_a_buffer_the_process_may_not_write_fails_and_takes_nothing(
    r1: int, r2: int
) -> None:
    program = Program("p", tuple(assemble("SYS 7\nSYS 0")), (9, 9, 9, 9), stack_pages=0)
    state = dataclasses.replace(spec.spawn(SpecState(), 1, program, 4, 16), console_input=(1,))
    after, r0 = spec_read(state, r1, r2)
    assert r0 == READ_FAILED and after == state


# -- the kernels ------------------------------------------------------------------------------


@pytest.mark.parametrize("build", KERNELS, ids=["reference", "minimal"])
def test_both_kernels_read_the_input_once_each_byte_in_order(build: Factory) -> None:
    run = run_fairly(checkconfig.load_text(ECHO), build)
    machine = machine_of(run)
    assert machine.console_input == ()
    assert sorted(machine.console) == sorted(b"hey!")  # each byte read by one READ only
    assert run.result.coverage.counts["read_input"] >= 2
    assert run.result.coverage.counts["kernel_mode_fault"] >= 1
    restarted = [
        r
        for r in run.result.records
        if r.result and r.result.syscall == SYS_READ and not r.result.retired
    ]
    assert restarted, "no READ ran again after its fault in kernel mode"


def test_a_contained_kernel_takes_the_input_from_the_checker_s_machine() -> None:
    """``console_read`` crosses the process boundary: the reference kernel run in a child
    process asks the checker's machine for each byte."""
    factory = contained_factory(REFERENCE_KERNEL, Limits())
    try:
        run = run_fairly(checkconfig.load_text(ECHO), factory)
    finally:
        factory.host.stop()  # type: ignore[attr-defined]
    assert machine_of(run).console_input == ()
    assert sorted(machine_of(run).console) == sorted(b"hey!")


def test_a_read_into_a_page_shared_copy_on_write_copies_it_first() -> None:
    run = run_fairly(checkconfig.load_text(FORKER), resolve_factory(REFERENCE_KERNEL))
    assert run.result.coverage.counts["kernel_cow_break"] == 1
    assert sorted(machine_of(run).console) == [0, ord("A")]


def test_a_read_that_needs_a_copy_with_swap_full_may_kill_its_process() -> None:
    config = checkconfig.load_text(
        FORKER.replace("user_frames: 4}", "user_frames: 4, swap_slots: 1}")
    )
    run = run_fairly(config, resolve_factory(REFERENCE_KERNEL))
    console = machine_of(run).console
    assert console == (0,)  # the child printed; the parent died out of memory in its READ
    assert run.result.coverage.counts["kernel_cow_break"] == 0


def test_a_kernel_writing_into_the_shared_frame_is_caught_by_refinement() -> None:
    run = Run(checkconfig.load_text(FORKER), factory(BY_NAME["read_skips_cow_break"]), None)
    violation = run.continue_fairly(50)
    assert violation is not None and violation.property == "refinement"
    assert "page 2 word 1" in violation.explain()  # the child's page took the parent's input


def test_a_read_page_left_clean_loses_its_input_when_evicted() -> None:
    config = checkconfig.load_text(EVICTOR)
    healthy = run_fairly(config, resolve_factory(REFERENCE_KERNEL))
    assert machine_of(healthy).console[:3] == tuple(b"xyz")
    run = Run(config, factory(BY_NAME["read_leaves_page_clean"]), None)
    violation = run.continue_fairly(100)
    assert violation is not None and violation.property == "refinement"


# -- configuration ------------------------------------------------------------------------------


def test_the_input_is_a_string_or_a_list_of_bytes_and_travels_with_a_trace() -> None:
    text = ECHO.replace('input: "hey!"', "input: [104, 0, 255]")
    config = checkconfig.load_text(text)
    assert config.workload.console_input == (104, 0, 255)
    data = workload_to_data(config.workload, config.workload.programs)
    assert workload_from_data(data, config.hardware).console_input == (104, 0, 255)
    plain = checkconfig.load_text(ECHO.replace('  input: "hey!"\n', ""))
    assert "input" not in workload_to_data(plain.workload, plain.workload.programs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[300]", r"workload.input\[0\] \(a byte\)"),
        ('"\\u0100"', r"only characters \\x00 to \\xff"),
        ("7", "expected a string, or a list of bytes"),
    ],
)
def test_bad_input_is_refused_in_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        checkconfig.load_text(ECHO.replace('"hey!"', value))
