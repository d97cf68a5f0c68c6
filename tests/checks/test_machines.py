"""The Hypothesis stateful machine, run as a test under the selected settings profile.

``PAGINGCHECK_PROFILE=thorough make test`` turns this into a long campaign.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import machines
from pagingcheck.checks.machines import Campaign, machine_for, run_campaign
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.impl.mutants import BY_NAME, factory
from pagingcheck.model.errors import InternalError

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


def test_an_internal_error_is_never_swallowed_by_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run finds a violation; while it is shrunk, pagingcheck hits a bug: the bug is raised."""
    original = Checker.check_state
    found: list[bool] = []

    def check_state(self: Checker) -> Violation | None:
        history = self.system.history
        if found and len(history) == 2:
            raise InternalError("a deliberately broken check")
        if len(history) >= 6:
            found.append(True)
            return Violation("no_leaks", "a deliberately injected violation")
        return original(self)

    monkeypatch.setattr(Checker, "check_state", check_state)
    with pytest.raises(InternalError, match="deliberately broken"):
        run_campaign(
            _CONFIG,
            resolve_factory(REFERENCE_KERNEL),
            REFERENCE_KERNEL,
            examples=10,
            steps=20,
            shrink_seconds=5,
        )
    assert found


def trail_of_a_small_campaign() -> bytes:
    campaign, failure = run_campaign(
        _CONFIG, resolve_factory(REFERENCE_KERNEL), REFERENCE_KERNEL, examples=6, steps=30
    )
    assert failure is None
    return campaign.trail.digest()


def test_generation_does_not_depend_on_constants_in_loaded_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = trail_of_a_small_campaign()
    assert trail_of_a_small_campaign() == before  # a campaign is deterministic
    # A user's kernel module with literals in it, imported like any kernel.
    (tmp_path / "constant_heavy_kernel.py").write_text(
        "MAX_PIDS = 128\nLIMITS = (1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 100, 120)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("constant_heavy_kernel")
    assert trail_of_a_small_campaign() == before
    # Without the guard, the same literals do change what is explored.
    monkeypatch.setattr(machines, "no_source_constants", contextlib.nullcontext)
    assert trail_of_a_small_campaign() != before
