"""``pagingcheck verify``: the main job.

For each configuration variant, run the Hypothesis stateful machine over the
system's choices, checking refinement, restart exactness and every
invariant after every step, and progress over a fair continuation at the
end of each run. Then explore a small workload completely on each variant's
kind of machine, and check that the runs together reached the paging
situations the configuration requires (its ``coverage`` section: an
unreached one fails, since a green run must have exercised the paging code
it meant to). Each failure writes a replayable trace.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagingcheck.checks import viewer
from pagingcheck.checks.config import PROFILES, CheckConfig, load_reference
from pagingcheck.checks.coverage import Coverage
from pagingcheck.checks.explore import explore
from pagingcheck.checks.external import EXEC
from pagingcheck.checks.jobs import Finished, Status, Work, campaign, run_all
from pagingcheck.checks.machines import Randomness
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.runner import KernelFactory
from pagingcheck.model.errors import UserError

if TYPE_CHECKING:  # the proofs import z3, which only a check that proves needs
    from pagingcheck.checks.proofs import Outcome


@dataclass
class CheckResult:
    """One named check's outcome, as printed and as JSON."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this check."""
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


@dataclass
class VerifyReport:
    """Every check's result and the coverage over all runs."""

    checks: list[CheckResult] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    required: tuple[str, ...] = ()
    skipped: list[str] = field(default_factory=list)  # checks not run, each with why
    seed: int | None = None  # the campaigns' seed; None when derandomised

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """What ``verify --json`` and ``validate --json`` print (``output.emit_json``'s
        arguments): each check a result, the first failed check's violation."""
        failed = (c.extra["violation"] for c in self.checks if "violation" in c.extra)
        return {
            "ok": self.ok,
            "results": [c.to_json() for c in self.checks],
            "violation": next(failed, None),
            "seed": self.seed,
            "coverage": dict(self.coverage.table()),
            "coverage_required": list(self.required),
            "skipped": list(self.skipped),
        }


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Proved:
    """The z3 obligations' outcomes, as a value that can cross processes."""

    outcomes: tuple[Outcome, ...]
    seconds: float


def _proofs_check(proved: Proved) -> CheckResult:
    """The z3 obligations (checks.proofs) as one check."""
    outcomes = proved.outcomes
    failed = [o for o in outcomes if o.verdict != "proved"]
    detail = (
        f"all {len(outcomes)} z3 obligations proved"
        if not failed
        else "; ".join(f"{o.name}: {o.verdict} {o.detail[:100]}" for o in failed[:3])
    )
    return CheckResult(
        "proofs",
        not failed,
        detail,
        seconds=proved.seconds,
        extra={"obligations": len(outcomes), "not_proved": [o.name for o in failed]},
    )


#: The workload and sizes of every small exploration: this reference configuration's,
#: explored on each variant's kind of machine and kernel.
SMALL_EXPLORATION = "pair"
#: The hardware fields that say what kind of machine a variant is, not how big it is.
MACHINE_KIND = ("page_table", "levels", "hash_buckets", "tlb_tagged", "tlb_refill", "restart")


def small_exploration(run: CheckConfig) -> CheckConfig:
    """The ``pair`` reference configuration (two processes, two user frames) on ``run``'s
    kind of machine (page table, TLB, restart variant) with ``run``'s kernel section and
    containment limits: small enough to explore completely in seconds, and a machine the
    kernel checked was configured for (a kernel that supports only linear tables is never
    asked to build a tree)."""
    pair = load_reference(SMALL_EXPLORATION)
    kind = {name: getattr(run.hardware, name) for name in MACHINE_KIND}
    # pair's four pages give two vpn bits: a deeper tree cannot be cut from them.
    kind["levels"] = min(run.hardware.levels, pair.hardware.va_pages.bit_length() - 1)
    return replace(
        pair, hardware=replace(pair.hardware, **kind), kernel=run.kernel, limits=run.limits
    )


