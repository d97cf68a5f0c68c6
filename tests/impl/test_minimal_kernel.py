"""The minimal kernel (``pagingcheck.impl.minimal``): results, progress and clean refusals.

Every test drives the kernel through the checker, so each step is also
checked against every invariant and the spec.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks.abstraction import abstract
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import Run
from pagingcheck.checks.system import Choice, boot_system
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel, SpawnRefused
from pagingcheck.impl.minimal import MinimalKernel
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import PAGE_TABLE_KINDS, RESTART_VARIANTS, HardwareConfig
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Program, SharedSegment
from pagingcheck.spec.state import SpecState

PW = 16
SEGMENT = SharedSegment("buf", vpn=40, pages=2)
BASE = SEGMENT.vpn * PW  # first word of the segment
WORDS = SEGMENT.pages * PW

# Fills the segment with 1, 4, 7, ... then spins at `done`.
WRITER = f"""
        MOV #{BASE}, r1
        MOV #1, r2
        MOV #{WORDS}, r3
loop:   MOV r2, (r1)+
        ADDI r2, #3
        ADDI r3, #-1
        BNE @loop
done:   JMP @done
"""

# Copies the segment to its heap while summing it into r0, then stores the
# sum into the segment's last word and spins at `done`.
READER = f"""
        MOV #{BASE}, r1
        MOV #{{heap}}, r2
        MOV #{WORDS}, r3
        MOV #0, r0
loop:   MOV (r1), r4
        ADD r0, r4
        MOV (r1)+, (r2)+
        ADDI r3, #-1
        BNE @loop
        STORE r0, @{BASE + WORDS - 1}
