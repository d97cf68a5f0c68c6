"""Seeded random choice sequences through the checker: every invariant, refinement and
restart property holds for the reference kernel, on many hardware and kernel variants."""

from __future__ import annotations

import random
import re

import pytest

from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.system import Choice, System
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.reference import kernel as kernel_module
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.program import Program, SharedSegment
from tests.impl.kernel_workloads import build, fill_program, make_system, reverse_program

PW = 4
SEGMENT = (SharedSegment("results", 60, 1),)
PROGRAMS = (
    reverse_program(PW, (3, 1, 4, 1, 5)).program,
    fill_program(PW, 9, 2, 5, 0).program,
    build(
        "poke",
        "LOAD r1, @{seg_results}\nADDI r1, #1\nSTORE r1, @{seg_results}\nSYS 0",
        PW,
        shared=SEGMENT,
    ).program,
    Program("bad", tuple(assemble("STORE r1, @0\nSYS 0"))),
)
WEIGHTS = {"run": 30, "disk": 12, "timer": 4, "spawn": 1, "kill": 0.05}

Settings = dict[str, object]

VARIANTS: list[tuple[Settings, Settings]] = [
    ({"page_table": "linear", "restart": "decode"}, {"policy": "fifo"}),
    ({"page_table": "multilevel", "tlb_refill": "software"}, {"policy": "clock"}),
    (
        {"page_table": "hashed", "tlb_tagged": False, "restart": "state_register"},
        {"policy": "lru", "cleaner": True, "cleaner_threshold": 2},
    ),
    (
        {"page_table": "inverted", "tlb_refill": "software", "restart": "decode"},
        {"policy": "aging", "allocation": "local"},
    ),
    ({"page_table": "inverted", "tlb_tagged": False}, {"policy": "nru", "prepage": "pc"}),
    (
        {"page_table": "multilevel", "restart": "state_register", "disk_order": "any"},
        {"policy": "wsclock", "tau": 5},
    ),
    (
        {
            "page_table": "hashed",
            "tlb_refill": "software",
            "tlb_tagged": False,
            "disk_order": "any",
        },
        {"policy": "random", "prepage": (0, 1, 8), "cleaner": True, "cleaner_threshold": 3},
    ),
    (
        {"page_table": "linear", "restart": "state_register", "tlb_entries": 1},
        {"policy": "working-set", "allocation": "local", "tau": 10},
    ),
]


def random_system(hardware: Settings, kernel: Settings) -> System:
    config = HardwareConfig.from_mapping(
        {"page_words": PW, "user_frames": 5, "kernel_frames": 96, "tlb_entries": 2, **hardware}
    )
    return make_system(
        config, PROGRAMS, [0, 1, 0], KernelConfig.from_mapping(kernel), max_spawns=3, kills=True
    )


def drive(checker: Checker, seed: int, steps: int) -> list[Choice]:
    rng = random.Random(seed)
    taken: list[Choice] = []
    for _ in range(steps):
        choices = checker.system.choices()
        if not choices:
            break
        choice = rng.choices(choices, [WEIGHTS[c[0]] for c in choices])[0]
        taken.append(choice)
        _, violation = checker.step(choice)
        assert violation is None, f"step {len(taken)} {choice}: {violation.explain()}"
    return taken


@pytest.mark.parametrize(("hardware", "kernel"), VARIANTS)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_runs_keep_every_property(hardware: Settings, kernel: Settings, seed: int) -> None:
    checker = Checker(random_system(hardware, kernel))
    assert checker.check_state() is None
    taken = drive(checker, seed, 250)
    assert len(taken) > 50


def test_a_choice_sequence_replays_to_the_same_state() -> None:
    hardware, kernel = VARIANTS[2]
    first = Checker(random_system(hardware, kernel))
    taken = drive(first, 7, 200)
    second = random_system(hardware, kernel)
    for choice in taken:
        second.apply(choice)
    assert second.fingerprint() == first.system.fingerprint()
    assert second.kernel.view() == first.system.kernel.view()


def test_every_event_kind_the_kernel_emits_is_documented() -> None:
    documented = set(re.findall(r"^(\w+)\s{2,}", kernel_module.__doc__ or "", re.MULTILINE))
    seen: set[str] = set()
    for hardware, kernel in VARIANTS:
        system = random_system(hardware, kernel)
        rng = random.Random(3)
        for _ in range(250):
            choices = system.choices()
            if not choices:
                break
            record = system.apply(rng.choices(choices, [WEIGHTS[c[0]] for c in choices])[0])
            seen.update(event.kind for event in record.events)
    assert seen <= documented, seen - documented
    assert {"fault", "pagein", "evict_clean", "evict_dirty", "writeback", "signal"} <= seen