def _explorations(
    runs: Sequence[tuple[str, CheckConfig]],
) -> list[tuple[list[str], CheckConfig]]:
    """One small exploration per distinct machine and kernel among ``runs``, each named
    after the variants it stands for."""
    groups: dict[tuple[object, object], tuple[list[str], CheckConfig]] = {}
    for name, run in runs:
        small = small_exploration(run)
        groups.setdefault((small.hardware, small.kernel), ([], small))[0].append(name)
    return list(groups.values())


def _exploration(
    variants: list[str],
    config: CheckConfig,
    implementation: str,
    trace_dir: Path,
    factory: KernelFactory,
    _status: Status | None = None,
) -> CheckResult:
    """Every reachable state of ``config``, a small exploration standing for ``variants``,
    as one check named after the first of them (a :data:`Work` once its first four
    arguments are given)."""
    result = explore(config, factory, implementation, trace_dir, name=f"explore-{variants[0]}")
    name = f"explore:{variants[0]}"
    extra: dict[str, Any] = {"variants": variants}
    if result.violations:
        finding = result.violations[0]
        detail = f"{finding.violation.explain()} (trace: {finding.trace})"
        extra["violation"] = found(
            finding.violation, len(finding.choices), finding.trace, implementation
        )
        return CheckResult(name, False, detail, result.seconds, extra)
    return CheckResult(
        name,
        result.complete,
        f"all {result.distinct_states} reachable states and {result.transitions} transitions "
        f"of {SMALL_EXPLORATION}'s workload on the machine of {', '.join(variants)} checked, "
        "all properties held",
        result.seconds,
        {**extra, "distinct_states": result.distinct_states, "transitions": result.transitions},
    )


def found(
    violation: Violation, step: int, trace: Path | str | None, implementation: str
) -> dict[str, Any]:
    """A violation found by a check, as its JSON (:meth:`Violation.to_json`) with the
    command that replays its trace."""
    data = violation.to_json(step, trace)
    if trace is not None:
        data["replay"] = replay_line(Path(trace), implementation)
    return data


def replay_line(trace: Path, implementation: str) -> str:
    """The command that replays ``trace`` on ``implementation``: a kernel from outside
    pagingcheck is named, since a trace never decides which code runs."""
    line = f"pagingcheck replay {shlex.quote(str(trace))}"
    if implementation.startswith(EXEC):
        return f"{line} --exec {shlex.quote(implementation.removeprefix(EXEC))}"
    if implementation.startswith("pagingcheck."):
        return line
    return f"{line} --impl {shlex.quote(implementation)}"


def chosen_variants(config: CheckConfig, only: Sequence[str]) -> list[tuple[str, CheckConfig]]:
    """``config``'s variants, or those ``only`` names (UserError for a name it lacks)."""
    runs = config.expand()
    known = [name for name, _ in runs]
    for name in only:
        if name not in known:
            raise UserError(
                f"--variant {name!r}: no such variant; this configuration has: {', '.join(known)}"
            )
    return [(name, run) for name, run in runs if not only or name in only]


def reproduce(
    config: CheckConfig, factory: KernelFactory, implementation: str, trace_dir: Path
) -> CheckResult:
    """Look for a refuted proof's bug on the whole system: the stateful checks of
    ``config``, variant after variant, on the kernel as its code now is, stopping at the
    first violation (its trace written to ``trace_dir``, so ``pagingcheck replay`` runs
    it). ``ok`` is true when one was found."""
    began = time.perf_counter()
    runs = steps = 0
    for name, run in config.expand():
        done = campaign(name, run, factory, implementation)
        runs, steps, failure = runs + done.runs, steps + done.steps, done.failure
        if failure is not None and failure.violation is not None:
            stem = f"proof-{name}-{failure.violation.property}"
            path = viewer.write_trace(failure, trace_dir, stem, factory)
            return CheckResult(
                "reproduced",
                True,
                f"on {name}: {failure.violation.explain()} (trace: {path})",
                time.perf_counter() - began,
                {"violation": found(failure.violation, len(failure.choices), path, implementation)},
            )
    detail = (
        f"not reproduced in {runs} runs ({steps} steps) of the {config.profile} profile: "
        "the counterexample's state may be one the kernel never drives its tables into"
    )
    return CheckResult("reproduced", False, detail, time.perf_counter() - began)


