"""Traces: dump/load round trip, replay reaches the same violation, bad traces exit cleanly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.mutants import mutant_config
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory, run_choices
from pagingcheck.checks.system import Choice
from pagingcheck.impl.mutants import BY_NAME, factory
from pagingcheck.model.errors import UserError
from tests.checks.conftest import drive_until


def failing_trace(config: CheckConfig) -> traces.Trace:
    """A trace of the reuse_busy_frame mutant, found by a short deterministic search."""
    mutant = BY_NAME["reuse_busy_frame"]
    run = mutant_config(config, mutant)
    # the first fault starts a page-in, and the bug frees that frame
    choices: list[Choice] = [("run", 1)]
    result = run_choices(run, factory(mutant), choices)
    assert result.violation is not None
    return traces.from_run(run, f"pagingcheck.impl.mutants:{mutant.name}", choices, result)


def test_round_trip_replays_to_the_same_violation(
    default_config: CheckConfig, tmp_path: Path
) -> None:
    trace = failing_trace(default_config)
    path = traces.write(trace, tmp_path, "t")
    loaded = traces.load(path.read_text())
    assert loaded.choices == trace.choices
    assert loaded.programs == trace.programs
    assert loaded.hardware == trace.hardware and loaded.kernel == trace.kernel
    result = traces.replay(loaded, resolve_factory(loaded.implementation))
    assert result.violation is not None
    assert trace.violation is not None
    assert result.violation.property == trace.violation.property == "busy_frame_exclusive"
    assert result.failing_step == len(trace.choices)
    rendered = traces.render(loaded, result)
    assert "violated at step 1" in rendered
    changed = "what the failing step changed:\n" + "\n".join(f"  {c}" for c in result.difference)
    assert result.difference and changed in rendered
    after = rendered.split("the state after it:\n", 1)[1].splitlines()
    # The hardware beside the kernel's claims: registers, the TLB, every user frame, and
    # the page-table entries of the process the failing step ran.
    assert after[0].startswith("  cpu: pc=") and after[1].startswith("  tlb: ")
    frames = [line for line in after if line.startswith("  frame ")]
    assert len(frames) == loaded.config().hardware.user_frames
    # The bug freed the frame being paged into: busy with a read, and on the free list.
    (busy,) = [line for line in frames if "read in flight" in line]
    pfn = int(busy.split()[1].rstrip(":"))
    (free,) = [line for line in after if line.startswith("  free frames: ")]
    assert str(pfn) in free.split(";")[0], (busy, free)
    assert any(line.startswith("  process 1 (") for line in after)
    assert any(line.startswith("    vpn 0: pte 0x") for line in after)


def test_replay_against_the_reference_kernel_no_longer_fails(default_config: CheckConfig) -> None:
    trace = failing_trace(default_config)
    result = traces.replay(trace, resolve_factory(REFERENCE_KERNEL))
    assert result.violation is None
    assert "no property violated" in traces.render(trace, result)


def test_the_step_table_shows_each_disk_transfer_started_and_completed(
    default_config: CheckConfig,
) -> None:
    """Transfers are read from the disk's queue, not taken from the kernel's events: a
    kernel that starts one without saying so still shows it."""
    trace = failing_trace(default_config)
    trace.choices = [("run", 1), ("disk", 0)]
    result = traces.replay(trace, resolve_factory(REFERENCE_KERNEL))
    assert result.violation is None and len(result.records) == 2
    started, done = result.records
    (request,) = started.submitted
    assert request.op == "read" and done.completed == request and not done.submitted
    table = traces.render(trace, result).splitlines()
    assert f"disk started: read block {request.block} -> frame {request.pfn}" in table[1]
    assert f"disk done: read block {request.block} -> frame {request.pfn}" in table[2]
    data = traces.record_to_data(started)
    assert data["submitted"] == [traces.transfer(request)] and "completed" not in data


def test_runs_are_deterministic(default_config: CheckConfig) -> None:
    checker = drive_until(default_config, lambda s: len(s.view.frames) > 0 and not s.live)
    choices = checker.system.history
    assert len(choices) > 20
    factory_ = resolve_factory(REFERENCE_KERNEL)
    first = run_choices(default_config, factory_, choices)
    second = run_choices(default_config, factory_, choices)
    assert first.violation is None and first.diverged_at is None
    assert [traces.record_to_data(r) for r in first.records] == [
        traces.record_to_data(r) for r in second.records
    ]


def test_a_trace_that_no_longer_applies_says_so(default_config: CheckConfig) -> None:
    trace = failing_trace(default_config)
    trace.choices = [("disk", 0)]  # nothing is pending at boot
    result = traces.replay(trace, resolve_factory(trace.implementation))
    assert result.violation is None and result.diverged_at == 1
    assert "no longer applies at step 1" in traces.render(trace, result)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid YAML"),
        ("just text", "not a pagingcheck trace"),
        ("pagingcheck_trace: 1\nhardware: {bogus: 1}\n", "implementation: missing"),
        ("!!python/object/apply:os.system ['true']", "not valid YAML"),
    ],
)
def test_malformed_traces_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        traces.load(text)


def test_bad_choice_is_named(default_config: CheckConfig) -> None:
    text = traces.dump(failing_trace(default_config)).replace("- run", "- jump", 1)
    with pytest.raises(UserError, match=r"choices\[0\]"):
        traces.load(text)


def test_trace_keeps_programs_drawn_at_random(default_config: CheckConfig) -> None:
    trace = failing_trace(default_config)
    extra = dataclasses.replace(trace.programs[0], name="random-1", entry=3)
    trace.programs = (*trace.programs, extra)
    loaded = traces.load(traces.dump(trace)).programs[-1]
    assert loaded == extra and loaded.entry == 3


LIVELOCK = """
hardware: {page_words: 16, va_pages: 16, kernel_frames: 8, user_frames: 2,
           page_table: linear, swap_slots: 8, image_blocks: 8, disk_order: fifo}
kernel: {policy: fifo}
workload:
  initial: [0, 1, 2]
  progress_bound: 120
  programs:
""" + "".join(
    f"""
    - name: p{i}
      stack_pages: 0
      text: |
        MOV #{5 + i}, r1
        again: ADDI r1, #-1
        BNE @again
        SYS 0
"""
    for i in range(3)
)


def test_a_progress_failure_replays_over_its_fair_continuation(tmp_path: Path) -> None:
    from pagingcheck.checks import config as checkconfig
    from pagingcheck.checks.runner import Run

    config = checkconfig.load_text(LIVELOCK)
    mutant = BY_NAME["rob_unfinished_instruction"]
    run = Run(config, factory(mutant), None)
    run.take(("run", 1))
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "progress"
    assert run.result.fair_from == 1
    trace = traces.from_run(
        config, "pagingcheck.impl.mutants:" + mutant.name, run.choices, run.result
    )
    loaded = traces.load(traces.dump(trace))
    assert loaded.fair_from == 1
    replayed = traces.replay(loaded, factory(mutant))
    assert replayed.violation == violation and replayed.failing_step == len(trace.choices)
    assert "fair continuation from here" in traces.render(loaded, replayed)
    honest = traces.replay(loaded, resolve_factory(REFERENCE_KERNEL))
    assert honest.violation is None


def test_system_state_is_a_value(busy_state: Checker) -> None:
    system = busy_state.system
    clone = system.copy()
    assert clone.fingerprint() == system.fingerprint()
    choice = next(c for c in clone.choices() if c[0] == "run")
    clone.apply(choice)
    assert clone.fingerprint() != system.fingerprint()
    assert system.copy().fingerprint() == system.fingerprint()
