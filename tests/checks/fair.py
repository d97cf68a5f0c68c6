"""Running a configuration to its end under fair choices, for the tests of one feature."""

from __future__ import annotations

from collections.abc import Callable

from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.runner import Run
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel
from pagingcheck.model.config import HardwareConfig

Factory = Callable[[HardwareConfig, KernelConfig], Kernel]


def run_fairly(config: CheckConfig, build: Factory) -> Run:
    """``config`` booted and continued fairly to its end, with no property violated."""
    run = Run(config, build, None)
    violation = run.continue_fairly(config.workload.progress_bound)
    assert violation is None, violation.explain()
    return run


def endings(run: Run) -> dict[int, str]:
    """How each process of ``run`` ended (the detail of the kernel's exit event)."""
    return {
        int(event.pid): event.detail
        for record in run.result.records
        for event in record.events
        if event.kind == "exit" and event.pid is not None
    }
