"""MMAP and MUNMAP: files on the disk, the spec's ideal files, the reference kernel's shared
and private mappings, write-back to the file, and the checks that watch them."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import protocol
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.coverage import Tracker
from pagingcheck.checks.invariants import INVARIANTS
from pagingcheck.checks.machines import run_campaign
from pagingcheck.checks.observe import Observed
from pagingcheck.checks.refinement import Checker
from pagingcheck.checks.runner import REFERENCE_KERNEL, KernelFactory, resolve_factory, start
from pagingcheck.checks.system import install_files
from pagingcheck.impl.interface import FileView, Location
from pagingcheck.model.config import PAGE_TABLE_KINDS, RESTART_VARIANTS
from pagingcheck.model.disk import DiskFile
from pagingcheck.model.errors import ConfigError, PortError, UserError
from pagingcheck.model.isa import MMAP_FAILED, MUNMAP_FAILED, ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MachinePort
from pagingcheck.model.program import Program, map_range
from pagingcheck.spec import machine as spec
from pagingcheck.spec.state import SpecState
from tests.impl.test_family import course_example

SHARED_VPN, PRIVATE_VPN = 8, 9  # where the reference configuration ``files`` maps the file


def files_config(**hardware: object) -> CheckConfig:
    """The reference configuration ``files`` on other hardware."""
    config = checkconfig.load_reference("files")
    return dataclasses.replace(config, hardware=config.hardware.replace(**hardware))


def drive(checker: Checker, seed: int, limit: int = 2000) -> set[str]:
    """Run to the end by random choices; the coverage reached. Fails on any violation."""
    rng = random.Random(seed)
    tracker = Tracker()
    reached: set[str] = set()
    for _ in range(limit):
        enabled = checker.choices()
        if not enabled:
            return reached
        before = checker.observed
        record, violation = checker.step(rng.choice(enabled))
        assert violation is None, violation.explain()
        reached |= tracker.classify(checker.system.machine.config, record, before, checker.observed)
    raise AssertionError("the process never finished")


def file_block(checker: Checker) -> tuple[int, ...]:
    """The words of the file ``log`` as its disk block holds them."""
    (log,) = checker.system.machine.files
    return checker.system.machine.disk.blocks[log.first]


# -- the kernel, end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
@pytest.mark.parametrize("restart", RESTART_VARIANTS)
def test_a_shared_write_reaches_the_file_and_a_private_one_does_not(
    page_table: str, restart: str
) -> None:
    for seed in range(2):
        checker = start(files_config(page_table=page_table, restart=restart), _reference())
        reached = drive(checker, seed)
        assert file_block(checker)[:2] == (1, 9)  # written back; the private 5 is not there
        assert checker.system.machine.console == (9,)  # the private mapping read the file's 9
        assert {"mmap", "munmap", "file_copy", "file_writeback"} <= reached


FORKER = """
hardware: {page_words: 8, va_pages: 16, kernel_frames: 16, user_frames: 4, swap_slots: 6,
           image_blocks: 8, page_table: PAGE_TABLE}
workload:
  initial: [0]
  timer: false
  files:
    log: [1, 2]
  programs:
    - name: forker
      # log private at vpn 8, shared at vpn 9; the parent reads the private page,
      # forks, writes its private copy and prints the shared word; the child writes
      # the shared word (the file's) and prints its private page's word, still the file's.
      text: |2
                MOV #0, r1
                MOV #64, r2
                MOV #0, r3
                SYS 8
                MOV #72, r2
                MOV #1, r3
                SYS 8
                LOAD r4, @65
                SYS 4
                CMP r0, r5
                BEQ @child
                MOV #7, @65
                LOAD r1, @73
                SYS 2
                SYS 0
        child:  MOV #3, @73
                LOAD r1, @65
                SYS 2
                SYS 0
      stack_pages: 0
