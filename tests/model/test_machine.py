"""The machine as a value: copies are independent, equality and fingerprints see every part."""

from __future__ import annotations

import pytest

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.pagetable import make_editor
from pagingcheck.model import bits
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import UserError
from pagingcheck.model.machine import Machine
from pagingcheck.model.program import Image, Program, SharedSegment
from pagingcheck.model.tlb import TlbEntry


def booted(config: HardwareConfig) -> Machine:
    """A machine running a two-instruction program from frame 16 at vpn 0."""
    machine = Machine(config)
    kalloc = KernelAllocator(config)
    editor = make_editor(config)
    system_root = editor.boot(machine.memory, kalloc)
    assert system_root is not None
    root = editor.create(machine.memory, kalloc, 1, system_root)
    assert root is not None
    frame = config.first_user_frame
    pte = bits.make_pte(frame, bits.READ | bits.WRITE | bits.EXEC | bits.USER)
    assert editor.set_pte(machine.memory, kalloc, root, 1, 0, pte)
    for offset, word in enumerate(assemble("MOV #7, r1\nSTORE r1, @10\nSYS 0")):
        machine.memory.write(frame * config.page_words + offset, word)
    machine.mmu.load_context(root, 1)
    return machine


@pytest.mark.parametrize("kind", ["linear", "multilevel", "hashed", "inverted"])
def test_machine_runs_a_program_through_every_format(kind: str) -> None:
    config = HardwareConfig(page_table=kind)  # type: ignore[arg-type]
    machine = booted(config)
    machine.cpu.resume(machine.cpu.state)
    results = [machine.step() for _ in range(3)]
    assert [r.retired for r in results] == [True, True, True]
    assert results[1].writes == ((10, 7),)
    assert machine.memory.read(config.first_user_frame * config.page_words + 10) == 7
    assert results[2].syscall == 0


def test_copy_is_independent_and_equal() -> None:
    machine = booted(HardwareConfig())
    clone = machine.copy()
    assert clone == machine
    assert clone.fingerprint() == machine.fingerprint()
    clone.cpu.resume(clone.cpu.state)
    clone.step()
    assert clone != machine
    assert clone.fingerprint() != machine.fingerprint()


def test_copies_share_the_frames_and_blocks_neither_wrote() -> None:
    config = HardwareConfig()
    machine = booted(config)
    machine.disk.write_block(3, [4, 5])
    clone = machine.copy()
    written = config.first_user_frame
    clone.memory.write(written * config.page_words + 1, 99)
    clone.disk.write_block(3, [6])
    # What the clone wrote is its own: the original still reads its old words.
    assert machine.memory.read(written * config.page_words + 1) != 99
    assert machine.disk.read_block(3).tolist()[:2] == [4, 5]
    assert clone.disk.read_block(3).tolist()[:2] == [6, 0]
    # Every other frame and block is one object for both, not a copy per state.
    shared = [
        mine is theirs
        for mine, theirs in zip(machine.memory.frames, clone.memory.frames, strict=True)
    ]
    assert shared.count(False) == 1 and not shared[written]
    blocks = [a is b for a, b in zip(machine.disk.blocks, clone.disk.blocks, strict=True)]
    assert blocks.count(False) == 1 and not blocks[3]


def test_a_transfer_shares_its_words_between_block_and_frame() -> None:
    config = HardwareConfig()
    machine = booted(config)
    machine.disk.write_block(2, [7, 8])
    frame = config.first_user_frame + 1
    machine.disk.submit("read", 2, frame)
    machine.disk.complete(0, machine.memory)
    assert machine.memory.frames[frame] is machine.disk.blocks[2]
    before = machine.fingerprint()
    machine.memory.write(frame * config.page_words, 9)  # the frame changes, the block not
    assert machine.disk.read_block(2).tolist()[:2] == [7, 8]
    assert machine.fingerprint() != before


@pytest.mark.parametrize("part", ["memory", "disk", "tlb", "cpu", "mmu", "timer", "spaces"])
def test_fingerprint_sees_every_part(part: str) -> None:
    machine = booted(HardwareConfig())
    other = machine.copy()
    if part == "memory":
        other.memory.write(5, 1)
    elif part == "disk":
        other.disk.write_block(0, [9])
    elif part == "tlb":
        other.mmu.tlb_write(TlbEntry(1, 3, 0, bits.make_pte(17, bits.READ)))
    elif part == "cpu":
        other.cpu.resume(other.cpu.state)
    elif part == "timer":
        other.timer = True
    elif part == "spaces":
        other.spaces[1] = other.mmu.ptbr
    else:
        other.mmu.load_context(other.mmu.ptbr, 2)
    assert other != machine
    assert other.fingerprint() != machine.fingerprint()


def test_program_layout_places_every_part() -> None:
    program = Program(
        "p", (1,) * 20, (5, 6), heap_pages=1, stack_pages=2, shared=(SharedSegment("s", 8, 2),)
    )
    pages = {page.vpn: page for page in program.layout(16, 16)}
    assert [pages[v].kind for v in (0, 1, 2, 3, 8, 9, 14, 15)] == [
        "text",
        "text",
        "data",
        "heap",
        "shared",
        "shared",
        "stack",
        "stack",
    ]
    assert set(pages) == {0, 1, 2, 3, 8, 9, 14, 15}
    assert pages[1].initial[:4] == (1, 1, 1, 1) and pages[1].initial[4] == 0
    assert pages[2].initial[:3] == (5, 6, 0)
    assert pages[0].shared_key == "text:p" and pages[9].index == 1
    assert not pages[0].prot & bits.WRITE and pages[2].prot & bits.WRITE


def test_program_that_does_not_fit_is_a_user_error() -> None:
    with pytest.raises(UserError, match="do not fit"):
        Program("big", (1,) * 100, stack_pages=4).layout(16, 8)
    with pytest.raises(UserError, match="overlaps"):
        Program("o", (1,), shared=(SharedSegment("s", 0, 1),)).layout(16, 8)


def test_an_image_lays_text_then_data_out_in_blocks() -> None:
    program = Program("p", (1,) * 20, (5, 6), heap_pages=1)
    image = Image(program, 40, 16)
    assert image.pages == 3
    assert (image.text_block(0), image.text_block(1), image.data_block(0)) == (40, 41, 42)
    blocks = image.contents()
    assert blocks[1] == (1,) * 4 + (0,) * 12 and blocks[2] == (5, 6) + (0,) * 14
    layout = {page.vpn: page for page in program.layout(16, 16)}
    assert blocks == (layout[0].initial, layout[1].initial, layout[2].initial)
    assert [image.block_of(layout[vpn]) for vpn in (0, 1, 2, 3)] == [40, 41, 42, None]
