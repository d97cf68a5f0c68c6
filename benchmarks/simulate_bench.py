"""Measure the trace simulator's speed, in references per second, for every policy.

Not a test: run it by hand (``.venv/bin/python benchmarks/simulate_bench.py``)
and compare the table with the numbers in docs/simulate.md.

The reference string is synthetic but shaped like a program's: most
references go to a hot set of pages that drifts slowly through a larger
address space, the rest are scattered uniformly; about a quarter are writes.
Two timings per policy, each the best of three runs in CPU seconds:
``memory`` runs :func:`simulate` over a prepared list of references (the
simulator and policy alone), ``file`` reads the same references from a
one-page-per-line file through :func:`read_refs` (what ``pagingcheck
simulate --refs-file`` does). A third line times :func:`read_lackey` alone
on the same references written as a lackey log. Last, the fault curve over 1 to
``--frames`` frames for LRU and OPT: one pass (:func:`curve`) against a run per
frame count, and how many times faster the pass is. Then the whole-process measure: the
wall time of ``pagingcheck simulate --refs-file`` (start-up, reading and simulating)
against ``benchmarks/reference_loop.py``, a plain pure-Python loop of the kind course
simulators are, on the same file, for FIFO, LRU and CLOCK; the project aims for 5 times
faster.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pagingcheck.impl.lib.replacement import POLICY_NAMES
from pagingcheck.impl.simulate import (
    STACK_POLICIES,
    SimResult,
    curve,
    read_lackey,
    read_refs,
    run,
)

T = TypeVar("T")


def synthetic(
    count: int, *, seed: int = 1, pages: int = 4096, hot: int = 24
) -> list[tuple[int, bool]]:
    """``count`` references: 95% to a drifting hot set of ``hot`` pages, 5% uniform."""
    rng = random.Random(seed)
    base = 0
    refs: list[tuple[int, bool]] = []
    for index in range(count):
        if index % 2000 == 0:
            base = (base + rng.randrange(1, hot)) % pages
        hot_page = rng.random() < 0.95
        page = (base + rng.randrange(hot)) % pages if hot_page else rng.randrange(pages)
        refs.append((page, rng.random() < 0.25))
    return refs


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """The result of ``action`` and the best of three runs' CPU time.

    CPU time rather than wall time, so other work on a shared machine does
    not count against the simulator.
    """
    runs = []
    for _ in range(3):
        start = time.process_time()
        result = action()
        runs.append((time.process_time() - start, result))
    best, result = min(runs, key=lambda run: run[0])
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=2_000_000, help="references (2000000)")
    parser.add_argument("--frames", type=int, default=32, help="frames (32)")
    parser.add_argument("--policy", action="append", choices=POLICY_NAMES, help="repeatable")
    args = parser.parse_args()
    policies = args.policy or list(POLICY_NAMES)

    refs = synthetic(args.refs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "refs.txt"
        path.write_text("".join(f"{page}{'w' if write else ''}\n" for page, write in refs))
        print(f"{args.refs} references, {args.frames} frames")
        print(f"{'policy':<14} {'faults':>9} {'memory refs/s':>14} {'file refs/s':>12}")
        for name in policies:

            def from_memory(name: str = name) -> SimResult:
                return run(name, refs, args.frames)

            result, memory = timed(from_memory)

            def from_file(name: str = name) -> SimResult:
                with path.open("rb") as lines:
                    return run(name, read_refs(lines, str(path)), args.frames)

            _, file = timed(from_file)
            print(
                f"{name:<14} {result.faults:>9} {args.refs / memory:>14,.0f} "
                f"{args.refs / file:>12,.0f}"
            )

        log = Path(tmp) / "lackey.log"
        log.write_text(
            "".join(f" {'S' if write else 'L'} {page * 4096 + 64:08x},8\n" for page, write in refs)
        )

        def parse_lackey() -> int:
            with log.open("rb") as lines:
                return sum(1 for _ in read_lackey(lines, 4096, str(log)))

        count, seconds = timed(parse_lackey)
        print(f"read_lackey alone: {count / seconds:,.0f} refs/s")
    print_curves(refs[: min(len(refs), 500_000)], args.frames)
    print_whole_process(refs[: min(len(refs), 1_000_000)], args.frames)


def print_curves(refs: list[tuple[int, bool]], frames: int) -> None:
    """One pass against a run per frame count, for every count from 1 to ``frames``."""
    sizes = range(1, frames + 1)
    print(f"fault curve over 1-{frames} frames, {len(refs)} references:")
    for name in STACK_POLICIES:
        found, one_pass = timed(lambda name=name: curve(name, refs, sizes))  # type: ignore[misc]
        start = time.process_time()
        faults = [run(name, refs, size).faults for size in sizes]
        per_size = time.process_time() - start
        assert faults == [point.faults for point in found.points], "the pass disagrees"
        print(
            f"  {name:<4} one pass {one_pass:6.2f} s, a run per count {per_size:7.2f} s "
            f"({per_size / one_pass:5.1f} times faster)"
        )


def print_whole_process(refs: list[tuple[int, bool]], frames: int) -> None:
    """Wall time, best of three, of the whole simulate command against the reference loop
    on the same file; they must count the same faults."""
    loop = Path(__file__).with_name("reference_loop.py")
    print(f"whole process, {len(refs)} references from a file, {frames} frames (wall, best of 3):")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "refs.txt"
        path.write_text("".join(f"{page}{'w' if write else ''}\n" for page, write in refs))
        for name in ("fifo", "lru", "clock"):
            ours = [sys.executable, "-m", "pagingcheck", "simulate", "-p", name, "-n", str(frames)]
            faults, simulate = wall([*ours, "--refs-file", str(path), "--json"])
            theirs = [sys.executable, str(loop), name, str(frames), str(path)]
            expected, reference = wall(theirs)
            assert json.loads(faults)["results"][0]["faults"] == int(expected), name
            print(
                f"  {name:<6} simulate {len(refs) / simulate:>12,.0f} refs/s, reference loop "
                f"{len(refs) / reference:>12,.0f} refs/s: {reference / simulate:5.1f} times faster"
            )


def wall(command: list[str]) -> tuple[str, float]:
    """``command``'s output and its best wall time of three runs."""
    best, output = float("inf"), ""
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        best, output = min(best, time.perf_counter() - start), done.stdout
    return output, best


if __name__ == "__main__":
    main()
