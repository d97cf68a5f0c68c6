"""The ``pagingcheck`` command line."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

import click

from pagingcheck.checks.helptext import document
from pagingcheck.checks.output import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    emit_json,
    fail_internal,
    fail_usage,
    print_found_so_far,
    want_json_errors,
)
from pagingcheck.checks.plot import check_target, draw
from pagingcheck.impl.lib.replacement import DEFAULT_TAU, POLICY_NAMES
from pagingcheck.impl.simulate import (
    FORMATS,
    Curve,
    Format,
    Ref,
    SimResult,
    Step,
    curves,
    detect_format,
    open_trace,
    parse_refs,
    read_trace,
    run,
)
from pagingcheck.model.errors import UserError

INTERRUPT_GRACE = 10.0
"""Seconds a run has, after Ctrl-C, to unwind before the process ends without it."""

INTERRUPTED = "pagingcheck: {how}; traces already written are complete"

MAX_FRAMES = 1 << 24
"""The most frames simulate models: as many as the hardware's frame numbers can name."""

PROGRESS_MIN_BYTES = 1 << 20
"""Files smaller than this simulate too fast to be worth a progress bar."""


class Pagingcheck(click.Group):
    """The command group, and the one place each kind of failure becomes an exit code.

    0 every property held, 1 one was violated, 2 bad usage or input (one line
    on stderr), 3 a bug in pagingcheck (a short note; the traceback goes to a
    file), 130 interrupted. Output to a closed pipe is dropped quietly and
    the exit code stays the command's.
    """

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Run the command line; never returns, always exits with the contract's code."""
        kwargs["standalone_mode"] = False
        want_json_errors(kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
        _quiet_pipes()
        _catch_interrupts()
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help() if error.ctx else str(error), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as error:
            fail_usage(_usage_line(error))
        except click.ClickException as error:
            fail_usage(error.format_message())
        except UserError as error:
            fail_usage(str(error))
        except (click.Abort, KeyboardInterrupt):
            _end_interrupted()
        except Exception as error:
            fail_internal(error)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command named ``cmd_name``, loading the checking commands if it is one."""
        found = super().get_command(ctx, cmd_name)
        if found is None and _add_checking_commands(self):
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, the checking commands' included."""
        _add_checking_commands(self)
        return super().list_commands(ctx)


def _add_checking_commands(group: click.Group) -> bool:
    """Add the checking commands to ``group`` the first time one is asked for; whether
    they were added now. Importing them (hypothesis, z3, the checks) is most of a start,
    which ``simulate`` does without."""
    from pagingcheck.checks.commands import COMMANDS

    if all(command.name in group.commands for command in COMMANDS):
        return False
    for command in COMMANDS:
        document(command)
        group.add_command(command)
    return True


_interrupted = threading.Event()
_ending = threading.Lock()
_terminated = threading.Event()  # the signal was SIGTERM, not Ctrl-C


def _catch_interrupts() -> None:
    """Make Ctrl-C end the run with 130 whatever the code it lands in does with it.

    The first Ctrl-C raises KeyboardInterrupt so the run unwinds; a library that
    swallows it (or a kernel that catches everything) cannot keep the run going,
    because the process ends anyway after INTERRUPT_GRACE seconds. A second Ctrl-C
    ends it at once. SIGTERM (a scheduler's or CI's stop) is handled the same way and
    exits 143.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)
        signal.signal(signal.SIGTERM, _on_interrupt)


def _on_interrupt(signum: int, frame: object) -> None:
    if _interrupted.is_set():
        _end_interrupted()
    _interrupted.set()
    if signum == signal.SIGTERM:
        _terminated.set()
    timer = threading.Timer(INTERRUPT_GRACE, _end_interrupted)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _end_interrupted() -> NoReturn:
    """Print what the run had found, say it was interrupted and exit 130 (143 when
    terminated), from whichever thread gets here first.

    ``os._exit``, not ``sys.exit``: interpreter shutdown would run the very
    code that was interrupted (finalizers, library exit hooks), and CPython ends a
    process whose KeyboardInterrupt resurfaces there by killing it with SIGINT, not
    with the documented status. A trace being written is finished first.
    """
    _ending.acquire()
    traces = sys.modules.get("pagingcheck.checks.traces")  # none written if it is not loaded
    if traces is not None:
        traces.WRITING.acquire(timeout=1.0)  # this very thread may hold it mid-write
    print_found_so_far()
    # The real streams: a kernel call may have redirected sys.stderr when the timer fires.
    for stream in (sys.stdout, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        if sys.__stderr__ is not None:
            how = "terminated" if _terminated.is_set() else "interrupted"
            sys.__stderr__.write(INTERRUPTED.format(how=how) + "\n")
            sys.__stderr__.flush()
    except (OSError, ValueError):
        pass
    os._exit(EXIT_TERMINATED if _terminated.is_set() else EXIT_INTERRUPTED)


def _usage_line(error: click.UsageError) -> str:
    """A usage error on one line, with where to find help."""
    message = " ".join(error.format_message().split())
    if error.ctx is None:
        return message
    return f"{message} (see '{error.ctx.command_path} --help')"


class _QuietPipe(io.TextIOBase):
    """A text stream that stops writing, silently, once its reader has gone."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        # Point the descriptor at /dev/null so the interpreter's last flush succeeds too.
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.stream.fileno())
            os.close(null)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        self.stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _quiet_pipes() -> None:
    """Make standard output drop what it cannot deliver to a reader that has gone."""
    if not isinstance(sys.stdout, _QuietPipe):
        sys.stdout = _QuietPipe(sys.stdout)


