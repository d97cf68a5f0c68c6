"""The explorer's queue: first in, first out, whether its states are in memory or on disk."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.checks.config import load_reference
from pagingcheck.checks.explore import Explorer
from pagingcheck.checks.frontier import Frontier
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory


@given(
    st.lists(st.one_of(st.integers(), st.none()), max_size=80), st.integers(1, 7), st.integers(1, 5)
)
def test_items_come_out_in_the_order_they_went_in(
    script: list[int | None], keep: int, chunk: int
) -> None:
    """``None`` in the script takes one item out; a number puts it in."""
    frontier: Frontier[int] = Frontier(keep, chunk)
    model: list[int] = []
    try:
        for step in script:
            if step is None:
                if model:
                    assert frontier.popleft() == model.pop(0)
            else:
                frontier.append(step)
                model.append(step)
            assert len(frontier) == len(model)
        assert [frontier.popleft() for _ in range(len(model))] == model
    finally:
        frontier.close()


def test_a_long_queue_goes_to_disk_and_comes_back() -> None:
    frontier: Frontier[int] = Frontier(keep=3, chunk=4)
    for item in range(20):
        frontier.append(item)
    assert frontier.spilled >= 12 and frontier.folder is not None
    folder = frontier.folder
    assert len(list(folder.iterdir())) == len(frontier.files)
    assert [frontier.popleft() for _ in range(20)] == list(range(20))
    frontier.close()
    assert not folder.exists()


def test_what_cannot_be_pickled_stays_in_memory() -> None:
    frontier: Frontier[object] = Frontier(keep=1, chunk=2)
    items = [threading.Lock() for _ in range(6)]
    for item in items:
        frontier.append(item)
    assert not frontier.spillable and frontier.spilled == 0
    assert [frontier.popleft() for _ in range(6)] == items


def test_an_exploration_that_spills_counts_the_same_states() -> None:
    explorer = Explorer(load_reference("pair"), resolve_factory(REFERENCE_KERNEL), keep=10)
    result = explorer.run()
    assert result.spilled > 0 and result.complete
    assert (result.distinct_states, result.transitions, result.max_depth) == (191, 270, 13)
