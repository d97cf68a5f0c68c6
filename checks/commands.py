"""The checking commands: verify, replay, validate, mutants.

Exit codes: 0 every property held, 1 a property was violated, 2 bad usage
or input, 3 an internal error of pagingcheck itself (with a traceback for
its maintainers; never blamed on the checked kernel). With ``--json`` each
command prints exactly one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import traces
from pagingcheck.checks.config import PROFILES
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.checks.verify import VerifyReport, verify
from pagingcheck.model.errors import UserError

EXIT_OK, EXIT_VIOLATED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

FC = TypeVar("FC", bound=Callable[..., Any])


# -- options shared by the checking commands ----------------------------------------------

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration (default: the built-in one).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
profile_option = click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help="Budget profile: dev (quick), ci (as configured, the default), thorough "
    "(long campaign). Default: $PAGINGCHECK_PROFILE, else ci.",
)


def traces_option(help_text: str) -> Callable[[FC], FC]:
    """The --traces DIR option, with what the command writes there."""
    return click.option(
        "--traces",
        "trace_dir",
        type=click.Path(path_type=Path),
        default=Path("traces"),
        show_default=True,
        help=help_text,
    )


def exits_2_on_user_error(command: FC) -> FC:
    """Turn a UserError anywhere in ``command`` into a one-line message and exit code 2, and
    any other exception (a bug in pagingcheck) into a report with its traceback and exit 3."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            fail_usage(str(error))
        except Exception as error:
            fail_internal(error)

    return guarded  # type: ignore[return-value]


def fail_internal(error: BaseException) -> NoReturn:
    """Report a bug in pagingcheck itself (not in the checked kernel) and exit 3."""
    click.echo(
        "pagingcheck: internal error: this is a bug in pagingcheck, not in the kernel "
        f"checked ({type(error).__name__}: {error}); please report it with this traceback:",
        err=True,
    )
    click.echo("".join(traceback.format_exception(error)), err=True)
    sys.exit(EXIT_INTERNAL)


