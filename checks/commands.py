"""The checking commands: verify, replay, validate, mutants, prove, explore and the rest.

Their exit codes, JSON envelope and error lines are :mod:`.output`'s; progress goes
to stderr. See docs/cli.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import logs, manual, traces, viewer
from pagingcheck.checks.config import PROFILES
from pagingcheck.checks.explore import Exploration, Tick, explore, least_frames
from pagingcheck.checks.external import EXEC, SCHEMA
from pagingcheck.checks.frontier import KEEP_IN_MEMORY
from pagingcheck.checks.inputs import read_text
from pagingcheck.checks.jobs import default_jobs
from pagingcheck.checks.machines import Randomness
from pagingcheck.checks.output import (
    EXIT_OK,
    EXIT_VIOLATED,
    RESULTS_SCHEMA,
    emit_json,
    fail_usage,
    found_so_far,
)
from pagingcheck.checks.runner import REFERENCE_KERNEL, RunResult, kernel_factory, released
from pagingcheck.checks.verify import VerifyReport, reproduce, verify
from pagingcheck.model.errors import UserError

FC = TypeVar("FC", bound=Callable[..., Any])


# -- options shared by the checking commands ----------------------------------------------

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration (default: the built-in one).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
impl_option = click.option(
    "--impl",
    "implementation",
    default=REFERENCE_KERNEL,
    show_default=True,
    help="Kernel to check, as MODULE:ATTR building a kernel.",
)
exec_option = click.option(
    "--exec",
    "command",
    default=None,
    metavar="COMMAND",
    help="A kernel in any language: a program that speaks the process protocol on its "
    "stdin and stdout ('pagingcheck docs protocol'), e.g. './mykernel --quiet'.",
)


def kernel_spec(implementation: str | None, command: str | None) -> str | None:
    """The kernel a command checks: ``--impl MODULE:ATTR`` or ``--exec COMMAND`` (as
    ``exec:COMMAND``), never both."""
    if command is None:
        return implementation
    if implementation is not None and implementation != REFERENCE_KERNEL:
        fail_usage("give --impl MODULE:ATTR or --exec COMMAND, not both")
    return f"{EXEC}{command}"


variant_option = click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME",
    help="Run only this variant of the configuration (repeat for more), and its small "
    "exploration; the coverage of the whole configuration is then skipped.",
)
seed_option = click.option(
    "--seed",
    type=click.IntRange(min=0, max=(1 << 64) - 1),
    default=None,
    metavar="N",
    help="Run the campaigns this seed gives (every run prints its seed), without the "
    "example database: repeats a run exactly.",
)
derandomize_option = click.option(
    "--derandomize",
    is_flag=True,
    envvar="PAGINGCHECK_DERANDOMIZE",
    help="The same runs every time and no example database, as CI wants "
    "(also PAGINGCHECK_DERANDOMIZE=1). By default each run draws a new seed.",
)


def jobs_option_saying(what: str) -> Callable[[FC], FC]:
    """The ``-j/--jobs N`` option, with ``what`` it runs on N processes as its help."""
    return click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help=f"{what} (default: one per core); the results are those of a serial run.",
    )


jobs_option = jobs_option_saying("Run the checks (proofs, campaigns, explorations) on N processes")
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress on stderr: only the result."
)
verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print more of each failure: the kernel's own traceback for a crash.",
)
exit_first_option = click.option(
    "-x",
    "--exitfirst",
    "exit_first",
    is_flag=True,
    help="Stop at the first check that fails.",
)


profile_option = click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help="Budget profile: dev (quick), ci (as configured, the default), thorough "
    "(long campaign). Default: $PAGINGCHECK_PROFILE, else ci.",
)


def containment_options(command: FC) -> FC:
    """--in-process, --call-seconds and --memory-mb: how the checked kernel is contained."""
    command = click.option(
        "--memory-mb",
        type=click.IntRange(192, 1 << 20),
        default=None,
        help="Memory a contained kernel may use [default: limits.memory_mb, 1024].",
    )(command)
    command = click.option(
        "--call-seconds",
        type=click.FloatRange(0, 3600, min_open=True),
        default=None,
        help="Seconds one call into the kernel may take [default: limits.call_seconds, 10].",
    )(command)
    return click.option(
        "--in-process",
        is_flag=True,
        help="Run a kernel from outside pagingcheck in pagingcheck's own process: faster, "
        "but a kernel that exits or kills its process takes the check with it.",
    )(command)


def with_limits(
    config: checkconfig.CheckConfig, call_seconds: float | None, memory_mb: int | None
) -> checkconfig.CheckConfig:
    """``config`` with the limits given on the command line."""
    limits = checkconfig.Limits(
        config.limits.call_seconds if call_seconds is None else call_seconds,
        config.limits.memory_mb if memory_mb is None else memory_mb,
    )
    return dataclasses.replace(config, limits=limits)


def traces_option(help_text: str) -> Callable[[FC], FC]:
    """The --traces DIR option, with what the command writes there."""
    return click.option(
        "--traces",
        "trace_dir",
        type=click.Path(path_type=Path),
        default=Path("traces"),
        show_default=True,
        help=help_text + " A name already taken gets a number: no trace is overwritten.",
        callback=lambda _context, _param, value: traces.writable_folder(value),
    )


class Progress:
    """Progress on stderr: lines, and at a terminal a status line rewritten in place
    (``status``), cleared before the next line. Silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.in_place = enabled and sys.stderr.isatty()
        self.open = False  # a status line is on screen
        self.lock = threading.Lock()  # status comes from a thread of its own

    def __call__(self, message: str) -> None:
        if self.enabled:
            with self.lock:
                self._clear()
                say(message, err=True)

    def status(self, text: str) -> None:
        """Show ``text`` in place of the last status line (at a terminal only)."""
        if self.in_place:
            with self.lock:
                # Only ever at a terminal, so the erase code is kept even where click
                # cannot tell (it strips escape codes it thinks are not for a terminal).
                click.echo(f"\r{text}\033[K", err=True, nl=False, color=True)
                self.open = True

    def end(self) -> None:
        """Clear the status line, if one is on screen."""
        with self.lock:
            self._clear()

    def keep(self) -> None:
        """End the status line, if one is on screen, leaving it there."""
        with self.lock:
            if self.open:
                click.echo("", err=True)
                self.open = False

    def _clear(self) -> None:
        if self.open:
            click.echo("\r\033[K", err=True, nl=False, color=True)
            self.open = False


