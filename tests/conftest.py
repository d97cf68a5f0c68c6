"""Shared test configuration: Hypothesis settings profiles.

Select one with the environment variable ``PAGINGCHECK_PROFILE``:

* ``ci`` (the default when ``CI`` is set): bounded, derandomized, no deadline;
* ``dev`` (the default otherwise): quick feedback while editing;
* ``thorough``: long campaigns, many examples and deep stateful runs.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    stateful_step_count=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("PAGINGCHECK_PROFILE", _default))

# The commands draw a new seed per run unless told otherwise; the tests pin what the
# campaigns find, so every command they run (in this process or a child) is derandomised.
# Tests of the seed itself remove this from the environment they run in.
os.environ.setdefault("PAGINGCHECK_DERANDOMIZE", "1")


@pytest.fixture
def first_proofs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prove`` decides only the first obligation of each part: for tests of what the
    command prints and how it judges verdicts, which every obligation would only slow
    (tests/checks/test_proofs.py decides them all once)."""
    from pagingcheck.checks import proofs

    parts = (proofs.bookkeeping, proofs.mappings, proofs.backup, proofs.translation)
    monkeypatch.setattr(proofs, "obligations", lambda: (next(p.obligations()) for p in parts))