def fail_usage(message: str) -> NoReturn:
    """Print ``message`` as an error and exit 2."""
    click.echo(f"pagingcheck: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON object on stdout."""
    click.echo(json.dumps(data, indent=2))


def progress_printer(enabled: bool) -> Any:
    """A progress callback writing to stderr (silent when disabled)."""

    def show(message: str) -> None:
        if enabled:
            click.echo(message, err=True)

    return show


def load_config(path: Path | None, profile: str | None) -> checkconfig.CheckConfig:
    """The configuration at ``path`` (or the default) under the chosen budget profile."""
    chosen = profile or os.environ.get("PAGINGCHECK_PROFILE") or "ci"
    if chosen not in PROFILES:
        raise UserError(
            f"PAGINGCHECK_PROFILE={chosen!r} is not a profile; use one of: {', '.join(PROFILES)}"
        )
    return checkconfig.load(path).with_profile(chosen)


def _print_report(report: VerifyReport) -> None:
    for check in report.checks:
        mark = "PASS" if check.ok else "FAIL"
        click.echo(f"{mark}  {check.name:<50} {check.seconds:6.1f}s  {check.detail}")
    _print_coverage(report)
    click.echo("\nverify: " + ("all properties held" if report.ok else "FAILED"))


def _print_coverage(report: VerifyReport) -> None:
    required = set(report.required)
    click.echo("\ncoverage (paging situations reached; * = required by the configuration):")
    for name, count in report.coverage.table():
        mark = "*" if name in required else " "
        note = "" if count else ("   <- never reached" if name in required else "")
        click.echo(f" {mark}{name:<36} {count:>7}{note}")


@click.command("verify")
@config_option
@click.option(
    "--impl",
    "implementation",
    default=REFERENCE_KERNEL,
    show_default=True,
    help="Kernel to check, as MODULE:ATTR building a kernel.",
)
@traces_option("Where counterexample traces are written.")
@json_option
@profile_option
@exits_2_on_user_error
def verify_command(
    profile: str | None,
    config_path: Path | None,
    implementation: str,
    trace_dir: Path,
    as_json: bool,
) -> None:
    """Run every check on a configuration and print a summary per check."""
    config = load_config(config_path, profile)
    factory = resolve_factory(implementation)
    report = verify(
        config,
        factory,
        implementation,
        trace_dir,
        progress_printer(not as_json or sys.stderr.isatty()),
    )
    if as_json:
        emit_json(report.to_json())
    else:
        _print_report(report)
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
@json_option
@exits_2_on_user_error
def replay_command(trace_path: Path, implementation: str | None, as_json: bool) -> None:
    """Re-execute a trace: exit 1 with a step table if it still fails, 0 if not."""
    trace = traces.load(_read(trace_path), str(trace_path))
    factory = resolve_factory(replay_kernel(trace, implementation))
    result = traces.replay(trace, factory)
    violated = result.violation is not None
    if as_json:
        emit_json(
            {
                "ok": not violated,
                "steps": len(result.records),
                "violation": None
                if result.violation is None
                else {
                    "property": result.violation.property,
                    "why": result.violation.message,
                    "step": result.failing_step,
                },
            }
        )
    else:
        click.echo(traces.render(trace, result))
    sys.exit(EXIT_VIOLATED if violated else EXIT_OK)


def replay_kernel(trace: traces.Trace, implementation: str | None) -> str:
    """The kernel a replay runs: the one the user names, else the trace's if it ships with
    pagingcheck. Importing a module runs its code, so a trace file alone never picks one."""
    if implementation is not None:
        return implementation
    if trace.implementation.startswith("pagingcheck."):
        return trace.implementation
    raise UserError(
        f"the trace names the kernel {trace.implementation!r}, which is not part of "
        f"pagingcheck; to run that code, name it yourself: --impl {trace.implementation}"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror}") from error


@click.command("validate")
@click.option(
    "--impl",
    "implementation",
    required=True,
    help="Your kernel, as MODULE:ATTR; ATTR(hardware_config, kernel_config) builds it.",
)
@config_option
@traces_option("Where a counterexample trace is written.")
@json_option
@profile_option
@exits_2_on_user_error
def validate_command(
    profile: str | None,
    implementation: str,
    config_path: Path | None,
    trace_dir: Path,
    as_json: bool,
) -> None:
    """Check another implementation of the kernel interface against the spec."""
    config = load_config(config_path, profile)
    factory = resolve_factory(implementation)
    report = verify(config, factory, implementation, trace_dir, progress_printer(not as_json))
    failed = next((c for c in report.checks if not c.ok), None)
    violation = None if failed is None else failed.extra.get("violation")
    if as_json:
        emit_json(
            {
                "ok": failed is None,
                "violation": violation,
                "failed_check": None if failed is None else failed.name,
                "coverage": dict(report.coverage.table()),
                "coverage_required": list(report.required),
            }
        )
    else:
        if failed is None:
            click.echo(f"pass: {implementation} refines the spec on every configuration checked")
        else:
            click.echo(f"FAIL: {failed.detail}")
        _print_coverage(report)
    sys.exit(EXIT_OK if failed is None else EXIT_VIOLATED)


@click.command("mutants")
@config_option
@click.option("--only", multiple=True, metavar="NAME", help="Run only these mutants.")
@traces_option("Where each killed mutant's trace is written.")
@json_option
@profile_option
@exits_2_on_user_error
def mutants_command(
    profile: str | None,
    config_path: Path | None,
    only: tuple[str, ...],
    trace_dir: Path,
    as_json: bool,
) -> None:
    """Run the checker on every seeded-bug kernel and print the kill matrix."""
    from pagingcheck.checks.mutants import kill_matrix
    from pagingcheck.impl.mutants import BY_NAME, MUTANTS

    config = load_config(config_path, profile)
    unknown = [name for name in only if name not in BY_NAME]
    if unknown:
        raise UserError(f"--only {unknown[0]!r}: no such mutant; known: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[name] for name in only] if only else list(MUTANTS)
    rows = kill_matrix(config, trace_dir, chosen, progress_printer(not as_json))
    killed = sum(row.killed for row in rows)
    if as_json:
        emit_json(
            {"total": len(rows), "killed": killed, "mutants": [row.to_json() for row in rows]}
        )
    else:
        click.echo(f"{'mutant':<34} {'killed':<7} {'by':<24} {'seconds':>8} {'steps':>6}")
        for row in rows:
            click.echo(
                f"{row.name:<34} {'yes' if row.killed else 'NO':<7} {row.by or '-':<24} "
                f"{row.seconds:>8.1f} {row.trace_steps if row.trace_steps is not None else '-':>6}"
            )
        click.echo(f"\n{killed} of {len(rows)} mutants killed")
    sys.exit(EXIT_OK if killed == len(rows) else EXIT_VIOLATED)


#: The checking commands, registered on the ``pagingcheck`` group by ``checks.cli``.
COMMANDS = (verify_command, replay_command, validate_command, mutants_command)
