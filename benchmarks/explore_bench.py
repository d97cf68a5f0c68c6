"""Explorer speed and memory on every reference configuration, and where the time goes.

Prints, per configuration: distinct states and transitions per second (every property
checked on every transition), and the bytes the explorer keeps per distinct state (the
visited digests, the parent links and the transition graph used for progress; the
frontier's checker copies are transient and not counted); then the same with two
worker processes; then a profile split into the explorer's parts. Symmetry
reduction does not exist yet, so every figure is without it.

The project's target is 3,000 checked distinct states per second on one core on the tiny
configuration; the figure printed says how far from it the explorer is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.explore import Explorer
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.checks.sharded import explore_sharded

#: The explorer's parts: the Checker methods it calls, and what each does.
PARTS = (
    ("step", "kernel and hardware step, with every check"),
    ("fingerprint", "fingerprint of a state"),
    ("copy", "copy of a state"),
    ("choices", "enabled choices (asks the kernel)"),
)


def measure(name: str) -> None:
    """Explore one reference configuration and print its figures."""
    config = checkconfig.load_reference(name)
    explorer = Explorer(config, resolve_factory(REFERENCE_KERNEL))
    began = time.perf_counter()
    result = explorer.run()
    seconds = time.perf_counter() - began
    print(
        f"{name:<10} {result.distinct_states:>7} states {result.transitions:>7} transitions "
        f"{result.distinct_states / seconds:>7.0f} states/s {result.transitions / seconds:>7.0f} "
        f"transitions/s {explorer.graph.bytes_per_state():>6.0f} bytes/state "
        f"({'complete' if result.complete else 'incomplete'})"
    )


def measure_workers(name: str, workers: int) -> None:
    """Explore one reference configuration with ``workers`` processes; print its rate."""
    config = checkconfig.load_reference(name)
    began = time.perf_counter()
    result, _ = explore_sharded(config, resolve_factory(REFERENCE_KERNEL), workers)
    seconds = time.perf_counter() - began
    print(
        f"{name:<10} {result.distinct_states:>7} states {result.transitions:>7} transitions "
        f"{result.distinct_states / seconds:>7.0f} states/s with {workers} workers"
    )


def where_the_time_goes(name: str) -> None:
    """Time each of the explorer's parts by wrapping the Checker's methods with clocks (a
    profiler's per-call overhead would overstate the parts made of many small calls)."""
    spent = dict.fromkeys((method for method, _ in PARTS), 0.0)
    originals = {method: getattr(Checker, method) for method, _ in PARTS}

    def clocked(method: str) -> Callable[..., Any]:
        original = originals[method]

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[method] += time.perf_counter() - began

        return timed

    explorer = Explorer(checkconfig.load_reference(name), resolve_factory(REFERENCE_KERNEL))
    for method, _ in PARTS:
        setattr(Checker, method, clocked(method))
    try:
        began = time.perf_counter()
        explorer.run()
        total = time.perf_counter() - began
    finally:
        for method, original in originals.items():
            setattr(Checker, method, original)
    print(f"\nwhere the time goes ({name}, {total:.2f} s):")
    for method, label in PARTS:
        print(f"  {label:<45} {100 * spent[method] / total:5.1f} %")
    rest = total - sum(spent.values())
    print(f"  {'the search itself (graph, queue, digests)':<45} {100 * rest / total:5.1f} %")


def main() -> None:
    """Every reference configuration, smallest first, then the profile."""
    print("one process:")
    for name in ("pair", "shared", "software", "tiny", "trio", "large"):
        measure(name)
    print("\nworker processes (the same states, sharded by fingerprint):")
    for name in ("software", "tiny"):
        measure_workers(name, 2)
    where_the_time_goes("software")


if __name__ == "__main__":
    main()
