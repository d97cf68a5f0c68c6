"""What the process protocol costs: the same kernel checked in-process and by ``--exec``.

Not a test: run it by hand (``.venv/bin/python benchmarks/exec_bench.py``) or with
``make bench``. The reference kernel explores the ``pair`` configuration three ways:
in pagingcheck's own process; served on stdin and stdout by
``pagingcheck.checks.host --stdio`` with save and restore; and re-executed from the
start whenever another state is needed (``--no-save``, stopped at a few states, as
each switch restarts Python). It prints checked transitions per second for each and
the slowdown against in-process. A kernel in a compiled language pays the same
protocol cost and less for its own start.
"""

from __future__ import annotations

import sys
import time

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.explore import Explorer
from pagingcheck.checks.runner import REFERENCE_KERNEL, kernel_factory, released

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


if __name__ == "__main__":
    main()
