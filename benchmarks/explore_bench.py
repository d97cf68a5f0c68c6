"""Explorer speed and memory on every reference configuration, and where the time goes.

Prints, per configuration: distinct states and transitions per second (every property
checked on every transition), and the bytes the explorer keeps per distinct state (the
visited digests, the parent links and the transition graph used for progress; the
frontier's checker copies are transient and not counted). Then a profile of the
smallest configuration split into the explorer's parts. One worker, no symmetry
reduction: those are the only modes the explorer has today.

The issue's target is 3,000 checked distinct states per second on one core on the tiny
configuration; the figure printed says how far from it the explorer is.
"""

from __future__ import annotations

import cProfile
import pstats
import time

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.explore import Explorer
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory

#: The explorer's parts, as (label, function names) in the profile.
PARTS = (
    ("kernel and hardware step, with its checks", ("step",)),
    ("fingerprint of a state", ("fingerprint",)),
    ("copy of a state", ("copy",)),
    ("enabled choices (asks the kernel)", ("choices",)),
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


def where_the_time_goes(name: str) -> None:
    """Profile one exploration and print the share of each of the explorer's parts."""
    config = checkconfig.load_reference(name)
    explorer = Explorer(config, resolve_factory(REFERENCE_KERNEL))
    profile = cProfile.Profile()
    profile.runcall(explorer.run)
    stats = pstats.Stats(profile)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    table = stats.stats  # type: ignore[attr-defined]
    print(f"\nwhere the time goes ({name}, profiled, {total:.2f} s):")
    for label, names in PARTS:
        spent = sum(
            entry[3]
            for (path, _, function), entry in table.items()
            if function in names and path.endswith(("refinement.py", "explore.py"))
        )
        print(f"  {label:<45} {100 * spent / total:5.1f} %")


def main() -> None:
    """Every reference configuration, smallest first, then the profile."""
    for name in ("pair", "shared", "software", "tiny"):
        measure(name)
    where_the_time_goes("software")


if __name__ == "__main__":
    main()
