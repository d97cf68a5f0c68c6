"""Coverage names exactly what happened: transfers in transit, exits during them, adoption."""

from __future__ import annotations

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.runner import REFERENCE_KERNEL, Run, resolve_factory
from tests.tiny import TINY

SHARED_TEXT = """
hardware: {page_words: 16, va_pages: 16, user_frames: 4, disk_order: fifo}
workload:
  initial: [0, 0]
  kills: true
  programs:
    - name: twice
      text: |
        MOV #1, r1
        SYS 0
"""


def run(choices: list[tuple[str, int]]) -> dict[str, int]:
    config = checkconfig.load_text(SHARED_TEXT)
    checked = Run(config, resolve_factory(REFERENCE_KERNEL), None)
    for choice in choices:
        assert choice in checked.enabled(), choice
        assert checked.take(choice) is None
    return dict(checked.result.coverage.counts)


def test_an_orphaned_page_in_adopted_by_a_sharer() -> None:
    # 1 faults on the shared text: a read of its image block into a frame starts.
    # 1 is killed while the read is in flight: nobody waits for it any more.
    # 2 faults on the same page: it waits for that read instead of starting another.
    counts = run([("run", 1), ("kill", 1), ("run", 2)])
    assert counts["exit_with_transfer_in_flight"] == 1
    assert counts["fault_on_page_in_transit"] == 1
    assert counts["orphan_adopted"] == 1


def test_a_fault_on_a_page_in_transit_for_a_waiting_process_is_not_an_adoption() -> None:
    counts = run([("run", 1), ("run", 2)])
    assert counts["fault_on_page_in_transit"] == 1
    assert "orphan_adopted" not in counts and "exit_with_transfer_in_flight" not in counts


def test_an_exit_with_nothing_in_flight_is_not_counted() -> None:
    counts = run([("run", 1), ("disk", 0), ("kill", 1)])
    assert "exit_with_transfer_in_flight" not in counts
    assert counts["fault:page_fault"] == 1


def tiny_requiring(situation: str) -> str:
    """The tiny configuration with eight user frames (nothing is ever evicted), requiring
    ``situation`` of every variant."""
    hardware = TINY.replace("user_frames: 4", "user_frames: 8")
    return f"{hardware}coverage:\n  every_variant: [{situation}]\n"


def test_a_campaign_tries_more_runs_for_coverage_it_missed() -> None:
    from pagingcheck.checks.jobs import ROUNDS, campaign
    from pagingcheck.checks.machines import Randomness

    kernel = resolve_factory(REFERENCE_KERNEL)
    never = checkconfig.load_text(tiny_requiring("evict:dirty"))
    seeded = campaign("base", never, kernel, REFERENCE_KERNEL, Randomness(7))
    assert seeded.rounds == ROUNDS and seeded.failure is None
    assert seeded.coverage.unreached(["evict:dirty"]) == ["evict:dirty"]
    # Derandomised, the next rounds take fixed seeds: the same runs every time.
    first = campaign("base", never, kernel, REFERENCE_KERNEL, None)
    again = campaign("base", never, kernel, REFERENCE_KERNEL, None)
    assert first.rounds == again.rounds == ROUNDS
    assert (first.runs, first.steps) == (again.runs, again.steps)
    assert first.coverage.counts == again.coverage.counts
    # A situation the first seed reaches needs no second one.
    reached = checkconfig.load_text(tiny_requiring("fault:page_fault"))
    assert campaign("base", reached, kernel, REFERENCE_KERNEL, Randomness(7)).rounds == 1