done:   JMP @done
"""

FILLED = [1 + 3 * i for i in range(WORDS)]


def program(name: str, source: str, heap_pages: int = 0) -> tuple[Program, int, int]:
    """The program, its heap's first address and the address of its label ``done``."""
    text_pages = -(-len(assemble(source.format(heap=0))) // PW)
    heap = text_pages * PW
    text = source.format(heap=heap)
    done = len(assemble(text.split("done:")[0]))
    words = tuple(assemble(text))
    return Program(name, words, heap_pages=heap_pages, shared=(SEGMENT,)), heap, done


def hardware(page_table: str, restart: str) -> HardwareConfig:
    """A tight machine (four user frames) with a TLB kind that varies with the variant."""
    software = restart != "precise"
    return HardwareConfig(
        page_words=PW,
        user_frames=4,
        page_table=page_table,  # type: ignore[arg-type]
        restart=restart,  # type: ignore[arg-type]
        tlb_refill="software" if software else "hardware",
        tlb_entries=4,
        tlb_tagged=page_table in ("linear", "hashed"),
        swap_slots=16,
        image_blocks=16,
        disk_order="any",
    )


def spec_state(checker: Checker) -> SpecState:
    """What the system's state stands for, read from the hardware and the kernel's view."""
    return abstract(checker.observed, checker.fault_starts)


def run_until(checker: Checker, done: dict[int, int], limit: int = 4000) -> list[str]:
    """Run the runnable processes in turn, completing disk requests every third step (the
    newest or the oldest), until each pid in ``done`` sits at its address; checks every
    step. Returns the kinds of the kernel's events."""
    kinds: list[str] = []
    for turn in range(limit):
        state = spec_state(checker)
        if all((p := state.process(pid)) and p.regs.pc == pc for pid, pc in done.items()):
            return kinds
        runnable = checker.system.kernel.runnable()
        disk = checker.system.machine.disk.completable()
        choice: Choice
        if disk and (turn % 3 == 0 or not runnable):
            choice = ("disk", disk[-1] if turn % 2 else disk[0])
        else:
            choice = ("run", runnable[turn % len(runnable)])
        record, violation = checker.step(choice)
        assert violation is None, violation.explain()
        kinds += [event.kind for event in record.events]
    raise AssertionError(f"the processes did not reach {done} in {limit} steps")


@pytest.mark.parametrize("restart", RESTART_VARIANTS)
@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
def test_shared_segment_writes_reach_every_sharer(page_table: str, restart: str) -> None:
    config = hardware(page_table, restart)
    writer, _, writer_done = program("writer", WRITER)
    reader, heap, reader_done = program("reader", READER, heap_pages=2)
    system = boot_system(Machine(config), MinimalKernel(config), [writer, reader], initial=[0])
    system.max_spawns = 1
    checker = Checker(system)
    kinds = run_until(checker, {1: writer_done})
    _, violation = checker.step(("spawn", 1))
    assert violation is None, violation.explain()
    kinds += run_until(checker, {1: writer_done, 2: reader_done})

    state = spec_state(checker)
    segment = state.object(("segment", "buf"))
    assert segment is not None
    assert [w for page in segment for w in page] == [*FILLED[:-1], sum(FILLED)]
    reader_state = state.process(2)
    assert reader_state is not None and reader_state.regs.regs[0] == sum(FILLED)
    copied = [w for vpn in (heap // PW, heap // PW + 1) for w in state.page_of(2, vpn) or ()]
    assert copied == FILLED
    # Four frames for the reader's five pages: the segment went to swap and back.
    assert "evict_dirty" in kinds and "pagein" in kinds
    # A writable shared page has one slot, which both sharers reserve.
    slots = checker.observed.view.slots
    assert any({u[0] for u in s.users} == {1, 2} and s.refcount == 2 for s in slots)


def default_variants() -> list[tuple[str, CheckConfig]]:
    """The built-in default configuration's variants."""
    return checkconfig.load(None).expand()


def factory(hardware: HardwareConfig, kernel: KernelConfig) -> Kernel:
    """Builds the kernel under test, as ``validate --impl`` does."""
    return MinimalKernel(hardware, kernel)


@pytest.mark.parametrize(
    "config", [config for _, config in default_variants()], ids=[n for n, _ in default_variants()]
)
def test_fair_continuation_after_random_choices_makes_progress(config: CheckConfig) -> None:
    for seed in range(3):
        rng = random.Random(seed)
        run = Run(config, factory, None)
        for _ in range(60):
            enabled = [c for c in run.enabled() if c[0] != "kill" or rng.random() < 0.1]
            if not enabled or run.take(rng.choice(enabled)) is not None:
                break
        assert not run.failed, run.result.violation
        assert run.continue_fairly(config.workload.progress_bound) is None
        retired = [r for r in run.result.records if r.result is not None and r.result.retired]
        assert retired


@pytest.mark.parametrize("page_table", ["multilevel", "inverted"])
def test_six_processes_on_four_frames_all_progress(page_table: str) -> None:
    config = default_variants()[0][1]
    config = dataclasses.replace(
        config,
        hardware=config.hardware.replace(page_table=page_table),
        workload=dataclasses.replace(config.workload, initial=(0, 0, 1)),
    )
    run = Run(config, factory, None)
    for index in (0, 0, 1):
        assert run.take(("spawn", index)) is None
    assert run.checker is not None and len(run.checker.observed.live) == 6
    assert config.hardware.user_frames == 4
    assert run.continue_fairly(config.workload.progress_bound) is None


def test_refused_spawn_changes_nothing() -> None:
    config = HardwareConfig(page_words=PW, page_table="linear", user_frames=4)
    writer, _, _ = program("writer", WRITER)
    kernel = MinimalKernel(config)
    system = boot_system(Machine(config), kernel, [writer], initial=[0, 0, 0])
    machine, before = system.machine.copy(), kernel.fingerprint()
    # Three linear tables of 64 words fill the 255 usable kernel words.
    with system.port.opened() as port:
        outcome = kernel.spawn(port, system.images[0])
    assert isinstance(outcome, SpawnRefused)
    assert kernel.fingerprint() == before and system.machine == machine


def test_copy_is_independent() -> None:
    config = hardware("hashed", "precise")
    writer, _, _ = program("writer", WRITER)
    system = boot_system(Machine(config), MinimalKernel(config), [writer], initial=[0])
    kernel = system.kernel
    clone = kernel.copy()
    assert clone.fingerprint() == kernel.fingerprint()
    system.apply(("run", 1))  # the first fetch faults: the kernel changes
    assert clone.fingerprint() != kernel.fingerprint()
    assert clone.view() != kernel.view()
    assert clone.copy().fingerprint() == clone.fingerprint()