"""


@pytest.mark.parametrize("page_table", PAGE_TABLE_KINDS)
def test_a_fork_shares_the_shared_mapping_and_keeps_private_writes_apart(page_table: str) -> None:
    """The child's write through the shared mapping reaches the file, so its private
    mapping (the file's page still) shows it too; the parent's private write reaches
    neither. Three random interleavings per format, each step checked against the spec."""
    config = checkconfig.load_text(FORKER.replace("PAGE_TABLE", page_table))
    for seed in range(3):
        checker = start(config, _reference())
        drive(checker, seed)
        console = checker.system.machine.console
        assert sorted(console) in ([2, 3], [3, 3]) and file_block(checker)[:2] == (1, 3)


def test_a_software_tlb_maps_the_files_pages_too() -> None:
    checker = start(files_config(tlb_refill="software", tlb_entries=4), _reference())
    drive(checker, 0)
    assert file_block(checker)[:2] == (1, 9)


def test_the_file_outlives_its_mappings_and_is_listed_while_a_frame_holds_it() -> None:
    checker = start(files_config(), _reference())
    listed = []
    while checker.choices():
        _, violation = checker.step(checker.choices()[0])
        assert violation is None, violation.explain()
        listed.append(checker.observed.view.files)
    assert any(files for files in listed)  # resident or written back, the view says where
    assert ("file", "log") in dict(checker.spec_state.objects)  # no process maps it now


def test_minimal_kernel_fails_mmap_and_munmap_as_the_spec_allows() -> None:
    checker = start(files_config(), resolve_factory("pagingcheck.impl.minimal:MinimalKernel"))
    rng = random.Random(1)
    for _ in range(400):
        enabled = checker.choices()
        if not enabled:
            break
        _, violation = checker.step(rng.choice(enabled))
        assert violation is None, violation.explain()
    assert file_block(checker)[:2] == (1, 2)  # nothing was ever mapped, nothing written


def test_the_course_mmap_test_runs_as_printed_and_reaches_what_it_requires() -> None:
    """docs/course.md's mmap test, as printed: a campaign of it with the reference kernel
    holds every property and reaches the situations its configuration requires."""
    config = course_example("An mmap test")
    _, variant = config.expand()[0]
    campaign, failure = run_campaign(
        variant, _reference(), REFERENCE_KERNEL, examples=20, steps=variant.budget.steps
    )
    assert failure is None, failure.violation
    assert campaign.coverage.unreached(config.coverage) == []


# -- the spec -------------------------------------------------------------------------------------

PAGE, VA = 4, 16
MAPPER = Program("mapper", (0,) * 4, stack_pages=0)  # map area: vpns 1 .. 15


def with_file(words: tuple[int, ...] = (1, 2, 3, 4)) -> SpecState:
    state = spec.spawn(SpecState(), 1, MAPPER, PAGE, VA)
    return dataclasses.replace(state, objects=(*state.objects, (("file", "log"), (words,))))


def regs(*values: int) -> ArchState:
    return ArchState((*values, *(0,) * (8 - len(values))), 0, 0)


def mapped(state: SpecState, flags: int, vpn: int = 2) -> SpecState:
    geometry = spec.Geometry(PAGE, VA)
    state, returned = spec.mmap(state, 1, regs(0, 0, vpn * PAGE, flags), ("log",), MAPPER, geometry)
    assert returned.regs[0] == vpn * PAGE
    return state


def test_spec_shared_mapping_writes_the_file() -> None:
    state = mapped(with_file(), flags=1)
    process = state.process(1)
    assert process is not None
    state = spec._write(state, process, 9, 7, PAGE)
    assert state.object(("file", "log")) == ((1, 7, 3, 4),)


def test_spec_private_mapping_reads_the_file_until_its_first_write_copies_it() -> None:
    state = mapped(with_file(), flags=0)
    assert state.page_of(1, 2) == (1, 2, 3, 4)
    process = state.process(1)
    assert process is not None
    state = spec._write(state, process, 9, 7, PAGE)
    assert state.page_of(1, 2) == (1, 7, 3, 4)
    assert state.object(("file", "log")) == ((1, 2, 3, 4),)  # the file keeps its words
    mapping = state.process(1).mapping(2)  # type: ignore[union-attr]
    assert mapping is not None and mapping.key == ("private", 1, 2) and not mapping.copy_on_write


@pytest.mark.parametrize(
    ("r", "why"),
    [
        (regs(0, 1, 8, 1), "names no file"),
        (regs(0, 0, 9, 1), "not page aligned"),
        (regs(0, 0, 0, 1), "the text page, not the map area"),
        (regs(0, 0, 64, 1), "a page past the address space"),
    ],
)
def test_spec_mmap_fails_outside_the_rules(r: ArchState, why: str) -> None:
    state = with_file()
    after, returned = spec.mmap(state, 1, r, ("log",), MAPPER, spec.Geometry(PAGE, VA))
    assert (after, returned.regs[0]) == (state, MMAP_FAILED), why


def test_spec_mmap_fails_over_valid_pages_and_when_the_kernel_could_not() -> None:
    state = mapped(with_file(), flags=1)
    geometry = spec.Geometry(PAGE, VA)
    again, returned = spec.mmap(state, 1, regs(0, 0, 8, 1), ("log",), MAPPER, geometry)
    assert (again, returned.regs[0]) == (state, MMAP_FAILED)
    fresh = with_file()
    refused, returned = spec.mmap(fresh, 1, regs(0, 0, 12, 1), ("log",), MAPPER, geometry, True)
    assert (refused, returned.regs[0]) == (fresh, MMAP_FAILED)


def test_spec_munmap_drops_the_pages_but_never_the_file() -> None:
    state = mapped(with_file(), flags=0)
    process = state.process(1)
    assert process is not None
    state = spec._write(state, process, 9, 7, PAGE)  # a private copy exists now
    geometry = spec.Geometry(PAGE, VA)
    bad, returned = spec.munmap(state, 1, regs(0, 12, 1), MAPPER, geometry)
    assert (bad, returned.regs[0]) == (state, MUNMAP_FAILED)  # vpn 3 is not mapped
    gone, returned = spec.munmap(state, 1, regs(0, 8, 1), MAPPER, geometry)
    assert returned.regs[0] == 0 and gone.page_of(1, 2) is None
    assert ("private", 1, 2) not in dict(gone.objects)
    assert spec.exit_process(gone, 1).object(("file", "log")) == ((1, 2, 3, 4),)


def test_spec_fork_keeps_a_private_mapping_copy_on_write_for_both() -> None:
    state = mapped(with_file(), flags=0)
    parent = state.process(1)
    assert parent is not None
    forked, _ = spec.fork(state, 1, parent.regs, 2)
    child = forked.process(2)
    assert child is not None and child.mapping(2) == parent.mapping(2)


def test_map_range_is_page_aligned_and_within_the_area() -> None:
    area = MAPPER.map_area(PAGE, VA)
    assert area == frozenset(range(1, 16))
    assert map_range(8, 2, PAGE, area) == range(2, 4)
    assert map_range(9, 1, PAGE, area) is None
    assert map_range(8, 0, PAGE, area) is None
    assert map_range(60, 2, PAGE, area) is None


# -- the disk, the port and the configuration -------------------------------------------------


def test_files_sit_at_the_end_of_the_image_area_and_may_be_written() -> None:
    config = files_config()
    machine = Machine(config.hardware)
    install_files(machine, (("a", (1, 2, 3)), ("b", tuple(range(10)))))
    a, b = machine.files
    assert (a.pages, b.pages, b.first + b.pages) == (1, 2, config.hardware.disk_blocks)
    assert machine.disk.blocks[b.first + 1][:2] == (8, 9)
    port = MachinePort(machine)
    with port.opened():
        assert port.file(1) == b and port.file(2) is None
        port.submit("write", a.first, config.hardware.user_pfns[0])
        with pytest.raises(PortError, match="neither a swap slot nor a file's block"):
            port.submit("write", a.first - 1, config.hardware.user_pfns[0])


def test_files_that_do_not_fit_are_refused() -> None:
    machine = Machine(files_config().hardware)
    with pytest.raises(UserError, match="image blocks cannot hold"):
        install_files(machine, (("big", tuple(range(8 * 9))),))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("{log: []}", "needs at least one word"),
        ("{'a:b': [1]}", "is not a file name"),
        ("[1, 2]", "expected a mapping"),
        ("{log: [1, x]}", "expected a list of integers"),
    ],
)
def test_bad_files_in_a_configuration_get_one_clear_error(files: str, message: str) -> None:
    text = (
        checkconfig.default_text()
        .replace("    log: [0, 65]", "")
        .replace("  files:\n", f"  files: {files}\n")
    )
    with pytest.raises(ConfigError, match=message):
        checkconfig.load_text(text)


def test_the_image_area_must_hold_programs_and_files() -> None:
    text = checkconfig.default_text().replace("log: [0, 65]", f"log: {list(range(16 * 6))}")
    with pytest.raises(ConfigError, match="program images and files take"):
        checkconfig.load_text(text)


def test_a_view_with_files_crosses_the_protocol_unchanged() -> None:
    checker = start(files_config(), _reference())
    while not checker.observed.view.files:
        checker.step(checker.choices()[0])
    view = checker.observed.view
    assert protocol.decode_view(protocol.encode_view(view)) == view
    assert protocol.decode_file(protocol.encode_file(DiskFile("log", 20, 2))) == DiskFile(
        "log", 20, 2
    )


# -- the invariants ---------------------------------------------------------------------------


def test_homes_agree_catches_a_file_page_listed_in_the_wrong_frame() -> None:
    checker = start(files_config(), _reference())
    while not checker.observed.view.files:
        checker.step(checker.choices()[0])
    state = checker.observed
    assert INVARIANTS["homes_agree"].check(state) is None
    (listed,) = state.view.files
    elsewhere = next(p for p in state.machine.config.user_pfns if p != listed.home.index)
    wrong = dataclasses.replace(listed, home=Location("frame", elsewhere))
    bad = dataclasses.replace(state.view, files=(wrong,))
    found = INVARIANTS["homes_agree"].check(Observed(state.machine, bad))
    assert found is not None
    unknown = dataclasses.replace(state.view, files=(listed, FileView("nope", 0, listed.home)))
    found = INVARIANTS["homes_agree"].check(Observed(state.machine, unknown))
    assert found is not None and "no page of a file" in found.message


def _reference() -> KernelFactory:
    return resolve_factory(REFERENCE_KERNEL)
