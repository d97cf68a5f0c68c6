"""The reference kernel's process lifecycle: creation, running, faults, exit, refusal."""

from __future__ import annotations

import numpy as np
import pytest

from pagingcheck.checks import protocol
from pagingcheck.checks.system import System, install, run_round_robin
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import SpawnRefused
from pagingcheck.impl.lib.memory import FREED_PATTERN
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError, UserError
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MachinePort
from pagingcheck.model.program import Program
from tests.impl.kernel_workloads import (
    booted_extents,
    build,
    kill,
    make_system,
    read_word,
    registers,
    resources_all_free,
    reverse_expected,
    reverse_program,
    run_until_spinning,
    spawn,
)

PW = 4

# Sums the data words, stores the sum in the heap, reads it back, exits with it in r0.
SUM_AND_EXIT = """
        MOV #{data}, r1
        MOV #5, r3
        MOV #0, r0
loop:   MOV (r1)+, r2
        ADD r0, r2
        ADDI r3, #-1
        BNE @loop
        STORE r0, @{heap}
        MOV #0, r0
        LOAD r0, @{heap}
        SYS 0
"""


def kernel_of(system: object) -> ReferenceKernel:
    kernel = getattr(system, "kernel", None)
    assert isinstance(kernel, ReferenceKernel)
    return kernel


def test_lifecycle_faults_pages_in_and_returns_everything_at_exit() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3, page_table="multilevel")
    built = build("sum", SUM_AND_EXIT, PW, data=(2, 3, 5, 7, 11), heap_pages=1)
    system = make_system(hardware, [built.program], [])
    booted = kernel_of(system).t.kalloc.free_extents
    pid = spawn(system, built.program)
    assert pid == 1
    view = system.kernel.view()
    assert view.free_slots != tuple(range(hardware.swap_slots))  # swap was allocated
    records = []
    while system.choices():
        choice = system.choices()[0]
        records.append(system.apply(choice))
    kinds = [event.kind for record in records for event in record.events]
    for kind in ("dispatch", "fault", "pagein", "backup", "ready", "exit", "free_frame"):
        assert kind in kinds, kind
    assert kinds.index("fault") < kinds.index("pagein") < kinds.index("exit")
    assert system.machine.cpu.state.regs[0] == 28  # the sum, read back from the heap
    view = system.kernel.view()
    assert view.process(pid) is not None and view.process(pid).state == "exited"  # type: ignore[union-attr]
    resources_all_free(system, booted)
    for pfn in hardware.user_pfns:
        assert np.all(system.machine.memory.frame(pfn) == FREED_PATTERN)


def test_workload_results_then_kill_returns_everything() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=4, page_table="hashed", kernel_frames=64)
    values = (4, 8, 15, 16, 23, 42)
    built = reverse_program(PW, values)
    system = make_system(hardware, [built.program], [0, 0])
    run_until_spinning(system, {1: built.addresses["done"], 2: built.addresses["done"]})
    for pid in (1, 2):
        assert registers(system, pid).regs[0] == sum(values)
        for va, value in reverse_expected(built, values).items():
            assert read_word(system, pid, va) == value
    for pid in (1, 2):
        kill(system, pid)
    resources_all_free(system, booted_extents(hardware))


# -- refusal -----------------------------------------------------------------------------


def _busy_system(hardware: HardwareConfig, kernel: KernelConfig | None = None) -> System:
    """A system with a process part-way through its run and a transfer in flight."""
    values = (1, 2, 3, 4, 5, 6, 7)
    built = reverse_program(PW, values)
    system = make_system(hardware, [built.program], [0], kernel)
    for _ in range(40):
        choices = system.choices()
        runs = [c for c in choices if c[0] == "run"]
        system.apply(runs[0] if runs else choices[0])
    assert system.machine.disk.pending or any(
        f.status == "in_use" for f in system.kernel.view().frames
    )
    return system


BIG = Program("big", tuple(assemble("SYS 0")), data=tuple(range(40)), heap_pages=20)


