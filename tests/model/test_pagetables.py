"""The hardware's half of the page-table formats: a walk over any memory is total.

A table in memory is written by the kernel under check, so it may hold
anything. Whatever the words and the root, every format's walk, entry
listing and table-word listing return without raising, read only, and
name only addresses inside memory. (Walking well-formed tables, built by
the kernel library's editors, is tested in ``tests/impl/test_pagetables.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagingcheck.model.config import HardwareConfig, PageTableKind
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.pagetable import FORMATS, make_format
from pagingcheck.model.pagetable.multilevel import MultilevelFormat

KINDS: tuple[PageTableKind, ...] = ("linear", "multilevel", "hashed", "inverted")


def config_for(kind: PageTableKind) -> HardwareConfig:
    return HardwareConfig(
        page_words=4,
        va_pages=16,
        kernel_frames=4,
        user_frames=4,
        page_table=kind,
        levels=3,
        hash_buckets=2,
    )


#: Words that point into memory, just past it, far beyond it, or are small indexes.
WORDS = st.one_of(
    st.integers(0, 40),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 40).map(lambda n: (n << 8) | 1),  # upper entries / PTEs naming word n
)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150)
@given(data=st.data())
def test_any_memory_walks_without_raising(kind: PageTableKind, data: st.DataObject) -> None:
    config = config_for(kind)
    fmt = make_format(config)
    words = data.draw(st.lists(WORDS, min_size=config.memory_words, max_size=config.memory_words))
    memory = PhysicalMemory(config, np.array(words, dtype=np.uint32))
    before = memory.copy()
    root = data.draw(st.one_of(st.integers(0, config.memory_words + 4), WORDS))
    asid = data.draw(st.integers(0, 3))
    for vpn in range(config.va_pages):
        entry = fmt.walk(memory, root, asid, vpn)
        if entry is not None:
            assert 0 <= entry.pte_addr < config.memory_words
            assert memory.read(entry.pte_addr) == entry.pte
    for entry in fmt.entries(memory, root, asid):
        assert 0 <= entry.pte_addr < config.memory_words
    fmt.table_words(memory, root, asid)
    assert memory == before, "the hardware walk wrote memory"


def test_a_cycle_in_a_multilevel_tree_ends_the_walk() -> None:
    config = config_for("multilevel")
    fmt = MultilevelFormat(config)
    memory = PhysicalMemory(config)
    root = 4
    memory.write(root, (root << 8) | 1)  # the root's first entry points at the root itself
    tables = fmt.table_words(memory, root, 0)
    assert tables.count((root, fmt.table_size(0))) == 1  # the root once as root, ...
    assert (root, fmt.table_size(1)) in tables  # ... and once more as a level-1 table


def test_make_format_picks_the_configured_kind() -> None:
    for kind in KINDS:
        fmt = make_format(config_for(kind))
        assert fmt.kind == kind and type(fmt) is FORMATS[kind]
        assert fmt.walk(PhysicalMemory(fmt.config), 0, 0, 0) is None
