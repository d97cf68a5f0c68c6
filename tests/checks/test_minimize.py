"""Shorter failing traces: delta debugging leaves nothing to remove, breadth-first search
finds what removing choices cannot, and every trace kept fails the same way and replays."""

from __future__ import annotations

import dataclasses
import random
import time

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import traces
from pagingcheck.checks.minimize import _fair, _prefix_shortened, lasso, minimal
from pagingcheck.checks.mutants import mutant_config
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory, run_choices
from pagingcheck.impl.mutants import BY_NAME, factory

MUTANT = BY_NAME["no_flush_on_untagged_switch"]


def failing_trace() -> traces.Trace:
    """A trace of the mutant's bug from a seeded random walk over the enabled choices:
    far longer than the bug needs, as a campaign's first failure is."""
    config = mutant_config(checkconfig.load(None), MUTANT)
    for seed in range(20):
        rng = random.Random(seed)
        run = Run(config, factory(MUTANT), None)
        for _ in range(400):
            enabled = [c for c in run.enabled() if c[0] != "kill"]
            if run.failed or not enabled or run.take(rng.choice(enabled)) is not None:
                break
        if run.result.violation is not None and run.result.violation.property != "progress":
            implementation = f"pagingcheck.impl.mutants:{MUTANT.name}"
            return traces.from_run(config, implementation, run.choices, run.result)
    raise AssertionError("no random walk showed the bug")


def test_delta_debugging_leaves_a_trace_that_fails_the_same_way_and_no_single_step_can_go() -> None:
    trace = failing_trace()
    kernel = factory(MUTANT)
    short = minimal(trace, kernel, seconds=60, max_states=0).trace  # no search: ddmin alone
    assert short.violation is not None and trace.violation is not None
    assert short.violation.property == trace.violation.property
    assert len(short.choices) < len(trace.choices)
    again = traces.replay(short, kernel)  # strictly: every choice enabled when taken
    assert again.diverged_at is None and again.failing_step == len(short.choices)
    assert again.violation is not None
    assert again.violation.property == trace.violation.property
    for index in range(len(short.choices)):
        fewer = short.choices[:index] + short.choices[index + 1 :]
        result = run_choices(short.config(), kernel, fewer, short.programs, lenient=True)
        found = result.violation
        assert found is None or found.property != trace.violation.property, index


def test_the_search_shortens_what_delta_debugging_leaves_and_its_trace_replays() -> None:
    """Removing choices keeps the order the random walk ran the processes in; a search from
    the boot finds the failure in fewer steps, in another order."""
    trace = failing_trace()
    kernel = factory(MUTANT)
    alone = minimal(trace, kernel, seconds=60, max_states=0)
    searched = minimal(trace, kernel, seconds=60)
    assert not alone.searched and searched.searched
    assert len(searched.trace.choices) < len(alone.trace.choices)
    again = traces.replay(searched.trace, kernel)  # strictly: every choice enabled when taken
    assert again.diverged_at is None and again.failing_step == len(searched.trace.choices)
    assert again.violation is not None and trace.violation is not None
    assert again.violation.property == trace.violation.property


def test_the_search_is_deterministic() -> None:
    trace = failing_trace()
    kernel = factory(MUTANT)
    first = minimal(trace, kernel, seconds=60).trace.choices
    assert minimal(trace, kernel, seconds=60).trace.choices == first


def test_a_safety_violation_in_the_fair_continuation_is_shortened_and_watches_no_progress() -> None:
    trace = dataclasses.replace(failing_trace(), fair_from=3)
    short = minimal(trace, factory(MUTANT), seconds=60).trace
    assert len(short.choices) < len(trace.choices) and short.fair_from is None


def test_a_progress_trace_without_a_loop_and_a_passing_one_are_left_alone() -> None:
    trace = failing_trace()
    assert trace.violation is not None
    kernel = factory(MUTANT)
    looping = dataclasses.replace(
        trace, violation=dataclasses.replace(trace.violation, property="progress"), fair_from=0
    )
    assert minimal(looping, kernel, seconds=5).trace is looping
    passing = dataclasses.replace(trace, violation=None)
    assert minimal(passing, kernel, seconds=5).trace is passing