def progress_printer(enabled: bool) -> Progress:
    """Progress on stderr (silent when disabled)."""
    return Progress(enabled)


#: The verdict words, and their colour at a terminal.
VERDICTS = {"PASS": "green", "FAIL": "red", "FAILED": "red", "SKIP": "yellow"}
VERDICT = re.compile(r"\b(PASS|FAILED|FAIL|SKIP|INTERRUPTED)\b")


def say(text: str, err: bool = False) -> None:
    """Print a line with its verdict words in colour. click drops the colour when the
    stream is not a terminal (a pipe, a file, --json never has any); NO_COLOR drops it
    everywhere (https://no-color.org)."""
    if not os.environ.get("NO_COLOR"):
        text = VERDICT.sub(lambda m: click.style(m[1], fg=VERDICTS.get(m[1], "yellow")), text)
    click.echo(text, err=err)


def load_config(path: Path | None, profile: str | None) -> checkconfig.CheckConfig:
    """The configuration at ``path`` (or the default) under the chosen budget profile."""
    chosen = profile or os.environ.get("PAGINGCHECK_PROFILE") or "ci"
    if chosen not in PROFILES:
        raise UserError(
            f"PAGINGCHECK_PROFILE={chosen!r} is not a profile; use one of: {', '.join(PROFILES)}"
        )
    return checkconfig.load(path).with_profile(chosen)


def _print_report(report: VerifyReport, verbose: bool = False) -> None:
    _print_checks(report, verbose)
    _print_skipped(report)
    _print_coverage(report)


def _print_checks(report: VerifyReport, verbose: bool) -> None:
    for check in report.checks:
        mark = "PASS" if check.ok else "FAIL"
        say(f"{mark}  {check.name:<50} {check.seconds:6.1f}s  {check.detail}")
        _print_found(check.extra.get("violation"), verbose)


def _interrupted(report: VerifyReport, as_json: bool, verbose: bool) -> Callable[[], None]:
    """What an interrupted verify or validate prints: every check finished, with its
    trace; never a pass, since the rest did not run."""

    def show() -> None:
        if as_json:
            emit_json(**{**report.to_json(), "ok": False, "interrupted": True})
            return
        _print_checks(report, verbose)
        done = len(report.checks)
        say(f"\nINTERRUPTED after {done} check{'s' * (done != 1)}: the rest did not run")

    return show