@click.group(
    name="pagingcheck",
    cls=Pagingcheck,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="pagingcheck", prog_name="pagingcheck")  # read when asked
def cli() -> None:
    """Check demand-paging designs and implementations against an abstract spec."""


class FrameCounts(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.3
    """A number of frames, ``N``, or every number from A to B, ``A-B``: as a range."""

    name = "frames"

    def convert(self, value: object, param: click.Parameter | None, ctx: Any) -> range:
        """``value`` as a range of frame counts, or a usage error naming the problem."""
        if isinstance(value, range):
            return value
        text = str(value).strip()
        first, dash, last = text.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            self.fail(f"{text!r} is not a number of frames or a range A-B", param, ctx)
        for count in (low, high):
            if not 1 <= count <= MAX_FRAMES:
                self.fail(f"{count} is not in the range 1<=x<={MAX_FRAMES}", param, ctx)
        if high < low:
            self.fail(f"{text}: the range runs backwards", param, ctx)
        return range(low, high + 1)


@cli.command()
@click.option(
    "--policy",
    "-p",
    required=True,
    metavar="NAME",
    help=f"Replacement policy: {', '.join(POLICY_NAMES)}.",
)
@click.option(
    "--frames",
    "-n",
    required=True,
    type=FrameCounts(),
    metavar="N|A-B",
    help=f"Number of page frames (1 to {MAX_FRAMES}), or a range A-B for the fault curve "
    "over every count in it.",
)
@click.option("--refs", "refs_text", metavar="LIST", help="Pages inline: 1,2,3 (2w = write to 2).")
@click.option(
    "--refs-file",
    metavar="FILE",
    help="References from FILE: page numbers one a line (12 or 12w), 'KIND PAGE' lines "
    "(L 12, S 12) or a valgrind lackey log, plain or gzip-compressed.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="FILE's format; auto tells them apart by the first record line.",
)
@click.option(
    "--lackey",
    is_flag=True,
    help="Same as --format lackey: FILE is a valgrind --tool=lackey --trace-mem=yes log.",
)
@click.option(
    "--page-size",
    type=int,
    metavar="BYTES",
    help="Page size for lackey addresses [default: 4096].",
)
@click.option(
    "--tick",
    type=int,
    metavar="N",
    help="Clock tick every N references (0: never) [default: frames for nru and aging, else 0].",
)
@click.option(
    "--tau",
    type=int,
    default=DEFAULT_TAU,
    show_default=True,
    help="Window, in references, for working-set and wsclock.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="With a range of frames, draw the curve (one line per policy) to FILE.svg or "
    "FILE.png (needs the plot extra: pip install 'pagingcheck[plot]').",
)
@click.option(
    "--trace-steps",
    is_flag=True,
    help="Print every reference: hit or fault, the frames, the victim, R and M bits and the "
    "policy's state (in --json, a list of steps).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def simulate(
    policy: str,
    frames: range,
    refs_text: str | None,
    refs_file: str | None,
    fmt: str,
    lackey: bool,
    page_size: int | None,
    tick: int | None,
    tau: int,
    seed: int,
    plot: Path | None,
    trace_steps: bool,
    as_json: bool,
) -> None:
    """Count page faults of a replacement policy on a reference string.

    Give the references with exactly one of --refs and --refs-file. Prints
    references, faults, hits, writebacks and the fault rate; with a range of
    frame counts, the faults for each (LRU and OPT in one pass) and where
    more frames fault more (Belady's anomaly). Bad input exits with status 2
    and a message naming the problem.
    """
    if (refs_text is None) == (refs_file is None):
        fail_usage("give exactly one of --refs LIST and --refs-file FILE")
    if trace_steps and len(frames) > 1:
        fail_usage("--trace-steps follows one number of frames, not a range")
    if lackey:
        if fmt not in ("auto", "lackey"):
            fail_usage(f"--lackey says the file is a lackey log, --format says {fmt}")
        fmt = "lackey"
    if fmt != "auto" and refs_file is None:
        fail_usage("--format and --lackey describe --refs-file; they cannot be used with --refs")
    if page_size is not None and (refs_file is None or fmt not in ("auto", "lackey")):
        fail_usage("--page-size applies only to lackey logs")
    policies = [name.strip() for name in policy.split(",")]
    for name in policies:
        if name not in POLICY_NAMES:
            fail_usage(
                f"unknown replacement policy {name!r}; choose one of: {', '.join(POLICY_NAMES)}"
            )
    if len(policies) > 1 and len(frames) == 1:
        fail_usage("several policies need a range of frames (--frames A-B) to compare them")
    if plot is not None:
        if len(frames) == 1:
            fail_usage("--plot draws a curve: give a range of frames (--frames A-B)")
        check_target(plot)
    if page_size is not None and page_size < 1:
        fail_usage(f"--page-size: {page_size} must be at least 1 byte")
    try:
        with ExitStack() as stack:
            if refs_text is not None:
                refs: Iterable[Ref] = parse_refs(refs_text)
                progress = None
            else:
                assert refs_file is not None
                try:
                    raw = stack.enter_context(open(refs_file, "rb"))
                    size = os.fstat(raw.fileno()).st_size
                    stream = stack.enter_context(open_trace(raw))
                    # click has checked that fmt is one of the formats.
                    known = cast(Format, fmt)
                    found = detect_format(stream, refs_file) if fmt == "auto" else known
                except OSError as error:
                    fail_usage(f"cannot read --refs-file {refs_file}: {error.strerror or error}")
                if page_size is not None and found != "lackey":
                    fail_usage(f"--page-size applies only to lackey logs; {refs_file} is {found}")
                refs = read_trace(stream, found, page_size or 4096, refs_file)
                progress = _progress_bar(stack, raw.tell, size)
            options: dict[str, Any] = {"seed": seed, "tau": tau, "tick": tick, "progress": progress}
            steps: list[Step] = []
            if trace_steps:
                options["watch"] = steps.append if as_json else _print_step
                if not as_json:
                    click.echo(STEP_HEADER)
            if len(frames) == 1:
                result = run(policies[0], refs, frames.start, **options)
            else:
                measured = curves(policies, refs, frames, **options)
                if plot is not None:
                    draw(measured, refs_file or "inline references", plot)
    except UserError as error:
        fail_usage(str(error))
    except OSError as error:  # a read failing part way through the file
        fail_usage(f"cannot read --refs-file {refs_file}: {error.strerror or error}")
    if len(frames) == 1:
        _print_result(result, as_json, [step.as_dict() for step in steps] if trace_steps else None)
    else:
        _print_curves(measured, as_json)


def _progress_bar(
    stack: ExitStack, position: Callable[[], int], size: int
) -> Callable[[int], None] | None:
    """A progress callback drawing a bar over the file's bytes on a terminal, else None."""
    if size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return None
    bar = stack.enter_context(
        click.progressbar(length=size, label="simulating", file=sys.stderr, show_eta=True)
    )

    def advance(_done: int) -> None:
        bar.update(min(position(), size) - bar.pos)

    return advance


def _anomalies(found: Curve) -> list[dict[str, int]]:
    return [
        {"frames": frames, "faults": faults, "more_frames_faults": more}
        for frames, faults, more in found.anomalies
    ]


def _print_curves(found: list[Curve], as_json: bool) -> None:
    if as_json:
        results = [
            {"name": f"{point.policy} {point.frames}", "ok": True, **point.as_dict()}
            for one in found
            for point in one.points
        ]
        summary = [
            {"policy": one.policy, "one_pass": one.one_pass, "anomalies": _anomalies(one)}
            for one in found
        ]
        emit_json(True, results, None, curves=summary)
        return
    for index, one in enumerate(found):
        if index:
            click.echo()
        _print_curve(one)


def _print_curve(found: Curve) -> None:
    first = found.points[0]
    how = "one pass: a stack algorithm" if found.one_pass else "a run per frame count"
    click.echo(f"policy {found.policy}, {first.references} references ({how})")
    click.echo(f"{'frames':>8} {'faults':>10} {'fault rate':>11}")
    for point in found.points:
        click.echo(f"{point.frames:>8} {point.faults:>10} {point.fault_rate:>11.4f}")
    if found.one_pass:
        return  # a stack algorithm cannot show the anomaly
    if not found.anomalies:
        click.echo("no Belady anomaly: more frames never fault more on this trace")
    for frames, faults, more in found.anomalies:
        click.echo(
            f"Belady's anomaly: {frames + 1} frames fault {more} times, {frames} frames {faults}"
        )


STEP_HEADER = (
    f"{'ref':>6} {'page':>6} {'result':<6} {'frames':<20} {'evicted':>7}  {'R':<8} {'M':<8} policy"
)


def _print_step(step: Step) -> None:
    """One line of --trace-steps: the reference, what it did, the state after it."""
    page = f"{step.page}{'w' if step.write else ''}"
    frames = " ".join("-" if held is None else str(held) for held in step.frames)
    evicted = "" if step.evicted is None else f"{step.evicted}{'*' if step.written_back else ''}"
    bits = ["".join(map(str, flags)) for flags in (step.referenced, step.modified)]
    state = " ".join(map(str, step.policy[1:]))
    click.echo(
        f"{step.index:>6} {page:>6} {'hit' if step.hit else 'fault':<6} {frames:<20} "
        f"{evicted:>7}  {bits[0]:<8} {bits[1]:<8} {state}"
    )


def _print_result(
    result: SimResult, as_json: bool, steps: list[dict[str, object]] | None = None
) -> None:
    if as_json:
        results = [{"name": result.policy, "ok": True, **result.as_dict()}]
        if steps is None:
            emit_json(True, results, None)
        else:
            emit_json(True, results, None, steps=steps)
        return
    rows = [
        ("policy", result.policy),
        ("frames", str(result.frames)),
        ("references", str(result.references)),
        ("faults", str(result.faults)),
        ("hits", str(result.hits)),
        ("writebacks", str(result.writebacks)),
        ("fault rate", f"{result.fault_rate:.4f}"),
    ]
    for label, value in rows:
        click.echo(f"{label:<12}{value}")


document(simulate)  # the checking commands are documented as they are added


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
