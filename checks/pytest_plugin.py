"""A pytest plugin: check a kernel against the spec from a project's own test suite.

Installed with pagingcheck (entry point ``pytest11``), it gives every test
suite:

* the ``pagingcheck`` fixture, whose :meth:`Checks.validate` runs what
  ``pagingcheck validate`` runs on a kernel and fails the test with the first
  violation: the property, why, and the trace that replays it;
* the ``pagingcheck`` marker, ``@pytest.mark.pagingcheck(config=...,
  profile=..., variants=[...], seed=...)``, which sets those arguments'
  defaults for one test.

The runs come from a seed derived from the test's id, so a test checks the
same runs every time, and Hypothesis's example database (pagingcheck's own,
in the user's cache folder) is replayed first, so a failure found once is
tried first the next time. The active Hypothesis settings profile is
honoured: one with ``derandomize=True`` makes the runs derandomised, and one
with ``database=None`` turns the database off.

Everything pagingcheck needs is imported when a check runs, not when the
plugin loads, so a test suite that never asks for the fixture pays nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pagingcheck.checks.machines import Randomness
    from pagingcheck.checks.verify import VerifyReport

MARKER = (
    "pagingcheck(config=None, profile='dev', variants=(), seed=None): defaults of the "
    "pagingcheck fixture's validate() for this test"
)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def pagingcheck(request: pytest.FixtureRequest, tmp_path: Path) -> Checks:
    """Checks of a kernel against the spec, failing this test on a violation."""
    marker = request.node.get_closest_marker("pagingcheck")
    defaults = dict(marker.kwargs) if marker is not None else {}
    return Checks(request.node.nodeid, tmp_path / "traces", defaults)


class Checks:
    """What the fixture gives a test: :meth:`validate`."""

    def __init__(self, test: str, traces: Path, defaults: dict[str, Any]) -> None:
        self.test = test
        self.traces = traces
        self.defaults = defaults

    def validate(
        self,
        kernel: object,
        *,
        config: str | Path | None = None,
        profile: str | None = None,
        variants: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> VerifyReport:
        """Check ``kernel`` as ``pagingcheck validate`` does and return the report; fail
        the test with the first violation (its property, why and the trace to replay).

        ``kernel`` is ``"MODULE:ATTR"``, ``"exec:COMMAND"`` for a program in any
        language, or a class or function defined at the top of an importable module
        (called with the hardware and kernel configurations, as ``--impl`` is).
        ``config`` is a YAML configuration (default: the built-in one), ``profile`` a
        budget profile (default ``dev``, the quickest), ``variants`` the variants to
        run (default: all), ``seed`` the seed of the runs (default: one derived from
        the test's id). Arguments not given come from the test's marker.
        """
        from pagingcheck.checks import config as checkconfig
        from pagingcheck.checks.runner import kernel_factory, released
        from pagingcheck.checks.verify import verify
        from pagingcheck.model.errors import UserError

        chosen = {**self.defaults, **_given(config, profile, variants, seed)}
        spec = kernel_spec(kernel)
        path = chosen.get("config")
        self.traces.mkdir(parents=True, exist_ok=True)
        try:
            run = checkconfig.load(None if path is None else Path(path))
            run = run.with_profile(chosen.get("profile") or "dev")
            with released(kernel_factory(spec, run.limits)) as factory:
                report = verify(
                    run,
                    factory,
                    spec,
                    self.traces,
                    only=tuple(chosen.get("variants") or ()),
                    exit_first=True,
                    randomness=self._randomness(chosen.get("seed")),
                )
        except UserError as error:  # the test's own mistake: one line, as the CLI says it
            pytest.fail(f"pagingcheck: {error}", False)
        failed = next((check for check in report.checks if not check.ok), None)
        if failed is not None:
            pytest.fail(_failure(spec, failed.detail, failed.extra.get("violation")), False)
        return report

    def _randomness(self, seed: int | None) -> Randomness:
        """The seed given, or one derived from the test's id; Hypothesis's active profile
        decides whether runs are derandomised and whether the database is used."""
        from hypothesis import settings

        from pagingcheck.checks.machines import Randomness

        active = settings()
        if active.derandomize:
            return Randomness()
        if seed is None:
            seed = int.from_bytes(hashlib.blake2b(self.test.encode(), digest_size=4).digest())
        return Randomness(seed, database=active.database is not None)


def _given(
    config: str | Path | None,
    profile: str | None,
    variants: Sequence[str] | None,
    seed: int | None,
) -> dict[str, Any]:
    """The arguments a call gave (None: not given)."""
    values = {"config": config, "profile": profile, "variants": variants, "seed": seed}
    return {name: value for name, value in values.items() if value is not None}


def kernel_spec(kernel: object) -> str:
    """``kernel`` as the ``MODULE:ATTR`` (or ``exec:COMMAND``) spec traces name it by."""
    if isinstance(kernel, str):
        return kernel
    module = getattr(kernel, "__module__", None)
    name = getattr(kernel, "__qualname__", "")
    if not module or not name or "<locals>" in name or module == "__main__":
        raise pytest.UsageError(
            f"pagingcheck: {kernel!r} cannot be named for a trace to replay; pass "
            "'MODULE:ATTR', or a class or function defined at the top of a module"
        )
    return f"{module}:{name}"


def _failure(spec: str, detail: str, violation: dict[str, Any] | None) -> str:
    """The test's failure message: what failed, why, and how to see it again."""
    if violation is None:
        return f"pagingcheck: {spec}: {detail}"
    lines = [f"pagingcheck: {spec} violates {violation['property']}: {violation['why']}"]
    if violation.get("trace"):
        lines.append(f"  trace: {violation['trace']}")
        lines.append(f"  replay: pagingcheck replay {violation['trace']}")
    return "\n".join(lines)
