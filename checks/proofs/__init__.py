"""z3 proofs about the code the kernel runs: obligations, verdicts, mutants.

Each module proves one part and yields its obligations lazily:

* :mod:`.bookkeeping`: the frame and swap-slot bookkeeping the reference
  kernel runs (protocol states, free lists, exact reference counts, who
  holds what), inductively for any number of frames, slots and users.
* :mod:`.mappings`: PTE words, TLB entries and dirty pages under the kernel's
  edits and the MMU's fills, accesses and drops: the TLB agrees with the page
  tables and no dirty page is dropped, for any number of mappings.
* :mod:`.backup`: instruction backup, for every instruction form, fault point
  and restart variant: the CPU's fault handling and the kernel's backup give
  the start state back, and the re-run equals a fault-free run.
* :mod:`.translation`: each page-table format's walk after the kernel
  library's ``set_pte`` and ``clear`` (the real code, run on symbolic memory
  by :mod:`.symbolic`), per format for a small fixed table shape, and
  agreement with an abstract page map.

:func:`prove_all` decides them all; ``pagingcheck prove`` prints the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pagingcheck.checks.proofs import backup, bookkeeping, mappings, translation
from pagingcheck.checks.proofs.core import TIMEOUT_MS, Outcome, Verdict, solve

__all__ = [
    "TIMEOUT_MS",
    "Outcome",
    "Verdict",
    "obligations",
    "prove_all",
    "remember",
    "solve",
    "verdicts",
]


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every obligation of every part, lazily."""
    yield from bookkeeping.obligations()
    yield from mappings.obligations()
    yield from backup.obligations()
    yield from translation.obligations()


def prove_all(progress: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Decide every obligation, reporting each as it is decided."""
    outcomes = []
    for obligation in obligations():
        outcome = obligation()
        progress(outcome)
        outcomes.append(outcome)
    return outcomes


#: The verdicts this process has, once decided.
_decided: tuple[Outcome, ...] | None = None


def verdicts() -> tuple[Outcome, ...]:
    """Every obligation's outcome, decided once per process: they depend on the code only,
    so a process that runs several checks (the tests, a long session) proves them once."""
    global _decided
    if _decided is None:
        _decided = tuple(prove_all())
    return _decided


def remember(outcomes: tuple[Outcome, ...]) -> None:
    """Keep the verdicts a worker forked from this process decided (the same code), so
    the next check that needs them here does not prove them again."""
    global _decided
    _decided = outcomes