def _campaign_check(
    done: Finished, implementation: str, trace_dir: Path, factory: KernelFactory
) -> CheckResult:
    """One variant's campaign as a check; its counterexample, if any, written as a trace
    with its page beside it."""
    result = CheckResult(
        f"stateful:{done.name}",
        done.failure is None,
        seconds=done.seconds,
        extra={"runs": done.runs, "steps": done.steps},
    )
    failure = done.failure
    if failure is not None and failure.violation is not None:
        stem = f"{done.name}-{failure.violation.property}"
        path = viewer.write_trace(failure, trace_dir, stem, factory)
        result.detail = f"{failure.violation.explain()} (trace: {path})"
        result.extra["violation"] = found(
            failure.violation, len(failure.choices), path, implementation
        )
    else:
        result.detail = f"{done.runs} runs, {done.steps} steps, all properties held"
        if done.rounds > 1:
            result.detail += f" ({done.rounds} rounds: the first missed required coverage)"
    return result


def _works(
    runs: Sequence[tuple[str, CheckConfig]],
    implementation: str,
    trace_dir: Path,
    prove: bool,
    randomness: Randomness | None,
) -> list[tuple[str, Work[CheckResult | Finished | Proved]]]:
    """Every check of a verify, named, in the order a serial run takes them: the proofs
    (when ``prove``), each variant's campaign, each small exploration. In parallel they
    start in that order too, so the short explorations fill the cores at the end."""
    works: list[tuple[str, Work[CheckResult | Finished | Proved]]] = []
    if prove:
        works.append(("proofs", _prove))
    for name, run in runs:
        campaigned = partial(_campaign, name, run, implementation, randomness)
        works.append((f"stateful:{name}", campaigned))
    for variants, small in _explorations(runs):
        explored = partial(_exploration, variants, small, implementation, trace_dir)
        works.append((f"explore:{variants[0]}", explored))
    return works


def _prove(_factory: KernelFactory, _status: Status | None) -> Proved:
    from pagingcheck.checks import proofs

    began = time.perf_counter()
    outcomes = proofs.verdicts()
    return Proved(outcomes, time.perf_counter() - began)


def _campaign(
    name: str,
    run: CheckConfig,
    implementation: str,
    randomness: Randomness | None,
    factory: KernelFactory,
    status: Status | None,
) -> Finished:
    return campaign(name, run, factory, implementation, randomness, status)


