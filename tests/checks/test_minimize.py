"""Shorter failing traces: delta debugging leaves nothing to remove, breadth-first search
finds what removing choices cannot, and every trace kept fails the same way and replays."""

from __future__ import annotations

import dataclasses
import random

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import traces
from pagingcheck.checks.minimize import minimal
from pagingcheck.checks.mutants import mutant_config
from pagingcheck.checks.runner import Run, run_choices
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


def test_a_progress_trace_and_a_passing_one_are_left_alone() -> None:
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
