"""Fixtures: systems of the default configuration driven to interesting states."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.observe import Observed
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory, start


@pytest.fixture(scope="session")
def default_config() -> CheckConfig:
    """The built-in default configuration (its first variant)."""
    return checkconfig.load(None).expand()[0][1]


def drive_until(
    config: CheckConfig, wanted: Callable[[Observed], bool], seed: int = 0, limit: int = 3000
) -> Checker:
    """A checker whose state satisfies ``wanted``, reached by a seeded random driver
    that never violates a property on the way (the reference kernel is correct)."""
    checker = start(config, resolve_factory(REFERENCE_KERNEL))
    rng = random.Random(seed)
    for _ in range(limit):
        if wanted(checker.observed):
            return checker
        enabled = [c for c in checker.system.choices() if c[0] in ("run", "disk", "spawn")]
        if not enabled:
            break
        _, violation = checker.step(rng.choice(enabled))
        assert violation is None, violation.explain()
    raise AssertionError("the driver never reached the wanted state")


@pytest.fixture
def busy_state(default_config: CheckConfig) -> Checker:
    """A state with a transfer in flight and frames in use."""
    return drive_until(
        default_config,
        lambda s: bool(s.transfers) and any(f.status == "in_use" for f in s.view.frames),
    )


@pytest.fixture
def shared_state(default_config: CheckConfig) -> Checker:
    """A state where some frame is mapped by two processes."""
    return drive_until(default_config, lambda s: any(len(u) > 1 for u in s.mappers.values()))
