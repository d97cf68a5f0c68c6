"""A plain pure-Python page-replacement loop: the yardstick simulate_bench.py measures
``pagingcheck simulate`` against, whole process to whole process.

Written the way a course's simulator usually is: the file read a line at a
time, memory a Python list searched with ``in``, the victim found by list
operations. Run: ``python reference_loop.py POLICY FRAMES FILE`` (a file of page
numbers, one a line; ``w`` after a number marks a write, which these
policies ignore); prints the number of faults.
"""

from __future__ import annotations

import sys


def fifo(pages: list[int], frames: int) -> int:
    """Faults of FIFO: evict the page that came in first."""
    memory: list[int] = []
    faults = 0
    for page in pages:
        if page in memory:
            continue
        faults += 1
        if len(memory) == frames:
            memory.pop(0)
        memory.append(page)
    return faults


def lru(pages: list[int], frames: int) -> int:
    """Faults of LRU: the list is kept in order of last use, least recent first."""
    memory: list[int] = []
    faults = 0
    for page in pages:
        if page in memory:
            memory.remove(page)
        else:
            faults += 1
            if len(memory) == frames:
                memory.pop(0)
        memory.append(page)
    return faults


def clock(pages: list[int], frames: int) -> int:
    """Faults of CLOCK: a hand sweeps the frames, clearing use bits, to one that is clear."""
    memory: list[int | None] = [None] * frames
    used = [False] * frames
    hand = 0
    faults = 0
    for page in pages:
        if page in memory:
            used[memory.index(page)] = True
            continue
        faults += 1
        if None in memory:
            slot = memory.index(None)
        else:
            while used[hand]:
                used[hand] = False
                hand = (hand + 1) % frames
            slot = hand
            hand = (hand + 1) % frames
        memory[slot] = page
        used[slot] = True
    return faults


POLICIES = {"fifo": fifo, "lru": lru, "clock": clock}


def main() -> None:
    """Read the file, run the policy, print the faults."""
    if len(sys.argv) != 4 or sys.argv[1] not in POLICIES or not sys.argv[2].isdigit():
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(POLICIES)}}} FRAMES FILE")
    policy, frames, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path) as lines:
        pages = [int(line.rstrip().rstrip("w")) for line in lines if line.strip()]
    print(POLICIES[policy](pages, frames))


if __name__ == "__main__":
    main()
