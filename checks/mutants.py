"""``pagingcheck mutants``: run the checker on every seeded-bug kernel; print a kill matrix.

Each mutant (:mod:`pagingcheck.impl.mutants`) runs on the configuration's
first variant with the mutant's own hardware and kernel overrides (a
restart-variant bug needs that variant), under the same Hypothesis machine
as ``verify``. A mutant is killed when some property fails; the row records
which, how long it took, and the length of the shrunk trace (and before delta
debugging shortened it), which is written so it can be replayed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.machines import run_campaign
from pagingcheck.impl.mutants import MUTANTS, Mutant, factory


@dataclass(frozen=True)
class KillRow:
    """One mutant's outcome."""

    name: str
    killed: bool
    by: str | None
    expected: str
    seconds: float
    trace_steps: int | None
    trace: str | None
    trace_steps_before: int | None = None  # before delta debugging shortened it

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this row."""
        return dataclasses.asdict(self)


def mutant_config(config: CheckConfig, mutant: Mutant) -> CheckConfig:
    """``config``'s first variant with the mutant's overrides applied."""
    _, base = config.expand()[0]
    return dataclasses.replace(
        base,
        hardware=base.hardware.replace(**mutant.hardware),
        kernel=dataclasses.replace(base.kernel, **mutant.kernel),
    )


def run_mutant(config: CheckConfig, mutant: Mutant, trace_dir: Path) -> KillRow:
    """Check one mutant; write its counterexample trace if it is killed."""
    began = time.perf_counter()
    run = mutant_config(config, mutant)
    implementation = f"pagingcheck.impl.mutants:{mutant.name}"
    done, failure = run_campaign(
        run,
        factory(mutant),
        implementation,
        examples=run.budget.examples * 2,
        steps=run.budget.steps,
        shrink_seconds=run.budget.shrink_seconds,
    )
    seconds = time.perf_counter() - began
    if failure is None or failure.violation is None:
        return KillRow(mutant.name, False, None, mutant.expected, seconds, None, None)
    path = traces.write(failure, trace_dir, f"mutant-{mutant.name}")
    return KillRow(
        mutant.name,
        True,
        failure.violation.property,
        mutant.expected,
        seconds,
        len(failure.choices),
        str(path),
        done.unminimized,
    )


def kill_matrix(
    config: CheckConfig,
    trace_dir: Path,
    mutants: Iterable[Mutant] = MUTANTS,
    progress: Callable[[str], None] = lambda _: None,
) -> list[KillRow]:
    """Every mutant's row, in catalog order."""
    rows = []
    chosen = list(mutants)
    for index, mutant in enumerate(chosen, start=1):
        progress(f"[{index}/{len(chosen)}] {mutant.name}")
        rows.append(run_mutant(config, mutant, trace_dir))
    return rows
