"""The Hypothesis stateful machine, run as a test under the selected settings profile.

``PAGINGCHECK_PROFILE=thorough make test`` turns this into a long campaign.
"""

from __future__ import annotations

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.machines import Campaign, machine_for, run_campaign
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.impl.mutants import BY_NAME, factory

_NAME, _CONFIG = checkconfig.load(None).expand()[2]  # hashed table, decode restart, lru
_CAMPAIGN = Campaign()

TestReferenceKernel = machine_for(
    _CONFIG, resolve_factory(REFERENCE_KERNEL), REFERENCE_KERNEL, _CAMPAIGN
).TestCase


def test_campaign_counts_runs_steps_and_coverage() -> None:
    campaign, failure = run_campaign(
        _CONFIG, resolve_factory(REFERENCE_KERNEL), REFERENCE_KERNEL, examples=8, steps=60
    )
    assert failure is None
    assert campaign.runs >= 8 and campaign.steps > 8
    assert campaign.coverage.counts["fault:page_fault"] > 0


def test_campaign_finds_and_shrinks_a_seeded_bug() -> None:
    mutant = BY_NAME["reuse_busy_frame"]
    _, failure = run_campaign(
        _CONFIG,
        factory(mutant),
        "pagingcheck.impl.mutants:reuse_busy_frame",
        examples=20,
        steps=60,
        shrink_seconds=5,
    )
    assert failure is not None and failure.violation is not None
    assert failure.violation.property == "busy_frame_exclusive"
    assert len(failure.choices) <= 3
