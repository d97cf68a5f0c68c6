"""Build a checked system from a configuration, and run a choice sequence through it.

Hypothesis machines, the explorer, replay, mutants and validate all go
through here, so a trace that one of them writes, any of them re-runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.coverage import Coverage, classify
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.refinement import Checker, interface_call
from pagingcheck.checks.system import Choice, StepRecord, boot_system
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import UserError
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Program

KernelFactory = Callable[[HardwareConfig, KernelConfig], Kernel]

REFERENCE_KERNEL = "pagingcheck.impl.kernel:ReferenceKernel"


def resolve_factory(spec: str) -> KernelFactory:
    """The kernel factory named ``module:attr`` (UserError with the fix if it cannot load)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--impl {spec!r}: expected MODULE:ATTR, e.g. {REFERENCE_KERNEL}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may fail in any way while importing
        raise UserError(f"--impl {spec!r}: cannot import {module_name}: {error}") from error
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"--impl {spec!r}: {module_name} has no callable {attr}")
    return factory  # type: ignore[no-any-return]


@dataclass
class RunResult:
    """What running a choice sequence did."""

    records: list[StepRecord] = field(default_factory=list)
    violation: Violation | None = None
    failing_step: int | None = None
    coverage: Coverage = field(default_factory=Coverage)
    diverged_at: int | None = None  # a choice that was not enabled (the kernel changed)
    difference: list[str] = field(default_factory=list)  # what the failing step changed


def start(
    config: CheckConfig, factory: KernelFactory, programs: Sequence[Program] | None = None
) -> Checker:
    """Boot a fresh system for ``config`` and wrap it in a checker."""
    workload = config.workload
    system = interface_call(
        "construction or boot()",
        lambda: boot_system(
            Machine(config.hardware),
            factory(config.hardware, config.kernel),
            tuple(programs) if programs is not None else workload.programs,
            initial=workload.initial,
            max_spawns=workload.max_spawns,
            timer=workload.timer,
            kills=workload.kills,
        ),
    )
    return Checker(system)


def run_choices(
    config: CheckConfig,
    factory: KernelFactory,
    choices: Iterable[Choice],
    programs: Sequence[Program] | None = None,
) -> RunResult:
    """Apply ``choices`` in order, checking everything after each; stop at the first violation."""
    checker = start(config, factory, programs)
    result = RunResult(violation=checker.check_state())
    if result.violation is not None:
        result.failing_step = 0
        return result
    for index, choice in enumerate(choices, start=1):
        if choice not in checker.choices():
            result.diverged_at = index
            break
        before = checker.observed
        record, violation = checker.step(choice)
        result.records.append(record)
        result.coverage.add(classify(config.hardware, record, before, checker.observed))
        if violation is not None:
            result.violation = violation
            result.failing_step = index
            result.difference = checker.last_difference
            break
    return result