def _print_found(found: dict[str, Any] | None, verbose: bool) -> None:
    """Under a failed check: the command that replays it, and the kernel's traceback."""
    if not found:
        return
    if found.get("replay"):
        click.echo(f"      next: {found['replay']}")
    if found.get("traceback"):
        if not verbose:
            click.echo("      (-v prints the kernel's traceback)")
            return
        click.echo("      the kernel's traceback (most recent call last):")
        for line in str(found["traceback"]).splitlines():
            click.echo(f"        {line}")


def _print_skipped(report: VerifyReport) -> None:
    for skipped in report.skipped:
        say(f"SKIP  {skipped}")
    say("\nverify: " + ("all properties held" if report.ok else "FAILED"))
    _print_seed(report)


def _print_seed(report: VerifyReport) -> None:
    if report.seed is None:
        click.echo("campaigns: derandomised (the same runs every time)")
    else:
        click.echo(f"campaigns: seed {report.seed} (--seed {report.seed} runs them again)")


def randomness(seed: int | None, derandomize: bool) -> Randomness:
    """Where the campaigns' runs come from, as the options say: a new seed and the example
    database unless a seed is given or derandomising is asked for."""
    if derandomize and seed is not None:
        raise UserError("--seed and --derandomize: choose one (a seed already fixes the runs)")
    if derandomize:
        return Randomness()
    if seed is not None:
        return Randomness(seed)
    return Randomness(secrets.randbits(32), database=True)


def _print_coverage(report: VerifyReport) -> None:
    # Coverage is of the whole configuration: when part of it was skipped, nothing is owed.
    required = set() if report.skipped else set(report.required)
    click.echo("\ncoverage (paging situations reached; * = required by the configuration):")
    for name, count in report.coverage.table():
        mark = "*" if name in required else " "
        note = "" if count else ("   <- never reached" if name in required else "")
        click.echo(f" {mark}{name:<36} {count:>7}{note}")


