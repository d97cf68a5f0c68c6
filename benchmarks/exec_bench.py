"""What the process protocol costs: the same kernel checked in-process and by ``--exec``.

Not a test: run it by hand (``.venv/bin/python benchmarks/exec_bench.py``) or with
``make bench``. The reference kernel explores the ``pair`` configuration three ways:
in pagingcheck's own process; served on stdin and stdout by
``pagingcheck.checks.host --stdio`` with save and restore; and re-executed from the
start whenever another state is needed (``--no-save``, stopped at a few states, as
each switch restarts Python). It prints checked transitions per second for each and
the slowdown against in-process. A kernel in a compiled language pays the same
protocol cost and less for its own start.

Then, when a C compiler is on PATH, it builds the C kernel (``impl/c/kernel.c``) and
runs the checks of ``validate`` on its conformance configuration
(``impl/c/conformance.yaml``) twice: by ``--exec`` on the C kernel, and in-process on
the Python minimal kernel (``--impl pagingcheck.impl.minimal:MinimalKernel``). It
prints checked steps per second of the stateful campaigns for each, and the ratio.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.explore import Explorer
from pagingcheck.checks.runner import REFERENCE_KERNEL, kernel_factory, released
from pagingcheck.checks.verify import verify

SERVED = f"{sys.executable} -m pagingcheck.checks.host --stdio"
WAYS = (
    ("in-process", REFERENCE_KERNEL, None),
    ("--exec, save/restore", f"exec:{SERVED} {REFERENCE_KERNEL}", None),
    ("--exec, re-execution", f"exec:{SERVED} --no-save {REFERENCE_KERNEL}", 30),
)


def main() -> None:
    """Explore pair each way; print the rates and the slowdown."""
    config = checkconfig.load_reference("pair")
    base = None
    for name, spec, limit in WAYS:
        with released(kernel_factory(spec, config.limits)) as factory:
            began = time.perf_counter()
            result = Explorer(config, factory, max_states=limit).run()
            seconds = time.perf_counter() - began
        rate = result.transitions / seconds
        base = base or rate
        print(
            f"{name:<22} {result.distinct_states:>5} states {result.transitions:>5} transitions "
            f"{rate:>8.0f} transitions/s  ({base / rate:5.1f}x the in-process time)"
        )


MINIMAL_KERNEL = "pagingcheck.impl.minimal:MinimalKernel"


def validate_rate(spec: str, config: checkconfig.CheckConfig, traces: Path) -> tuple[int, float]:
    """Checked steps of ``validate``'s stateful campaigns for ``spec``, and steps per second."""
    with released(kernel_factory(spec, config.limits)) as factory:
        report = verify(config, factory, spec, traces)
    if not report.ok:
        failed = [check.detail for check in report.checks if not check.ok]
        raise SystemExit(f"validate of {spec} failed: {failed}")
    campaigns = [check for check in report.checks if check.name.startswith("stateful:")]
    steps = sum(int(check.extra["steps"]) for check in campaigns)
    return steps, steps / sum(check.seconds for check in campaigns)


def c_kernel() -> None:
    """validate --exec on the C kernel beside the in-process minimal kernel."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("C kernel: skipped: no C compiler (cc or gcc) on PATH to build impl/c/kernel.c")
        return
    sources = Path(str(files("pagingcheck.impl").joinpath("c")))
    config = checkconfig.load(sources / "conformance.yaml").with_profile("ci")
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "kernel"
        subprocess.run(
            [compiler, "-std=c99", "-O2", "-o", str(binary), str(sources / "kernel.c")],
            check=True,
        )
        rows = (
            ("C kernel, --exec", f"exec:{binary}"),
            ("minimal kernel, --impl", MINIMAL_KERNEL),
        )
        rates = {}
        for name, spec in rows:
            steps, rate = validate_rate(spec, config, Path(folder))
            rates[name] = rate
            print(f"{name:<24} {steps:>6} steps {rate:>8.0f} steps/s  (validate, conformance)")
    exec_rate, minimal_rate = rates["C kernel, --exec"], rates["minimal kernel, --impl"]
    print(f"C kernel by --exec runs at {exec_rate / minimal_rate:.2f}x the minimal kernel's rate")


if __name__ == "__main__":
    main()
    c_kernel()
