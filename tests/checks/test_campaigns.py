"""Long campaigns, run with ``make test-slow``: the default configuration under the
thorough budget, and the whole kill matrix under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.mutants import kill_matrix
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.checks.verify import verify

pytestmark = pytest.mark.slow


def test_thorough_verify_of_the_reference_kernel(tmp_path: Path) -> None:
    config = checkconfig.load(None).with_profile("thorough")
    report = verify(config, resolve_factory(REFERENCE_KERNEL), REFERENCE_KERNEL, tmp_path)
    assert report.ok, [check.detail for check in report.checks if not check.ok]


def test_thorough_kill_matrix(tmp_path: Path) -> None:
    rows = kill_matrix(checkconfig.load(None).with_profile("thorough"), tmp_path)
    assert all(row.killed and row.by == row.expected for row in rows)
