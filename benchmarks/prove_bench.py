"""Time ``pagingcheck prove``: every z3 obligation, and the slowest ones.

Not a test: run it by hand (``.venv/bin/python benchmarks/prove_bench.py``)
or with ``make bench``. The target is the whole suite in under 30 seconds on
2 cores; the script prints the wall-clock time of one full run, best of three.
"""

from __future__ import annotations

import time

from pagingcheck.checks import proofs


def main() -> None:
    """Run the suite three times; print the best time and the slowest obligations."""
    best = float("inf")
    outcomes: list[proofs.Outcome] = []
    for _ in range(3):
        began = time.perf_counter()
        outcomes = proofs.prove_all()
        best = min(best, time.perf_counter() - began)
    proved = sum(o.verdict == "proved" for o in outcomes)
    print(f"prove: {proved} of {len(outcomes)} obligations proved in {best:.2f} s (target < 30 s)")
    for outcome in sorted(outcomes, key=lambda o: -o.seconds)[:5]:
        print(f"  {outcome.seconds:6.3f} s  {outcome.name}")


if __name__ == "__main__":
    main()
