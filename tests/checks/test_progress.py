"""Progress: fair continuations finish, and a kernel that livelocks or deadlocks is caught."""

from __future__ import annotations

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.progress import TIMER_PERIOD, FairDriver, Watchdog
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from pagingcheck.checks.system import Choice, StepRecord
from pagingcheck.impl.lib.replacement import POLICY_NAMES
from pagingcheck.impl.mutants import BY_NAME, factory
from pagingcheck.model.cpu import StepResult

#: Three processes, each a different one-page program, over two user frames: the
#: configuration on which evicting the page another process was just given, before it
#: could run with it, livelocks.
LIVELOCK = """
hardware: {page_words: 16, va_pages: 16, kernel_frames: 8, user_frames: 2,
           page_table: linear, swap_slots: 8, image_blocks: 8, disk_order: fifo}
kernel: {policy: POLICY}
workload:
  initial: [0, 1, 2]
  progress_bound: 150
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

POLICIES = [name for name in POLICY_NAMES if name != "opt"]


@pytest.mark.parametrize("policy", POLICIES)
def test_the_livelock_reproduction_finishes_under_every_policy(policy: str) -> None:
    config = checkconfig.load_text(LIVELOCK.replace("POLICY", policy))
    run = Run(config, resolve_factory(REFERENCE_KERNEL), None)
    assert run.continue_fairly(config.workload.progress_bound) is None
    assert run.checker is not None and run.checker.observed.live == ()
    retired = [r for r in run.result.records if r.result is not None and r.result.retired]
    assert len(retired) == sum(2 + 2 * (5 + i) for i in range(3))  # every instruction, once


@pytest.mark.parametrize("policy", ["fifo", "clock", "lru", "second-chance", "wsclock"])
def test_a_kernel_that_robs_unfinished_instructions_fails_progress(policy: str) -> None:
    config = checkconfig.load_text(LIVELOCK.replace("POLICY", policy))
    run = Run(config, factory(BY_NAME["rob_unfinished_instruction"]), None)
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is not None and violation.property == "progress"
    assert "retired no instruction in 150 fair steps" in violation.message


def test_every_default_variant_finishes_its_workload_under_a_fair_schedule() -> None:
    for name, config in checkconfig.load(None).expand():
        run = Run(config, resolve_factory(REFERENCE_KERNEL), None)
        assert run.continue_fairly(config.workload.progress_bound, steps=3000) is None, name
        assert run.checker is not None and run.checker.observed.live == (), name


def test_the_fair_driver_completes_disk_requests_first_then_rotates() -> None:
    driver = FairDriver()
    assert driver.choose([("run", 1), ("disk", 0), ("timer",)]) == ("disk", 0)
    picks = [driver.choose([("run", 1), ("run", 2), ("run", 3)]) for _ in range(4)]
    assert picks == [("run", 1), ("run", 2), ("run", 3), ("run", 1)]
    assert driver.choose([("run", 2), ("spawn", 0), ("kill", 2)]) == ("run", 2)
    assert driver.choose([("spawn", 0), ("kill", 1)]) is None


def test_the_fair_driver_fires_the_timer_every_period() -> None:
    driver = FairDriver()
    enabled: list[Choice] = [("run", 1), ("timer",)]
    choices = [driver.choose(enabled) for _ in range(2 * (TIMER_PERIOD + 1))]
    assert choices.count(("timer",)) == 2
    assert choices[TIMER_PERIOD] == ("timer",)
    assert driver.choose([("timer",)]) == ("timer",)  # nothing else can happen


def test_the_watchdog_counts_from_each_process_last_retirement() -> None:
    dog = Watchdog(bound=3)
    dog.start([1, 2])
    retired = StepRecord(("run", 1), StepResult(retired=True))
    trapped = StepRecord(("run", 2), StepResult(retired=False))
    assert dog.observe(retired, [1, 2]) is None
    assert dog.observe(trapped, [1, 2]) is None
    violation = dog.observe(retired, [1, 2])
    assert violation is not None and ("pid", 2) in violation.witness
    assert Watchdog(3).stuck([4]).message.endswith("(deadlock)")
