"""How a command ends: its exit code, its one JSON object, a usage or internal error.

Exit codes (turned from exceptions in one place, ``checks.cli.Pagingcheck``):
0 every property held, 1 a property was violated, 2 bad usage or input, 3
an internal error of pagingcheck itself (never blamed on the checked kernel),
130 interrupted (143 terminated). With ``--json`` each command prints exactly
one JSON object on stdout. Kept apart from the commands, and light (click and
the standard library only), so that a command such as ``simulate`` starts
without importing the checking machinery.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, NoReturn

import click

from pagingcheck.model.errors import shorten

EXIT_OK, EXIT_VIOLATED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 143  # SIGTERM, as a shell reports it: 128 + 15


def fail_internal(error: BaseException) -> NoReturn:
    """Report a bug in pagingcheck itself (not in the checked kernel) and exit 3: a short
    note on stderr, the traceback in a file to attach to the report."""
    where = _save_traceback(error)
    click.echo(
        "pagingcheck: internal error: this is a bug in pagingcheck, not in the kernel "
        f"checked ({type(error).__name__}: {shorten(str(error), 200)}); please report it "
        + (f"with the traceback saved in {where}" if where else "(no traceback could be saved)"),
        err=True,
    )
    _json_error("internal", f"{type(error).__name__}: {shorten(str(error), 200)}", EXIT_INTERNAL)
    sys.exit(EXIT_INTERNAL)


def _save_traceback(error: BaseException) -> str | None:
    text = "".join(traceback.format_exception(error))
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="pagingcheck-internal-error-", suffix=".txt", delete=False
        ) as stream:
            # Read only here: importing importlib.metadata costs every command's start-up.
            from importlib.metadata import version

            stream.write(f"pagingcheck {version('pagingcheck')}, Python {sys.version}\n{text}")
            return stream.name
    except OSError:
        return None


def fail_usage(message: str) -> NoReturn:
    """Print ``message`` as a one-line error and exit 2."""
    line = shorten(message, 1000)
    click.echo(f"pagingcheck: error: {line}", err=True)
    _json_error("usage", line, EXIT_USAGE)
    sys.exit(EXIT_USAGE)


#: The version of the shape of every --json output (checks/schema/results.json).
JSON_SCHEMA = 2
RESULTS_SCHEMA = Path(__file__).with_name("schema") / "results.json"

#: Whether the command line asked for --json (an error then also answers on stdout), and
#: the command it names.
_json_wanted = False
_json_command = ""


def want_json_errors(args: Sequence[str]) -> None:
    """Note whether ``args`` ask for --json, and the command they name, before they are
    parsed (a usage error may be what stops them being parsed)."""
    global _json_wanted, _json_command
    _json_wanted = "--json" in args
    _json_command = next((arg for arg in args if not arg.startswith("-")), "")


def _json_error(kind: str, message: str, code: int) -> None:
    """With --json, an error as the one JSON object on stdout a script waits for."""
    if _json_wanted:
        emit_json(False, [], None, error={"kind": kind, "message": message, "exit": code})


# -- what an interrupted run had found ------------------------------------------------------

#: What each running command has found so far, as a callback printing it and the stream it
#: prints to; ``checks.cli`` calls them when the run is interrupted or terminated.
_found_so_far: list[tuple[Callable[[], None], Any]] = []


@contextmanager
def found_so_far(show: Callable[[], None]) -> Iterator[None]:
    """While the block runs, ``show`` prints what an interrupt of it should not lose."""
    entry = (show, sys.stdout)
    _found_so_far.append(entry)
    # Not in a ``finally``: an interrupt unwinds through this block before cli prints.
    yield
    _found_so_far.remove(entry)


def print_found_so_far() -> None:
    """Print what every running command had found: an interrupted run's last words."""
    for show, stream in list(_found_so_far):
        try:
            # The stream the command began with: a kernel call may have redirected stdout.
            with redirect_stdout(stream):
                show()
            stream.flush()
        except Exception:  # an exit must never be stopped by its own summary
            pass


def emit_json(
    ok: bool,
    results: Sequence[dict[str, Any]],
    violation: dict[str, Any] | None,
    seed: int | None = None,
    **fields: Any,
) -> None:
    """Print one JSON object on stdout, in the envelope every command shares
    (checks/schema/results.json): the schema version, the command, whether it passed, the
    seed of its random choices (None: it made none, or was derandomised), the first
    violation found (:meth:`Violation.to_json`), the command's own ``fields``, and last
    its ``results``, one object with a ``name`` and ``ok`` per thing it checked."""
    envelope = {"schema": JSON_SCHEMA, "command": _json_command, "ok": ok, "seed": seed}
    data = {**envelope, "violation": violation, **fields, "results": list(results)}
    click.echo(json.dumps(data, indent=2))
