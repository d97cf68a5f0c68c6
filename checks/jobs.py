"""The checks of one ``verify``, one after another or on several cores.

A check's outcome depends only on its inputs: a campaign's runs on its seed (or
they are derandomised), an exploration and the proofs on nothing else. So what
a variant's checks find does not depend on which process runs them or when: a
parallel ``verify`` finds what a serial one with the same seed does. Each
worker is forked and builds its own kernel factory from the kernel's name (a
contained kernel's process or an ``--exec`` program cannot be shared between
processes), and sends back only values: coverage, counts, the shrunk failing
trace, a check's result. Workers leave interrupts to the parent, which stops
them all.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig, Limits
from pagingcheck.checks.contained import die_with
from pagingcheck.checks.coverage import Coverage
from pagingcheck.checks.machines import Campaign, Randomness, run_campaign
from pagingcheck.checks.runner import KernelFactory, kernel_factory, released
from pagingcheck.model.errors import InternalError, UserError


@dataclass
class Finished:
    """One variant's campaign, as a value that can cross processes."""

    name: str
    coverage: Coverage
    runs: int
    steps: int
    failure: traces.Trace | None
    seconds: float
    rounds: int = 1  # campaigns run: more than one when a seeded one missed its coverage


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


#: Seconds between two live status lines.
STATUS_SECONDS = 1.0

Status = Callable[[str], None]
R = TypeVar("R")


def campaign(
    name: str,
    run: CheckConfig,
    factory: KernelFactory,
    kernel: str,
    randomness: Randomness | None = None,
    status: Status | None = None,
) -> Finished:
    """Run one variant's campaign within its budget; ``status`` hears how far it is, every
    STATUS_SECONDS, while it runs."""
    began = time.perf_counter()
    done = Campaign(shrink_seconds=run.budget.shrink_seconds)
    examples = run.budget.examples

    def how_far() -> str:
        seconds = time.perf_counter() - began
        left = seconds / done.runs * max(examples - done.runs, 0) if done.runs else None
        guess = "" if left is None else f", about {left:.0f}s left"
        return f"  {name}: run {done.runs}/{examples}, {done.steps} steps, {seconds:.0f}s{guess}"

    rounds = 0
    failure = None
    with _every(status, how_far):
        while rounds == 0 or _short(run, done, failure, rounds):
            seeded = randomness if rounds == 0 else next_seed(randomness, rounds)
            rounds += 1
            _, failure = run_campaign(
                run,
                factory,
                kernel,
                examples=examples,
                steps=run.budget.steps,
                shrink_seconds=run.budget.shrink_seconds,
                randomness=seeded,
                campaign=done,
            )
    return Finished(
        name, done.coverage, done.runs, done.steps, failure, time.perf_counter() - began, rounds
    )


#: Campaigns a variant may run in all to reach the coverage required of each variant:
#: one set of runs may miss a rare situation that the next set reaches.
ROUNDS = 3


def next_seed(randomness: Randomness | None, rounds: int) -> Randomness:
    """The runs of round ``rounds`` (counted from 0) after a first round from
    ``randomness``: the next seed after a seeded first round; seed ``rounds`` after a
    derandomised one, so derandomised campaigns stay the same every time."""
    if randomness is None or randomness.seed is None:
        return Randomness(seed=rounds, database=randomness.database if randomness else False)
    return replace(randomness, seed=(randomness.seed + rounds) % (1 << 32))


def _short(run: CheckConfig, done: Campaign, failure: traces.Trace | None, rounds: int) -> bool:
    """Whether a campaign that found nothing runs another round with other runs: its
    variant has not yet reached every situation required of each variant."""
    return (
        failure is None
        and rounds < ROUNDS
        and not done.interrupted
        and bool(done.coverage.unreached(run.coverage_each))
    )


@contextmanager
def _every(status: Status | None, line: Callable[[], str]) -> Iterator[None]:
    """While the block runs, ``status(line())`` every STATUS_SECONDS from a thread."""
    if status is None:
        yield
        return
    stop = threading.Event()

    def tell() -> None:
        while not stop.wait(STATUS_SECONDS):
            status(line())

    teller = threading.Thread(target=tell, name="pagingcheck-status", daemon=True)
    teller.start()
    try:
        yield
    finally:
        stop.set()
        teller.join()


#: One check to run: given a kernel factory (built for it on the process that runs it)
#: and a status callback (None on a worker), its result. A worker gets it pickled, so it
#: is a ``functools.partial`` of a module-level function over plain values.
Work = Callable[[KernelFactory, Status | None], R]


def run_all(
    works: Sequence[tuple[str, Work[R]]],
    factory: KernelFactory,
    kernel: str,
    limits: Limits,
    jobs: int,
    in_process: bool | None,
    status: Status | None = None,
) -> Generator[R, None, None]:
    """Each named work's result as soon as it is done: in order on this process with
    ``factory`` when ``jobs`` is 1 (or forking is not available), else on ``jobs``
    forked workers, started in the order given, each building its own factory of
    ``kernel`` within ``limits``. Closing the iterator early (``-x``) stops the workers
    still running. ``status`` hears how far the running work is (serial) or how many are
    done (parallel), every STATUS_SECONDS."""
    jobs = min(jobs, len(works))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for _, work in works:
            yield work(factory, status)
        return
    tasks = [(name, work, kernel, limits, in_process) for name, work in works]
    began, finished = time.perf_counter(), [0]

    def how_far() -> str:
        seconds = time.perf_counter() - began
        done = finished[0]
        left = seconds / done * (len(works) - done) if done else None
        guess = "" if left is None else f", about {left:.0f}s left"
        return f"  {done}/{len(works)} checks done on {jobs} processes, {seconds:.0f}s{guess}"

    pool = multiprocessing.get_context("fork").Pool(
        jobs, initializer=_worker_signals, initargs=(os.getpid(),)
    )
    try:
        with _every(status, how_far):
            result: R
            for result in pool.imap_unordered(_work, tasks):
                finished[0] += 1
                yield result
    finally:
        pool.terminate()
        pool.join()


def _worker_signals(parent: int) -> None:
    # The parent answers Ctrl-C and SIGTERM for the whole run (and stops the workers);
    # a worker must neither catch Ctrl-C nor print the parent's interrupt summary. An
    # interrupted parent ends at once (os._exit), without closing the pool: the workers
    # go with it, or they would run on, holding its output streams open.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with(parent)


def _work(task: tuple[str, Work[R], str, Limits, bool | None]) -> R:
    name, work, kernel, limits, in_process = task
    try:
        with released(kernel_factory(kernel, limits, in_process)) as factory:
            return work(factory, None)
    except UserError as error:
        # Re-raised in the parent, so it must unpickle: a plain UserError always does.
        raise UserError(str(error)) from None
    except Exception as error:
        # One line for the note on screen; the worker's traceback rides along as a note
        # (notes pickle with the exception), so the saved report still shows where it was.
        failed = InternalError(f"{type(error).__name__} in check {name}: {error}")
        failed.add_note(f"in a worker process:\n{traceback.format_exc()}")
        raise failed from None
