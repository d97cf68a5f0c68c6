"""z3 proofs about the code the kernel runs: obligations, verdicts, mutants.

Each module proves one part and yields its obligations lazily:

* :mod:`.frames`: the frame bookkeeping the reference kernel runs (frames,
  free list, reference counts, reverse map), inductively for any number of
  frames and users.
* :mod:`.translation`: each page-table format's walk after the kernel
  library's ``set_pte`` and ``clear`` (the real code, run on symbolic memory
  by :mod:`.symbolic`), per format for a small fixed table shape, and
  agreement with an abstract page map.

:func:`prove_all` decides them all; ``pagingcheck prove`` prints the table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from pagingcheck.checks.proofs import frames, translation
from pagingcheck.checks.proofs.core import TIMEOUT_MS, Outcome, Verdict, solve

__all__ = ["TIMEOUT_MS", "Outcome", "Verdict", "obligations", "prove_all", "solve", "verdicts"]


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every obligation of every part, lazily."""
    yield from frames.obligations()
    yield from translation.obligations()


def prove_all(progress: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Decide every obligation, reporting each as it is decided."""
    outcomes = []
    for obligation in obligations():
        outcome = obligation()
        progress(outcome)
        outcomes.append(outcome)
    return outcomes


@functools.cache
def verdicts() -> tuple[Outcome, ...]:
    """Every obligation's outcome, decided once per process: they depend on the code only,
    so a process that runs several checks (the tests, a long session) proves them once."""
    return tuple(prove_all())
