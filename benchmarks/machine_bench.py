"""Measure what copying and fingerprinting the machine cost (the explorer does both per state).

Run: ``python benchmarks/machine_bench.py`` (or ``make bench``). Prints
microseconds per operation for a few machine sizes: a copy, a fingerprint of an
unchanged machine, a fingerprint of a copy after one word was written (what the
explorer pays per state: frames and disk blocks keep their digests, so only the
written frame is hashed again), equality, and the bytes of memory and disk that such
a copy holds of its own (copies share every frame and block neither wrote).
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
    print(
        f"{'machine':<44} {'words':>9} {'copy us':>9} {'fingerprint us':>15} "
        f"{'written us':>11} {'eq us':>8} {'own bytes':>10}"
    )
    for name, config in SIZES.items():
        machine = Machine(config)
        machine.fingerprint()
        other = machine.copy()
        copy_us = per_call_us(machine.copy, 2000)
        fp_us = per_call_us(machine.fingerprint, 2000)
        address = config.first_user_frame * config.page_words
        written_us = per_call_us(lambda m=machine, a=address: written(m, a), 2000) - copy_us
        eq_us = per_call_us(lambda m=machine, o=other: m == o, 2000)
        words = config.memory_words + config.disk_blocks * config.page_words
        print(
            f"{name:<44} {words:>9} {copy_us:>9.1f} {fp_us:>15.1f} {written_us:>11.1f} "
            f"{eq_us:>8.1f} {own_bytes(machine, address):>10}"
        )


def written(machine: Machine, address: int) -> bytes:
    """A copy of ``machine`` with one word written, fingerprinted."""
    clone = machine.copy()
    clone.memory.write(address, 7)
    return clone.fingerprint()


def own_bytes(machine: Machine, address: int) -> int:
    """The bytes of memory and disk words a copy with one word written does not share
    with ``machine`` (4 per word of each frame or block that is not the same object)."""
    clone = machine.copy()
    clone.memory.write(address, 7)
    frames = zip(machine.memory.frames, clone.memory.frames, strict=True)
    blocks = zip(machine.disk.blocks, clone.disk.blocks, strict=True)
    return sum(4 * len(theirs) for mine, theirs in (*frames, *blocks) if mine is not theirs)


if __name__ == "__main__":
    main()