@pytest.mark.parametrize(
    ("hardware", "kernel", "program", "reason"),
    [
        (HardwareConfig(page_words=PW, swap_slots=20), None, BIG, "out of swap"),
        (
            HardwareConfig(page_words=PW, page_table="linear", kernel_frames=20),
            None,
            Program("small", tuple(assemble("SYS 0"))),
            "kernel memory",
        ),
        (
            HardwareConfig(page_words=PW, page_table="hashed", kernel_frames=16),
            None,
            BIG,
            "kernel memory",
        ),
    ],
)
def test_refused_spawn_rolls_everything_back(
    hardware: HardwareConfig, kernel: KernelConfig | None, program: Program, reason: str
) -> None:
    system = _busy_system(hardware, kernel)
    machine = system.machine
    k = kernel_of(system)
    index = system.add_program(program)
    assert index is not None
    image = system.images[index]
    before = (machine.fingerprint(), k.fingerprint(), k.view())
    outcome = system.call("spawn()", lambda port: k.spawn(port, image), protocol.check_spawned)
    assert isinstance(outcome, SpawnRefused)
    assert reason in outcome.reason
    assert (machine.fingerprint(), k.fingerprint(), k.view()) == before
    # Nothing of the refused process remains: the next one created gets its pid.
    kill(system, 1)
    assert spawn(system, Program("tiny", tuple(assemble("SYS 0")))) == 2


def test_spawn_before_boot_is_a_user_error() -> None:
    hardware = HardwareConfig()
    machine = Machine(hardware)
    image = install(machine, [BIG], hardware.swap_slots)[0]
    with pytest.raises(UserError, match="boot"), MachinePort(machine).opened() as port:
        ReferenceKernel(hardware).spawn(port, image)


def test_boot_without_room_for_the_inverted_table_says_what_to_change() -> None:
    hardware = HardwareConfig(page_table="inverted", kernel_frames=1, page_words=4)
    with (
        pytest.raises(ConfigError, match="kernel_frames"),
        MachinePort(Machine(hardware)).opened() as port,
    ):
        ReferenceKernel(hardware).boot(port)


# -- values ------------------------------------------------------------------------------


def test_copy_is_independent_and_fingerprints_are_stable() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3)
    system = _busy_system(hardware)
    k = kernel_of(system)
    twin_kernel = k.copy()
    assert twin_kernel.fingerprint() == k.fingerprint() and twin_kernel == k
    saved = twin_kernel.fingerprint()
    for _ in range(30):
        choices = system.choices()
        if not choices:
            break
        system.apply(choices[0])
    assert k.fingerprint() != saved
    assert twin_kernel.fingerprint() == saved
    assert twin_kernel.view() != k.view()


def test_same_choices_give_the_same_fingerprint() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3, tlb_refill="software")
    one, two = _busy_system(hardware), _busy_system(hardware)
    assert kernel_of(one).fingerprint() == kernel_of(two).fingerprint()


# -- configuration -------------------------------------------------------------------------


def test_kernel_config_from_mapping() -> None:
    config = KernelConfig.from_mapping({"policy": "clock", "prepage": [0, 3], "cleaner": True})
    assert config.policy == "clock" and config.prepage == (0, 3) and config.cleaner
    assert KernelConfig.from_mapping(None) == KernelConfig()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"polcy": "fifo"}, "polcy"),
        ({"policy": "belady"}, "kernel.policy"),
        ({"allocation": "mine"}, "kernel.allocation"),
        ({"prepage": "all"}, "kernel.prepage"),
        ({"prepage": [1, -2]}, "kernel.prepage"),
        ({"text_from_image": True}, "text_from_image"),
        ({"cleaner_threshold": "2"}, "kernel.cleaner_threshold"),
        ({"seed": True}, "kernel.seed"),
        ({"tau": -1}, "kernel.tau"),
        ("fifo", "kernel"),
    ],
)
def test_kernel_config_rejects_mistakes_naming_the_key(data: object, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        KernelConfig.from_mapping(data)


def test_opt_is_refused_because_the_future_is_unknown() -> None:
    with pytest.raises(ConfigError, match="future"):
        KernelConfig(policy="opt")


def test_round_robin_driver_runs_a_workload_to_the_end() -> None:
    hardware = HardwareConfig(page_words=PW, user_frames=3)
    built = build("sum", SUM_AND_EXIT, PW, data=(1, 1, 1, 1, 1), heap_pages=1)
    system = make_system(hardware, [built.program], [0, 0])
    steps = run_round_robin(system)
    assert steps > 0
    assert system.live_pids() == []
