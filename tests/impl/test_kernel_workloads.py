"""Workloads of several processes run to completion with few frames, on every hardware
variant and with every replacement policy, and leave exactly the expected memory."""

from __future__ import annotations

import itertools

import pytest

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.lib.replacement import POLICY_NAMES
from pagingcheck.model.config import (
    PAGE_TABLE_KINDS,
    RESTART_VARIANTS,
    HardwareConfig,
)
from tests.impl.kernel_workloads import (
    booted_extents,
    fill_program,
    fill_sum,
    kill,
    make_system,
    read_word,
    record_events,
    registers,
    resources_all_free,
    reverse_expected,
    reverse_program,
    run_until_spinning,
)

PW = 4
VALUES = (9, 2, 7, 4, 5, 3)
REVERSE = reverse_program(PW, VALUES)
FILL_A = fill_program(PW, 7, 11, 3, 0, name="fill_a")
FILL_B = fill_program(PW, 5, 90, -7, 1, name="fill_b")
RESULTS = 60 * PW


def run_workload(hardware: HardwareConfig, kernel: KernelConfig) -> list[str]:
    """Two processes sharing the reverse program and one fill process; check every result,
    kill them all and check every resource came back. Returns the event kinds."""
    programs = [REVERSE.program, FILL_A.program, FILL_B.program]
    system = make_system(hardware, programs, [0, 1, 0, 2], kernel)
    events = record_events(system)
    done = {
        1: REVERSE.addresses["done"],
        2: FILL_A.addresses["done"],
        3: REVERSE.addresses["done"],
        4: FILL_B.addresses["done"],
    }
    run_until_spinning(system, done)
    for pid in (1, 3):
        assert registers(system, pid).regs[0] == sum(VALUES)
        for va, value in reverse_expected(REVERSE, VALUES).items():
            assert read_word(system, pid, va) == value, (pid, va)
    for pid in (2, 4):
        assert read_word(system, pid, RESULTS) == fill_sum(7, 11, 3)
        assert read_word(system, pid, RESULTS + 1) == fill_sum(5, 90, -7)
    assert registers(system, 2).regs[0] == fill_sum(7, 11, 3)
    for pid in (1, 2, 3, 4):
        events.extend(kill(system, pid))
    while system.machine.disk.completable():  # write-backs of the last shared page
        system.apply(("disk", 0))
    resources_all_free(system, booted_extents(hardware))
    return [event.kind for event in events]


@pytest.mark.parametrize(
    ("page_table", "tagged", "refill", "restart"),
    list(
        itertools.product(
            PAGE_TABLE_KINDS, (True, False), ("hardware", "software"), RESTART_VARIANTS
        )
    ),
)
def test_workload_on_every_hardware_variant(
    page_table: str, tagged: bool, refill: str, restart: str
) -> None:
    hardware = HardwareConfig.from_mapping(
        {
            "page_words": PW,
            "user_frames": 7,
            "kernel_frames": 96,
            "page_table": page_table,
            "tlb_tagged": tagged,
            "tlb_refill": refill,
            "restart": restart,
            "tlb_entries": 4,
        }
    )
    kinds = run_workload(hardware, KernelConfig(policy="clock"))
    assert "evict_clean" in kinds and "fault" in kinds
    if refill == "software":
        assert "tlb_refill" in kinds


@pytest.mark.parametrize("policy", [name for name in POLICY_NAMES if name != "opt"])
@pytest.mark.parametrize("allocation", ["global", "local"])
def test_workload_with_every_policy(policy: str, allocation: str) -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=7, kernel_frames=64)
    kernel = KernelConfig(
        policy=policy,
        allocation=allocation,  # type: ignore[arg-type]
        cleaner=allocation == "local",
        cleaner_threshold=2,
        tau=8,
    )
    kinds = run_workload(hardware, kernel)
    assert "evict_dirty" in kinds or "clean" in kinds


@pytest.mark.parametrize("disk_order", ["fifo", "any"])
def test_workload_with_one_frame_more_than_an_instruction_needs(disk_order: str) -> None:
    hardware = HardwareConfig(
        page_words=PW,
        user_frames=5,
        kernel_frames=64,
        disk_order=disk_order,  # type: ignore[arg-type]
    )
    kinds = run_workload(hardware, KernelConfig(policy="fifo"))
    assert kinds.count("evict_dirty") >= 1
