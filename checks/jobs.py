"""The variants' campaigns of one ``verify``, one after another or on several cores.

A campaign's runs depend only on its seed (or are derandomised), so a
variant's runs, verdict and coverage do not depend on which process runs it or
when: a parallel ``verify`` finds what a serial one with the same seed does.
Each worker is forked and builds its own kernel factory from the kernel's name
(a contained kernel's process or an ``--exec`` program cannot be shared between
processes), and sends back only values: coverage, counts and the shrunk failing
trace. Workers leave interrupts to the parent, which stops them all.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from pagingcheck.checks import traces
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.coverage import Coverage
from pagingcheck.checks.machines import Randomness, run_campaign
from pagingcheck.checks.runner import KernelFactory, kernel_factory, released
from pagingcheck.model.errors import InternalError, UserError


@dataclass
class Finished:
    """One variant's campaign, as a value that can cross processes."""

    index: int  # the variant's place in the configuration's order
    name: str
    coverage: Coverage
    runs: int
    steps: int
    failure: traces.Trace | None
    seconds: float


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def campaign(
    index: int,
    name: str,
    run: CheckConfig,
    factory: KernelFactory,
    kernel: str,
    randomness: Randomness | None = None,
) -> Finished:
    """Run one variant's campaign within its budget."""
    began = time.perf_counter()
    done, failure = run_campaign(
        run,
        factory,
        kernel,
        examples=run.budget.examples,
        steps=run.budget.steps,
        shrink_seconds=run.budget.shrink_seconds,
        randomness=randomness,
    )
    return Finished(
        index, name, done.coverage, done.runs, done.steps, failure, time.perf_counter() - began
    )


def campaigns(
    runs: Sequence[tuple[str, CheckConfig]],
    factory: KernelFactory,
    kernel: str,
    jobs: int,
    in_process: bool | None,
    randomness: Randomness | None = None,
) -> Generator[Finished, None, None]:
    """Every variant's campaign, each as soon as it is done: in order on this process when
    ``jobs`` is 1 (or forking is not available), else on ``jobs`` forked workers. Closing
    the iterator early (``-x``) stops the workers still running."""
    jobs = min(jobs, len(runs))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for index, (name, run) in enumerate(runs):
            yield campaign(index, name, run, factory, kernel, randomness)
        return
    tasks = [
        (index, name, run, kernel, in_process, randomness) for index, (name, run) in enumerate(runs)
    ]
    pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_signals)
    try:
        yield from pool.imap_unordered(_work, tasks)
    finally:
        pool.terminate()
        pool.join()


def _worker_signals() -> None:
    # The parent answers Ctrl-C and SIGTERM for the whole run (and stops the workers);
    # a worker must neither catch Ctrl-C nor print the parent's interrupt summary.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _work(task: tuple[int, str, CheckConfig, str, bool | None, Randomness | None]) -> Finished:
    index, name, run, kernel, in_process, randomness = task
    try:
        with released(kernel_factory(kernel, run.limits, in_process)) as factory:
            return campaign(index, name, run, factory, kernel, randomness)
    except UserError as error:
        # Re-raised in the parent, so it must unpickle: a plain UserError always does.
        raise UserError(str(error)) from None
    except Exception as error:
        # One line for the note on screen; the worker's traceback rides along as a note
        # (notes pickle with the exception), so the saved report still shows where it was.
        failed = InternalError(f"{type(error).__name__} checking variant {name}: {error}")
        failed.add_note(f"in a worker process:\n{traceback.format_exc()}")
        raise failed from None
