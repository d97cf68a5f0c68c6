"""``pagingcheck mutants``: run the checker on every seeded-bug kernel; print a kill matrix.

Each mutant (:mod:`pagingcheck.impl.mutants`) runs on the configuration's
first variant with the mutant's own hardware and kernel overrides (a
restart-variant bug needs that variant), under the same Hypothesis machine
as ``verify``. A mutant is killed when some property fails; the row records
which, how long it took, and the length of the shrunk trace (and before delta
debugging and breadth-first search shortened it, and whether the search
did), which is written so it can be replayed. Mutants are
independent, so ``jobs`` of them run at once on forked workers
(:func:`pagingcheck.checks.jobs.run_all`); the rows are the same either way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pagingcheck.checks import viewer
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.jobs import run_all
from pagingcheck.checks.machines import run_campaign
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.impl.mutants import BY_NAME, MUTANTS, Mutant, factory


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
    trace_searched: bool = False  # a breadth-first search, not delta debugging alone, gave it

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this row."""
        return dataclasses.asdict(self)


def mutant_config(config: CheckConfig, mutant: Mutant) -> CheckConfig:
    """``config``'s first variant with the mutant's overrides applied: its hardware and
    kernel settings, the programs it leaves out, and the programs it boots when the
    configuration has them."""
    _, base = config.expand()[0]
    workload = base.workload
    names = [program.name for program in workload.programs]
    kept = [index for index, name in enumerate(names) if name not in mutant.leaves_out]
    workload = dataclasses.replace(
        workload,
        programs=tuple(workload.programs[index] for index in kept),
        initial=tuple(kept.index(index) for index in workload.initial if index in kept),
    )
    names = [program.name for program in workload.programs]
    if mutant.boots and all(name in names for name in mutant.boots):
        booted = tuple(names.index(name) for name in mutant.boots)
        workload = dataclasses.replace(workload, initial=booted)
    return dataclasses.replace(
        base,
        hardware=base.hardware.replace(**mutant.hardware),
        kernel=dataclasses.replace(base.kernel, **mutant.kernel),
        workload=workload,
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
    path = viewer.write_trace(failure, trace_dir, f"mutant-{mutant.name}", factory(mutant))
    return KillRow(
        mutant.name,
        True,
        failure.violation.property,
        mutant.expected,
        seconds,
        len(failure.choices),
        str(path),
        done.unminimized,
        done.searched,
    )


def kill_matrix(
    config: CheckConfig,
    trace_dir: Path,
    mutants: Iterable[Mutant] = MUTANTS,
    progress: Callable[[str], None] = lambda _: None,
    jobs: int = 1,
) -> list[KillRow]:
    """Every mutant's row, in the order given; ``jobs`` mutants are checked at once."""
    chosen = list(mutants)
    works = [(m.name, partial(_row, config, m.name, trace_dir)) for m in chosen]
    rows: dict[str, KillRow] = {}
    # Each work builds its mutant by name; the reference kernel's factory run_all makes
    # for it goes unused.
    done = run_all(
        works, resolve_factory(REFERENCE_KERNEL), REFERENCE_KERNEL, config.limits, jobs, True
    )
    for index, row in enumerate(done, start=1):
        verdict = f"killed by {row.by}" if row.killed else "SURVIVED"
        progress(f"[{index}/{len(chosen)}] {row.name}: {verdict} ({row.seconds:.1f}s)")
        rows[row.name] = row
    return [rows[m.name] for m in chosen]


def _row(config: CheckConfig, name: str, trace_dir: Path, *_: object) -> KillRow:
    """The row of the mutant called ``name`` (a work of :func:`kill_matrix`)."""
    return run_mutant(config, BY_NAME[name], trace_dir)
