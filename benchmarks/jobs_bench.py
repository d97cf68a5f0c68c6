"""What ``--jobs`` buys: a whole ``validate`` of the reference kernel on the default
configuration (every variant's campaign, the explorations, coverage), one process
against one per core.

Prints the seconds of each, the speed-up, and whether the two reports agree (they must:
campaigns are derandomised). On a 2-core machine the target is about half the time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.jobs import default_jobs
from pagingcheck.checks.runner import kernel_factory, released
from pagingcheck.checks.verify import VerifyReport, verify

KERNEL = "pagingcheck.impl.reference:ReferenceKernel"


def timed(jobs: int) -> tuple[float, VerifyReport]:
    """Seconds of one validate with ``jobs`` processes, and its report."""
    config = checkconfig.load(None).with_profile("ci")
    with (
        tempfile.TemporaryDirectory() as folder,
        released(kernel_factory(KERNEL, config.limits, True)) as factory,
    ):
        began = time.perf_counter()
        report = verify(config, factory, KERNEL, Path(folder), jobs=jobs, in_process=True)
        return time.perf_counter() - began, report


def comparable(report: VerifyReport) -> object:
    """A report without its timings."""
    data = report.to_json()
    for check in data["results"]:
        check.pop("seconds")
    return data


def main() -> None:
    cores = default_jobs()
    serial, one = timed(1)
    print(f"validate, default configuration, 1 process:  {serial:6.1f} s")
    if cores < 2:
        print("only one core here: the parallel run is skipped")
        return
    parallel, many = timed(cores)
    print(f"validate, default configuration, {cores} processes: {parallel:6.1f} s")
    print(f"speed-up {serial / parallel:.2f}x ({parallel / serial:.0%} of the serial time)")
    print("reports agree" if comparable(one) == comparable(many) else "REPORTS DIFFER")


if __name__ == "__main__":
    main()
