"""The disk: DMA at completion, not submission; ordering; and stable fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import Disk, Request
from pagingcheck.model.errors import InternalError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.traps import Access

CONFIG = HardwareConfig(page_words=4, kernel_frames=2, user_frames=4, swap_slots=4, image_blocks=2)
FRAME = 3  # a user frame


def words(*values: int) -> list[int]:
    return list(values)


def setup(order: str = "fifo") -> tuple[Disk, PhysicalMemory]:
    return Disk(CONFIG.replace(disk_order=order)), PhysicalMemory(CONFIG)


def test_layout_is_swap_slots_then_image_blocks() -> None:
    disk, _ = setup()
    assert disk.contents.shape == (6, 4) and disk.contents.dtype == np.uint32
    assert disk.first_image_block == 4


# -- DMA at completion ---------------------------------------------------------


def test_write_back_copies_the_frame_at_completion_not_submission() -> None:
    disk, memory = setup()
    memory.fill_frame(FRAME, np.array(words(1, 2, 3, 4), dtype=np.uint32))
    request = disk.submit("write", 1, FRAME)
    assert request == Request(0, "write", 1, FRAME)
    assert disk.read_block(1).tolist() == [0, 0, 0, 0]  # nothing copied yet
    assert disk.pending == (request,)
    assert disk.complete(0, memory) == request
    assert disk.read_block(1).tolist() == [1, 2, 3, 4]
    assert len(disk.pending) == 0


def test_frame_written_during_write_back_lands_on_disk_with_new_contents() -> None:
    disk, memory = setup()
    memory.fill_frame(FRAME, np.array(words(1, 2, 3, 4), dtype=np.uint32))
    disk.submit("write", 2, FRAME)
    memory.write(FRAME * 4 + 1, 99)  # the frame changes while its write-back is in flight
    disk.complete(0, memory)
    assert disk.read_block(2).tolist() == [1, 99, 3, 4]


def test_page_in_overwrites_a_frame_reused_meanwhile() -> None:
    disk, memory = setup()
    disk.write_block(3, words(7, 7, 7, 7))
    disk.submit("read", 3, FRAME)
    assert memory.frame(FRAME).tolist() == [0, 0, 0, 0]  # nothing copied yet
    memory.fill_frame(FRAME, 5)  # a new owner writes the frame
    disk.complete(0, memory)
    assert memory.frame(FRAME).tolist() == [7, 7, 7, 7]  # the new owner's data is gone


def test_read_copies_only_its_own_frame() -> None:
    disk, memory = setup()
    disk.write_block(0, words(1, 2, 3, 4))
    memory.fill_frame(FRAME + 1, 9)
    disk.submit("read", 0, FRAME)
    disk.complete(0, memory)
    assert memory.frame(FRAME).tolist() == [1, 2, 3, 4]
    assert memory.frame(FRAME + 1).tolist() == [9, 9, 9, 9]
    assert memory.frame(FRAME - 1).tolist() == [0, 0, 0, 0]


# -- ordering ------------------------------------------------------------------


def test_fifo_completes_only_the_oldest() -> None:
    disk, memory = setup("fifo")
    assert disk.completable() == ()
    first = disk.submit("read", 0, FRAME)
    second = disk.submit("read", 1, FRAME + 1)
    assert disk.completable() == (0,)
    with pytest.raises(InternalError, match="index 1"):
        disk.complete(1, memory)
    assert disk.complete(0, memory) == first
    assert disk.complete(0, memory) == second


def test_any_order_completes_any_pending_request() -> None:
    disk, memory = setup("any")
    disk.write_block(0, words(1))
    disk.write_block(1, words(2))
    first = disk.submit("read", 0, FRAME)
    second = disk.submit("read", 1, FRAME)
    assert disk.completable() == (0, 1)
    assert disk.complete(1, memory) == second
    assert disk.complete(0, memory) == first
    assert memory.frame(FRAME).tolist() == [1, 0, 0, 0]  # the later completion wins


@pytest.mark.parametrize("order", ["fifo", "any"])
@pytest.mark.parametrize("index", [-1, 2, 5])
def test_bad_index_is_an_internal_error(order: str, index: int) -> None:
    disk, memory = setup(order)
    disk.submit("read", 0, FRAME)
    disk.submit("read", 1, FRAME)
    with pytest.raises(InternalError):
        disk.complete(index, memory)
    assert len(disk.pending) == 2


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=20))
def test_fifo_completes_in_submission_order(steps: list[tuple[bool, int]]) -> None:
    disk, memory = setup("fifo")
    submitted: list[Request] = []
    completed: list[Request] = []
    for submit, block in steps:
        if submit:
            submitted.append(disk.submit("write", block, FRAME))
        elif disk.completable():
            completed.append(disk.complete(disk.completable()[0], memory))
    assert completed == submitted[: len(completed)]
    assert list(disk.pending) == submitted[len(completed) :]


def test_request_ids_are_the_smallest_free() -> None:
    disk, memory = setup("any")
    assert [disk.submit("read", b, FRAME).id for b in (0, 1, 2)] == [0, 1, 2]
    disk.complete(1, memory)
    assert disk.submit("read", 3, FRAME).id == 1
    assert [r.id for r in disk.pending] == [0, 2, 1]


@pytest.mark.parametrize(
    ("op", "block", "pfn", "match"),
    [
        ("erase", 0, FRAME, "op"),
        ("read", 6, FRAME, "block 6"),
        ("write", -1, FRAME, "block -1"),
        ("read", 0, 6, "frame 6"),
    ],
)
def test_submit_rejects_bad_requests(op: str, block: int, pfn: int, match: str) -> None:
    disk, _ = setup()
    with pytest.raises(InternalError, match=match):
        disk.submit(op, block, pfn)  # type: ignore[arg-type]
    assert disk.pending == ()


# -- direct block access -------------------------------------------------------


def test_write_block_pads_and_read_block_copies() -> None:
    disk, _ = setup()
    disk.write_block(5, words(1, 2, -1))
    block = disk.read_block(5)
    assert block.tolist() == [1, 2, 0xFFFF_FFFF, 0]
    block[0] = 42
    assert disk.read_block(5)[0] == 1
    with pytest.raises(InternalError, match="fit"):
        disk.write_block(5, words(1, 2, 3, 4, 5))
    with pytest.raises(InternalError, match="block 6"):
        disk.read_block(6)


# -- values --------------------------------------------------------------------


def test_copy_is_independent_and_equality_is_by_value() -> None:
    disk, memory = setup()
    disk.submit("read", 0, FRAME)
    clone = disk.copy()
    assert clone == disk and clone.fingerprint() == disk.fingerprint()
    clone.write_block(0, words(1))
    assert clone != disk and clone.fingerprint() != disk.fingerprint()
    other = disk.copy()
    other.complete(0, memory)
    assert other != disk and disk.snapshot() == ((0, "read", 0, FRAME),)
    assert other.fingerprint() != disk.fingerprint()


@dataclass(frozen=True)
class Sample:
    name: str
    value: int


def test_fingerprint_separates_structure_and_types() -> None:
    array = np.arange(4, dtype=np.uint32)
    distinct = [
        fingerprint(1, 2),
        fingerprint((1, 2)),
        fingerprint([1, 2]),
        fingerprint("1", 2),
        fingerprint(True, 2),
        fingerprint(12),
        fingerprint(array),
        fingerprint(array.reshape(2, 2)),
        fingerprint(array.astype(np.uint64)),
        fingerprint(None),
        fingerprint(b"\x01\x02"),
        fingerprint(Access.READ),
        fingerprint(Sample("a", 1)),
        fingerprint(Sample("a", 2)),
    ]
    assert len(set(distinct)) == len(distinct)
    assert fingerprint(frozenset({"a", "b"})) == fingerprint(frozenset({"b", "a"}))
    assert fingerprint({"x": 1, "y": 2}) == fingerprint({"y": 2, "x": 1})
    assert fingerprint(np.uint32(7)) == fingerprint(7)
    with pytest.raises(InternalError, match="object"):
        fingerprint(object())


def test_fingerprint_is_the_same_in_every_run() -> None:
    script = (
        "import numpy as np\n"
        "from pagingcheck.model.fingerprint import fingerprint\n"
        "print(fingerprint(frozenset({'alpha', 'beta', 'gamma'}), {'k': 'v', 'w': 1},"
        " np.arange(3, dtype=np.uint32), ('read', None)).hex())\n"
    )
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(run.stdout.strip())
    assert len(digests) == 1