@click.command("verify")
@config_option
@impl_option
@variant_option
@exit_first_option
@jobs_option
@seed_option
@derandomize_option
@quiet_option
@verbose_option
@traces_option("Where counterexample traces are written.")
@json_option
@profile_option
@containment_options
def verify_command(
    profile: str | None,
    config_path: Path | None,
    implementation: str,
    variants: tuple[str, ...],
    exit_first: bool,
    jobs: int | None,
    seed: int | None,
    derandomize: bool,
    quiet: bool,
    verbose: bool,
    trace_dir: Path,
    as_json: bool,
    in_process: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> None:
    """Run every check on a configuration and print a summary per check."""
    runs_from = randomness(seed, derandomize)
    config = with_limits(load_config(config_path, profile), call_seconds, memory_mb)
    report = VerifyReport()
    progress = progress_printer(not quiet and (not as_json or sys.stderr.isatty()))
    with (
        found_so_far(_interrupted(report, as_json, verbose)),
        released(kernel_factory(implementation, config.limits, in_process or None)) as factory,
    ):
        verify(
            config,
            factory,
            implementation,
            trace_dir,
            progress,
            status=progress.status if progress.in_place else None,
            prove=implementation == REFERENCE_KERNEL,
            only=variants,
            exit_first=exit_first,
            report=report,
            jobs=jobs or default_jobs(),
            in_process=in_process or None,
            randomness=runs_from,
        )
    progress.end()
    if as_json:
        emit_json(**report.to_json())
    else:
        _print_report(report, verbose)
    sys.exit(EXIT_OK if report.ok else EXIT_VIOLATED)


@click.command("replay")
@click.argument("trace_path", type=click.Path(path_type=Path))
@click.option(
    "--impl",
    "implementation",
    default=None,
    help="The kernel to replay against, as MODULE:ATTR. Needed unless the trace names a "
    "kernel that ships with pagingcheck: a trace is data and never decides which code runs.",
)
@exec_option
@click.option(
    "--any-version",
    is_flag=True,
    help="Replay a trace written by another version of pagingcheck (its verdict may differ).",
)
@click.option(
    "--write-log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also write the replayed run as a log ('pagingcheck docs logs') to FILE, for check-log.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also write the replayed run as a page to step through in a browser to FILE.",
)
@json_option
@containment_options
def replay_command(
    trace_path: Path,
    implementation: str | None,
    command: str | None,
    any_version: bool,
    log_path: Path | None,
    html_path: Path | None,
    as_json: bool,
    in_process: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> None:
    """Re-execute a trace: exit 1 with a step table if it still fails, 0 if it runs to its
    end without a violation, 2 if its choices no longer apply to the kernel."""
    trace, kernel = _to_replay(
        trace_path, implementation, command, any_version, call_seconds, memory_mb
    )
    with released(kernel_factory(kernel, trace.limits, in_process or None)) as factory:
        if html_path is None:
            result = traces.replay(trace, factory)
        else:
            text, result = viewer.render(trace, factory, trace_path.name)
        if log_path is not None:
            _write_log(trace, factory, log_path)
    _applies(trace, trace_path, result)
    if html_path is not None:
        viewer.write(text, html_path)
    violated = result.violation is not None
    if as_json:
        steps = len(result.records)
        emit_json(
            not violated,
            [{"name": str(trace_path), "ok": not violated, "steps": steps}],
            None
            if result.violation is None
            else result.violation.to_json(result.failing_step, trace_path),
        )
    else:
        click.echo(traces.render(trace, result))
    sys.exit(EXIT_VIOLATED if violated else EXIT_OK)


def _to_replay(
    trace_path: Path,
    implementation: str | None,
    command: str | None,
    any_version: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> tuple[traces.Trace, str]:
    """The trace at ``trace_path``, under the limits the options override, and the kernel
    to replay it on (see :func:`replay_kernel`)."""
    trace = traces.load(read_text(trace_path, "the trace"), str(trace_path), any_version)
    trace.limits = with_limits(trace.config(), call_seconds, memory_mb).limits
    return trace, replay_kernel(trace, kernel_spec(implementation, command))


def _applies(trace: traces.Trace, trace_path: Path, result: RunResult) -> None:
    """Refuse a replay whose trace's choices stopped being enabled before any violation."""
    if result.diverged_at is not None and result.violation is None:
        step = result.diverged_at
        raise UserError(
            f"{trace_path}: the trace does not apply to this kernel: its choice {step} "
            f"({traces.spell(trace.choices[step - 1])}) is not enabled there, so the run it "
            "records cannot be repeated (was the kernel or the trace changed?)"
        )


@click.command("view")
@click.argument("trace_path", type=click.Path(path_type=Path))
@click.option(
    "--impl",
    "implementation",
    default=None,
    help="The kernel to replay against, as MODULE:ATTR (as for replay).",
)
@exec_option
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Where the page goes (default: beside the trace, ending .html).",
)
@click.option("--open", "open_page", is_flag=True, help="Also open the page in a browser.")
@click.option(
    "--any-version",
    is_flag=True,
    help="Draw a trace written by another version of pagingcheck.",
)
@containment_options
def view_command(
    trace_path: Path,
    implementation: str | None,
    command: str | None,
    out_path: Path | None,
    open_page: bool,
    any_version: bool,
    in_process: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> None:
    """Replay a trace and write it as one self-contained HTML page: the steps, and at each
    the processes, frames, TLB, disk queue, page tables and console, with what changed
    marked and the violation at the failing step; the arrow keys step through it."""
    trace, kernel = _to_replay(
        trace_path, implementation, command, any_version, call_seconds, memory_mb
    )
    with released(kernel_factory(kernel, trace.limits, in_process or None)) as factory:
        text, result = viewer.render(trace, factory, trace_path.name)
    _applies(trace, trace_path, result)
    path = viewer.write(text, out_path or viewer.beside(trace_path))
    click.echo(str(path))
    if open_page and not webbrowser.open(path.resolve().as_uri()):
        say(f"no browser could be started: open {path} yourself")
    sys.exit(EXIT_OK if result.violation is None else EXIT_VIOLATED)


def _write_log(trace: traces.Trace, factory: Any, path: Path) -> None:
    """Run the trace's choices again, logged to ``path`` (written whole or not at all)."""
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
        ) as stream:
            logs.write_log(trace.config(), factory, stream, trace.choices, programs=trace.programs)
        os.replace(stream.name, path)
    except OSError as error:
        raise UserError(f"--write-log {path}: cannot write the log: {error.strerror}") from error


def replay_kernel(trace: traces.Trace, implementation: str | None) -> str:
    """The kernel a replay runs: the one the user names, else the trace's if it ships with
    pagingcheck. Importing a module runs its code, so a trace file alone never picks one."""
    if implementation is not None:
        return implementation
    if trace.implementation.startswith("pagingcheck."):
        return trace.implementation
    if trace.implementation.startswith(EXEC):
        program = trace.implementation.removeprefix(EXEC)
        raise UserError(
            f"the trace names the program {program!r}; to run it, name it yourself: "
            f"--exec {shlex.quote(program)}"
        )
    raise UserError(
        f"the trace names the kernel {trace.implementation!r}, which is not part of "
        f"pagingcheck; to run that code, name it yourself: --impl {trace.implementation}"
    )


@click.command("validate")
@click.option(
    "--impl",
    "implementation",
    default=None,
    help="Your kernel, as MODULE:ATTR; ATTR(hardware_config, kernel_config) builds it.",
)
@exec_option
@config_option
@variant_option
@exit_first_option
@jobs_option
@seed_option
@derandomize_option
@quiet_option
@verbose_option
@traces_option("Where a counterexample trace is written.")
@json_option
@profile_option
@containment_options
def validate_command(
    profile: str | None,
    implementation: str | None,
    command: str | None,
    config_path: Path | None,
    variants: tuple[str, ...],
    exit_first: bool,
    jobs: int | None,
    seed: int | None,
    derandomize: bool,
    quiet: bool,
    verbose: bool,
    trace_dir: Path,
    as_json: bool,
    in_process: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> None:
    """Check another implementation of the kernel interface against the spec: a Python
    object (--impl) or a program in any language (--exec)."""
    chosen = kernel_spec(implementation, command)
    if chosen is None:
        fail_usage("name the kernel to check: --impl MODULE:ATTR or --exec COMMAND")
    implementation = chosen
    runs_from = randomness(seed, derandomize)
    config = with_limits(load_config(config_path, profile), call_seconds, memory_mb)
    report = VerifyReport()
    progress = progress_printer(not quiet and not as_json)
    with (
        found_so_far(_interrupted(report, as_json, verbose)),
        released(kernel_factory(implementation, config.limits, in_process or None)) as factory,
    ):
        verify(
            config,
            factory,
            implementation,
            trace_dir,
            progress,
            status=progress.status if progress.in_place else None,
            only=variants,
            exit_first=exit_first,
            report=report,
            jobs=jobs or default_jobs(),
            in_process=in_process or None,
            randomness=runs_from,
        )
    progress.end()
    failed = next((c for c in report.checks if not c.ok), None)
    violation = None if failed is None else failed.extra.get("violation")
    if as_json:
        emit_json(**report.to_json())
    else:
        if failed is None:
            click.echo(f"pass: {implementation} refines the spec on every configuration checked")
        else:
            say(f"FAIL: {failed.detail}")
            _print_found(violation, verbose)
        _print_skipped(report)
        _print_coverage(report)
    sys.exit(EXIT_OK if failed is None else EXIT_VIOLATED)


@click.command("mutants")
@config_option
@click.option("--only", multiple=True, metavar="NAME", help="Run only these mutants.")
@jobs_option_saying("Check N mutants at once, on forked processes")
@traces_option("Where each killed mutant's trace is written.")
@json_option
@quiet_option
@profile_option
def mutants_command(
    profile: str | None,
    config_path: Path | None,
    only: tuple[str, ...],
    jobs: int | None,
    trace_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run the checker on every seeded-bug kernel and print the kill matrix."""
    from pagingcheck.checks.mutants import kill_matrix
    from pagingcheck.impl.mutants import BY_NAME, MUTANTS

    config = load_config(config_path, profile)
    unknown = [name for name in only if name not in BY_NAME]
    if unknown:
        raise UserError(f"--only {unknown[0]!r}: no such mutant; known: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[name] for name in only] if only else list(MUTANTS)
    rows = kill_matrix(
        config,
        trace_dir,
        chosen,
        progress_printer(not quiet and not as_json),
        jobs or default_jobs(),
    )
    killed = sum(row.killed for row in rows)
    if as_json:
        results = [{"name": row.name, "ok": row.killed, **row.to_json()} for row in rows]
        emit_json(killed == len(rows), results, None, total=len(rows), killed=killed)
    else:
        click.echo(
            f"{'mutant':<34} {'killed':<7} {'by':<24} {'seconds':>8} {'steps':>6} {'before':>6}"
            f" {'search':<6}"
        )
        for row in rows:
            click.echo(
                f"{row.name:<34} {'yes' if row.killed else 'NO':<7} {row.by or '-':<24} "
                f"{row.seconds:>8.1f} {_count(row.trace_steps):>6} "
                f"{_count(row.trace_steps_before):>6} {'yes' if row.trace_searched else '-':<6}"
            )
        click.echo(f"\n{killed} of {len(rows)} mutants killed")
    sys.exit(EXIT_OK if killed == len(rows) else EXIT_VIOLATED)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.command("prove")
@json_option
@traces_option("Where the trace of a refuted proof's bug found on the whole system goes.")
def prove_command(as_json: bool, trace_dir: Path) -> None:
    """Prove with z3 that the reference kernel's bookkeeping and TLB duties keep their
    invariants, and that it backs a faulting instruction up exactly.

    Each obligation is proved, refuted (with a concrete counterexample) or
    unknown (with the reason); unknown is not a pass. When an obligation is refuted,
    the stateful checks of the default configuration (dev profile) look for the
    bug on the whole system and write a trace that replay runs. See docs/proofs.md.
    """
    from pagingcheck.checks import proofs

    show = progress_printer(not as_json and sys.stderr.isatty())
    outcomes = proofs.prove_all(lambda o: show(f"{o.verdict:<8} {o.name}"))
    ok = all(o.verdict == "proved" for o in outcomes)
    found = None
    if any(o.verdict == "refuted" for o in outcomes):
        show("looking for the refuted obligation's bug on the whole system")
        config = load_config(None, "dev")
        with released(kernel_factory(REFERENCE_KERNEL, config.limits, None)) as factory:
            found = reproduce(config, factory, REFERENCE_KERNEL, trace_dir)
    if as_json:
        results = [o.to_json() for o in outcomes]
        if found is not None:  # the search for the refuted obligation's bug
            results.append(found.to_json())
        violation = None if found is None else found.extra.get("violation")
        emit_json(ok, results, violation)
    else:
        for o in outcomes:
            mark = {"proved": "PROVED", "refuted": "REFUTED", "unknown": "UNKNOWN"}[o.verdict]
            click.echo(f"{mark:<8} {o.name:<50} {o.seconds:6.2f}s  {o.detail[:200]}")
        proved = sum(o.verdict == "proved" for o in outcomes)
        click.echo(f"\nprove: {proved} of {len(outcomes)} obligations proved")
        if found is not None:
            click.echo(f"on the whole system: {found.detail}")
    sys.exit(EXIT_OK if ok else EXIT_VIOLATED)


#: The checking commands, registered on the ``pagingcheck`` group by ``checks.cli``.
@click.command("explore")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration to explore (each of its variants in turn).",
)
@click.option(
    "--reference",
    default=None,
    metavar="NAME",
    help="A reference configuration shipped with pagingcheck "
    f"({', '.join(checkconfig.references())}); the default is tiny.",
)
@impl_option
@exec_option
@click.option(
    "--max-states",
    type=click.IntRange(1, None),
    default=None,
    help="Stop after this many distinct states (the result is then incomplete).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes to explore with (the states are sharded among them by fingerprint).",
)
@click.option(
    "--keep-in-memory",
    "keep",
    type=click.IntRange(1, None),
    default=KEEP_IN_MEMORY,
    show_default=True,
    help="States the queue holds in memory before it spills the rest to disk (one worker).",
)
@click.option(
    "--least-frames",
    is_flag=True,
    help="When progress fails, explore with more user frames until it holds, and say "
    "how many the workload needs.",
)
@traces_option("Where counterexample traces are written.")
@json_option
@quiet_option
@containment_options
def explore_command(
    config_path: Path | None,
    reference: str | None,
    implementation: str,
    command: str | None,
    max_states: int | None,
    workers: int,
    keep: int,
    least_frames: bool,
    trace_dir: Path,
    as_json: bool,
    quiet: bool,
    in_process: bool,
    call_seconds: float | None,
    memory_mb: int | None,
) -> None:
    """Visit every reachable state of a small configuration, breadth first.

    Every property is checked on every transition; deadlocks and fair cycles
    without progress are looked for once the state graph is complete. The
    first violation is one of the fewest steps; its trace is written for
    pagingcheck replay. Exit 1 when a property was violated; an exploration
    stopped by --max-states says it is incomplete (and exits 0 if nothing was
    violated in the states it visited).
    """
    if config_path is not None and reference is not None:
        fail_usage("give at most one of --config FILE and --reference NAME")
    implementation = kernel_spec(implementation, command) or REFERENCE_KERNEL
    config = (
        checkconfig.load(config_path)
        if config_path is not None
        else checkconfig.load_reference(reference or "tiny")
    )
    config = with_limits(config, call_seconds, memory_mb)
    show = progress_printer(not quiet and (not as_json or sys.stderr.isatty()))
    ticker = _Ticker(show)
    results: list[tuple[str, Exploration]] = []
    needs: dict[str, int | None] = {}
    with released(kernel_factory(implementation, config.limits, in_process or None)) as factory:
        for name, run in config.expand():
            show(f"[explore] {name}")
            result = explore(
                run,
                factory,
                implementation,
                trace_dir,
                max_states=max_states,
                tick=ticker,
                name=f"explore-{name}",
                workers=workers,
                keep=keep,
            )
            ticker.end()
            results.append((name, result))
            needs[name] = (
                _frames_needed(run, factory, max_states, show)
                if least_frames and _livelocked(result)
                else None
            )
    ok = all(result.ok for _, result in results)
    if as_json:
        data = _exploration_json(results)
        if least_frames:
            data["least_frames"] = needs
        emit_json(**data)
    else:
        for name, result in results:
            _print_exploration(name, result, needs.get(name), least_frames)
    sys.exit(EXIT_OK if ok else EXIT_VIOLATED)


def _livelocked(result: Exploration) -> bool:
    return any(f.violation.property == "progress" for f in result.violations)


def _frames_needed(
    run: checkconfig.CheckConfig, factory: Any, max_states: int | None, show: Any
) -> int | None:
    """The fewest user frames on which ``run`` explores with no violation (None: none)."""
    found, _ = least_frames(
        run,
        factory,
        max_states=max_states,
        tick=lambda frames: show(f"[explore] with {frames} user frames"),
        more=1,  # the configured count was just explored, and failed
    )
    return found


class _Ticker:
    """Progress of an exploration: at a terminal one line rewritten in place (kept when
    the exploration ends), else a line each time."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __call__(self, tick: Tick) -> None:
        if self.progress.in_place:
            self.progress.status(_tick_line(tick))
        else:
            self.progress(_tick_line(tick))

    def end(self) -> None:
        """End the line being rewritten, if any, keeping it on screen."""
        self.progress.keep()


def _tick_line(tick: Tick) -> str:
    rate = tick.distinct_states / tick.seconds if tick.seconds > 0 else 0.0
    return (
        f"  {tick.distinct_states} states, {tick.transitions} transitions, depth {tick.depth}, "
        f"queue {tick.queue}, {rate:.0f} states/s"
    )


def _exploration_json(results: list[tuple[str, Exploration]]) -> dict[str, Any]:
    """One JSON object for every variant explored: totals, then each variant's own."""
    violations = [{"variant": n, **f.to_json()} for n, r in results for f in r.violations]
    return {
        "ok": all(r.ok for _, r in results),
        "results": [{"name": n, **r.to_json()} for n, r in results],
        "violation": violations[0] if violations else None,
        "distinct_states": sum(r.distinct_states for _, r in results),
        "transitions": sum(r.transitions for _, r in results),
        "max_depth": max(r.max_depth for _, r in results),
        "seconds": round(sum(r.seconds for _, r in results), 3),
        "violations": violations,
    }


def _print_exploration(name: str, result: Exploration, needs: int | None, asked: bool) -> None:
    rate = result.distinct_states / result.seconds if result.seconds > 0 else 0.0
    if result.complete:
        extent = "complete"
    elif result.violations:
        extent = "stopped at the first violation"
    else:
        extent = "INCOMPLETE (stopped at --max-states)"
    click.echo(
        f"{name}: {result.distinct_states} distinct states, {result.transitions} transitions, "
        f"depth {result.max_depth}, {result.seconds:.1f}s ({rate:.0f} states/s); {extent}; "
        f"symmetry reduction {result.reduction}"
    )
    for finding in result.violations:
        kind = f", loop from step {finding.loop_from}" if finding.loop_from is not None else ""
        say(
            f"FAIL  {finding.violation.explain()} after {len(finding.choices)} steps{kind} "
            f"(trace: {finding.trace})"
        )
    if result.ok and result.complete:
        click.echo("explore: every reachable state checked, all properties held")
    elif not result.violations:
        click.echo("explore: no violation in the states visited, but not every state was visited")
    if asked and _livelocked(result):
        click.echo(
            "explore: no progress with the configured user frames; "
            + (
                f"progress, and every other property, from {needs} user frames"
                if needs is not None
                else "no frame count up to 16 more makes every property hold"
            )
        )


@click.command("check-log")
@click.argument("log_path", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration the log's run was made on (default: the one the log's header "
    "gives, else the built-in one).",
)
@click.option(
    "--reference",
    default=None,
    metavar="NAME",
    help=f"A reference configuration instead ({', '.join(checkconfig.references())}).",
)
@click.option(
    "--variant",
    default=None,
    metavar="NAME",
    help="The variant the log ran on (default: the one whose machine the log's header gives).",
)
@json_option
def check_log_command(
    log_path: Path,
    config_path: Path | None,
    reference: str | None,
    variant: str | None,
    as_json: bool,
) -> None:
    """Check that a kernel's log ('pagingcheck docs logs') is a behaviour of the system with every
    property holding: exit 0 if so, 1 with the first line nothing fits or a property
    breaks at, 2 for a file that is not a log."""
    if config_path is not None and reference is not None:
        fail_usage("give at most one of --config FILE and --reference NAME")
    log = logs.read(log_path)
    config = (
        checkconfig.load_reference(reference)
        if reference is not None
        else checkconfig.load(config_path)
        if config_path is not None
        else None
    )
    result = logs.check_log(logs.choose_config(config, log, variant), log)
    if as_json:
        emit_json(result.ok, [{"name": str(log_path), **result.to_json()}], result.violation_json())
    else:
        click.echo(logs.describe(result))
    sys.exit(EXIT_OK if result.ok else EXIT_VIOLATED)


@click.command("config")
@click.option(
    "--default",
    "default",
    is_flag=True,
    help="Print the built-in configuration (what every command uses without --config).",
)
@click.option(
    "--reference",
    default=None,
    metavar="NAME",
    help=f"Print a shipped reference configuration ({', '.join(checkconfig.references())}).",
)
def config_command(default: bool, reference: str | None) -> None:
    """Print a configuration to start your own from: the built-in one (--default) or a
    reference configuration of the explorer (--reference NAME). Save it, edit it, and
    pass it with --config FILE ('pagingcheck docs configuration')."""
    if default == (reference is not None):
        fail_usage("give exactly one of --default and --reference NAME")
    text = checkconfig.default_text() if default else checkconfig.reference_text(str(reference))
    click.echo(text, nl=False)


@click.command("schema")
@click.option(
    "--results",
    is_flag=True,
    help="The schema of what the commands print with --json, instead of the protocol's.",
)
def schema_command(results: bool) -> None:
    """Print the JSON Schema of the process protocol that --exec speaks, for validating a
    kernel written in another language ('pagingcheck docs protocol'); with --results, the
    schema of every command's --json output ('pagingcheck docs cli')."""
    click.echo((RESULTS_SCHEMA if results else SCHEMA).read_text(), nl=False)


@click.command("docs")
@click.argument("topic", required=False)
def docs_command(topic: str | None) -> None:
    """Print a topic of the manual, or list the topics (each is a page of docs/ in the
    repository; messages cite them as 'pagingcheck docs TOPIC')."""
    if topic is None:
        known = manual.topics()
        width = max(map(len, known), default=0)
        for name, title in known.items():
            click.echo(f"{name:<{width}}  {title}")
        return
    click.echo(manual.page(topic), nl=False)


COMMANDS = (
    verify_command,
    replay_command,
    view_command,
    validate_command,
    mutants_command,
    prove_command,
    explore_command,
    check_log_command,
    config_command,
    schema_command,
    docs_command,
)