def verify(
    config: CheckConfig,
    factory: KernelFactory,
    implementation: str,
    trace_dir: Path,
    progress: Progress = lambda _: None,
    prove: bool = False,
    only: Sequence[str] = (),
    exit_first: bool = False,
    report: VerifyReport | None = None,
    jobs: int = 1,
    in_process: bool | None = None,
    randomness: Randomness | None = None,
    status: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Run every check on ``config`` (each variant in turn); coverage as it requires; and,
    when ``prove``, the z3 proofs about the reference kernel's transitions first; after the
    campaigns, a complete exploration of a small workload on each variant's kind of machine
    (``small_exploration``).

    ``only`` names the variants to run (the others and the coverage of the whole
    configuration are then skipped); ``exit_first`` stops at the first check that fails.
    ``jobs`` > 1 runs the variants' campaigns on that many forked processes (each builds
    its kernel from ``implementation``, contained unless ``in_process``), with the same
    results as a serial run. ``randomness`` says where the campaigns' runs come from
    (derandomised when None); ``status``, when given, hears every second how far the
    campaigns are (a line to show in place). Each check's verdict goes to ``progress`` as
    soon as it is known, and into ``report`` (a new one when None), so a caller holding it
    sees what is done if the run is cut
    short."""
    report = VerifyReport() if report is None else report
    report.required = config.coverage
    report.seed = randomness.seed if randomness else None
    runs = chosen_variants(config, only)
    works = _works(runs, implementation, trace_dir, prove, randomness)
    if jobs > 1 and len(works) > 1:
        progress(f"[checks] {len(works)} checks on {min(jobs, len(works))} processes")
    else:
        progress(f"[1/{len(works)}] {works[0][0]}")
    short: dict[str, list[str]] = {}  # variant -> situations it must reach alone and did not
    formats = {name: run.hardware.page_table for name, run in runs}
    by_format: dict[str, Coverage] = {kind: Coverage() for kind in formats.values()}
    first, order = len(report.checks), [name for name, _ in works]
    finished = run_all(works, factory, implementation, config.limits, jobs, in_process, status)
    for count, done in enumerate(finished, start=1):
        if isinstance(done, Proved):
            from pagingcheck.checks import proofs

            proofs.remember(done.outcomes)  # decided on a worker: kept here for next time
            done = _proofs_check(done)
        elif isinstance(done, Finished):
            report.coverage.merge(done.coverage)
            by_format[formats[done.name]].merge(done.coverage)
            if missing_here := done.coverage.unreached(config.coverage_each):
                short[done.name] = missing_here
            done = _campaign_check(done, implementation, trace_dir, factory)
        report.checks.append(done)
        verdict = "PASS" if done.ok else "FAIL"
        progress(f"[{count}/{len(works)}] {done.name}: {verdict}  {done.detail}")
        if exit_first and not done.ok:
            finished.close()  # stops the checks still running
            ran = {check.name for check in report.checks}
            left = [name for name in order if name not in ran]
            what = f"{', '.join(left)}, " if left else ""
            report.skipped.append(f"{what}the coverage (-x: stopped at a failure)")
            return report
        if jobs <= 1 and count < len(works):
            progress(f"[{count + 1}/{len(works)}] {works[count][0]}")
    # In the order a serial run reports, whatever order they finished in.
    report.checks[first:] = sorted(report.checks[first:], key=lambda c: order.index(c.name))
    if len(runs) < len(config.expand()):
        report.skipped.append(
            f"the coverage of the whole configuration (--variant ran "
            f"{len(runs)} of {len(config.expand())} variants)"
        )
        return report
    # Coverage is required of the configured budget; a smaller one may miss it.
    smaller = (
        f" (the {config.profile} profile runs a fraction of the configured budget)"
        if min(PROFILES[config.profile][:2]) < 1
        else ""
    )
    if config.coverage:
        missing = report.coverage.unreached(config.coverage)
        report.checks.append(
            CheckResult(
                "coverage",
                not missing,
                f"all {len(config.coverage)} required paging situations reached"
                if not missing
                else f"never reached: {', '.join(missing)}{smaller}",
                extra={"unreached": missing},
            )
        )
    if config.coverage_each:
        report.checks.append(
            CheckResult(
                "coverage:every_variant",
                not short,
                f"every variant reached {', '.join(config.coverage_each)}"
                if not short
                else "; ".join(f"{name} never reached {', '.join(s)}" for name, s in short.items())
                + smaller,
                extra={"unreached_by_variant": short},
            )
        )
    if config.coverage_format:
        report.checks.append(_format_coverage(config.coverage_format, by_format, smaller))
    return report


def _format_coverage(
    required: tuple[str, ...], by_format: dict[str, Coverage], smaller: str
) -> CheckResult:
    """The check that each page-table format reached ``required`` in its variants together."""
    short = {
        kind: missing
        for kind, reached in sorted(by_format.items())
        if (missing := reached.unreached(required))
    }
    detail = (
        f"every page-table format ({', '.join(sorted(by_format))}) reached {', '.join(required)}"
        if not short
        else "; ".join(f"{kind} never reached {', '.join(s)}" for kind, s in short.items())
        + smaller
    )
    return CheckResult(
        "coverage:every_format", not short, detail, extra={"unreached_by_format": short}
    )