def test_no_time_leaves_the_trace_as_it_was() -> None:
    trace = failing_trace()
    assert minimal(trace, factory(MUTANT), seconds=0).trace is trace


# A WRITE whose page never comes in: the kernel runs the call again for ever, each time
# faulting in kernel mode and doing nothing, so the fair continuation comes back to the
# same state within a few steps.
STUCK = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4}
workload:
  initial: [0]
  timer: false
  kills: false
  programs:
    - name: writer
      data: [104, 105]
      text: |
        MOV #16, r1
        MOV #2, r2
        SYS 3
        SYS 0
"""


def progress_trace() -> traces.Trace:
    """A campaign-like progress trace: a fair continuation of a whole bound's length."""
    mutant = BY_NAME["kernel_fault_ignored"]
    config = checkconfig.load_text(STUCK)
    run = Run(config, factory(mutant), None)
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "progress"
    return traces.from_run(
        config, f"pagingcheck.impl.mutants:{mutant.name}", run.choices, run.result
    )


def test_a_progress_trace_that_comes_back_to_a_state_is_cut_to_one_turn_of_its_loop() -> None:
    trace = progress_trace()
    kernel = factory(BY_NAME["kernel_fault_ignored"])
    short = minimal(trace, kernel, seconds=5).trace
    assert trace.workload.progress_bound == 300 and len(trace.choices) > 300
    assert short.fair_from is not None and len(short.choices) < 20
    loop = short.choices[short.fair_from :]
    assert short.workload.progress_bound == len(loop)  # one turn of the loop is the bound
    again = traces.replay(short, kernel)
    assert again.violation is not None and again.violation.property == "progress"
    assert again.failing_step == len(short.choices)


def test_a_loop_is_kept_only_when_the_kernel_really_makes_no_progress_along_it() -> None:
    """The same choices on the correct kernel: the page comes in and the process exits, so
    no loop fails progress."""
    assert lasso(progress_trace(), resolve_factory(REFERENCE_KERNEL)) is None


def test_a_loop_that_leaves_a_choice_enabled_all_along_untaken_is_not_fair() -> None:
    run1, run2, disk = ("run", 1), ("run", 2), ("disk", 0)
    both = frozenset({run1, run2})
    assert not _fair([run1, run1], [both, both])  # process 2 could run all along
    assert _fair([run1, run2], [both, both])
    assert _fair([run1], [frozenset({run1, ("spawn", 0), ("kill", 1)})])  # never owed
    assert not _fair([run1, run1], [frozenset({run1, disk}), frozenset({run1, disk})])


SPINNER = """
    - name: spinner
      text: |
        MOV #30, r3
        spin: ADDI r3, #-1
        BNE @spin
        SYS 0
"""


def test_a_progress_trace_loses_the_prefix_steps_its_failure_does_not_need() -> None:
    """Forty steps of another process before the fair continuation: none is needed to show
    the WRITE run again for ever, so the prefix goes and a fresh continuation follows."""
    mutant = BY_NAME["kernel_fault_ignored"]
    kernel = factory(mutant)
    config = checkconfig.load_text(STUCK.replace("initial: [0]", "initial: [0, 1]") + SPINNER)
    run = Run(config, kernel, None)
    for _ in range(40):
        run.take(next(c for c in run.enabled() if c != ("run", 1)))
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "progress"
    trace = traces.from_run(
        config, f"pagingcheck.impl.mutants:{mutant.name}", run.choices, run.result
    )
    short = _prefix_shortened(trace, kernel, time.monotonic() + 30)
    assert short is not None and trace.fair_from == 40
    assert short.fair_from is not None and short.fair_from < 40
    assert short.choices[short.fair_from :] != trace.choices[trace.fair_from :]  # afresh
    for shown in (short, minimal(trace, kernel, seconds=30).trace):  # and the lasso after
        assert len(shown.choices) < len(trace.choices)
        again = traces.replay(shown, kernel)
        assert again.violation is not None and again.violation.property == "progress"
        assert again.failing_step == len(shown.choices)
