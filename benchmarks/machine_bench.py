"""Measure what copying and fingerprinting the machine cost (the explorer does both per state).

Run: ``python benchmarks/machine_bench.py`` (or ``make bench``). Prints
microseconds per operation for a few machine sizes.
"""

from __future__ import annotations

import timeit

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.machine import Machine

SIZES = {
    "small (8 user frames, 16-word pages)": HardwareConfig(),
    "medium (64 user frames, 64-word pages)": HardwareConfig(
        page_words=64, user_frames=64, kernel_frames=32, va_pages=256
    ),
    "large (1024 user frames, 256-word pages)": HardwareConfig(
        page_words=256, user_frames=1024, kernel_frames=64, va_pages=1024
    ),
}


def per_call_us(statement: object, number: int) -> float:
    """Microseconds per call of ``statement``, best of 5 repeats."""
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    """Print the table."""
    print(f"{'machine':<44} {'words':>9} {'copy us':>9} {'fingerprint us':>15} {'eq us':>8}")
    for name, config in SIZES.items():
        machine = Machine(config)
        other = machine.copy()
        copy_us = per_call_us(machine.copy, 2000)
        fp_us = per_call_us(machine.fingerprint, 2000)
        eq_us = per_call_us(lambda m=machine, o=other: m == o, 2000)
        words = config.memory_words + config.disk_blocks * config.page_words
        print(f"{name:<44} {words:>9} {copy_us:>9.1f} {fp_us:>15.1f} {eq_us:>8.1f}")


if __name__ == "__main__":
    main()
