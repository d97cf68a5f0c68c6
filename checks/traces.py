"""Counterexample traces in YAML: write on failure, load safely, replay, render.

A trace holds everything needed to run again: the configuration (hardware,
kernel, workload programs as words with their disassembly), the kernel
implementation, and the choice sequence. It also records what was observed
at each step, the violated property with why, and the difference between
the spec and the system at the failing step. ``replay(load(dump(t)))``
reaches the same violation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pagingcheck.checks.config import DEFAULT_PROGRESS_BOUND, Budget, CheckConfig, Workload
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.runner import KernelFactory, RunResult, run_choices
from pagingcheck.checks.system import Choice, StepRecord
from pagingcheck.impl.config import KernelConfig
from pagingcheck.model.asm import disassemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError, UserError
from pagingcheck.model.program import Program, SharedSegment

FORMAT_VERSION = 1
CHOICE_KINDS = {"run": 1, "disk": 1, "timer": 0, "spawn": 1, "kill": 1}


@dataclass
class Trace:
    """A replayable run: configuration, kernel, choices, and what was seen."""

    hardware: HardwareConfig
    kernel: KernelConfig
    programs: tuple[Program, ...]
    workload: Workload
    implementation: str
    choices: list[Choice]
    steps: list[dict[str, Any]] = field(default_factory=list)
    violation: Violation | None = None
    difference: list[str] = field(default_factory=list)
    fair_from: int | None = None  # the first choice of the fair continuation, if any

    def config(self) -> CheckConfig:
        """The configuration this trace runs under."""
        workload = dataclasses.replace(self.workload, programs=self.programs)
        return CheckConfig(self.hardware, self.kernel, workload, Budget())


def program_to_data(program: Program) -> dict[str, Any]:
    """A program as plain YAML data: words, plus a listing for people."""
    return {
        "name": program.name,
        "text": list(program.text),
        "listing": disassemble(list(program.text)),
        "data": list(program.data),
        "heap_pages": program.heap_pages,
        "stack_pages": program.stack_pages,
        "entry": program.entry,
        "shared": [dataclasses.asdict(s) for s in program.shared],
    }


def program_from_data(data: Any, where: str) -> Program:
    """Inverse of :func:`program_to_data`, validating every field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    try:
        text = tuple(int(w) & 0xFFFF_FFFF for w in data["text"])
        words = tuple(int(w) & 0xFFFF_FFFF for w in data.get("data", []))
        shared = tuple(SharedSegment(**s) for s in data.get("shared", []))
        return Program(
            str(data["name"]),
            text,
            words,
            heap_pages=int(data.get("heap_pages", 0)),
            stack_pages=int(data.get("stack_pages", 1)),
            entry=int(data.get("entry", 0)),
            shared=shared,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: malformed program ({error})") from error


def record_to_data(record: StepRecord) -> dict[str, Any]:
    """What one step showed, as plain data."""
    data: dict[str, Any] = {"choice": list(record.choice)}
    result = record.result
    if result is not None:
        data["retired"] = result.retired
        if result.trap is not None:
            data["trap"] = result.trap.value
        if result.fault is not None:
            data["fault"] = {
                "kind": result.fault.kind.value,
                "va": result.fault.va,
                "access": result.fault.access.value,
            }
        if result.write is not None:
            data["write"] = list(result.write)
    if record.spawned is not None:
        data["spawned"] = record.spawned if isinstance(record.spawned, int) else str(record.spawned)
    if record.events:
        data["events"] = [
            " ".join(f"{k}={v}" for k, v in dataclasses.asdict(e).items() if v not in (None, ""))
            for e in record.events
        ]
    return data


def from_run(
    config: CheckConfig, implementation: str, choices: list[Choice], result: RunResult
) -> Trace:
    """A trace of a finished run (the choices up to the failing step)."""
    steps = [record_to_data(r) for r in result.records]
    kept = choices[: len(result.records)]
    return Trace(
        config.hardware,
        config.kernel,
        config.workload.programs,
        config.workload,
        implementation,
        kept,
        steps,
        result.violation,
        list(result.difference),
        result.fair_from,
    )


def dump(trace: Trace) -> str:
    """The trace as YAML text."""
    workload = trace.workload
    data: dict[str, Any] = {
        "pagingcheck_trace": FORMAT_VERSION,
        "implementation": trace.implementation,
        "hardware": dataclasses.asdict(trace.hardware),
        "kernel": _kernel_data(trace.kernel),
        "workload": {
            "programs": [program_to_data(p) for p in trace.programs],
            "initial": list(workload.initial),
            "max_spawns": workload.max_spawns,
            "timer": workload.timer,
            "kills": workload.kills,
            "progress_bound": workload.progress_bound,
        },
        "choices": [list(c) for c in trace.choices],
        "fair_from": trace.fair_from,
        "steps": trace.steps,
    }
    if trace.violation is not None:
        data["violation"] = {
            "property": trace.violation.property,
            "why": trace.violation.message,
            "witness": {k: _plain(v) for k, v in trace.violation.witness},
            "step": len(trace.choices),
        }
        data["state_difference"] = trace.difference
    return yaml.safe_dump(data, sort_keys=False, width=100)


def _kernel_data(kernel: KernelConfig) -> dict[str, Any]:
    return {k: _plain(v) for k, v in dataclasses.asdict(kernel).items()}


def _plain(value: object) -> Any:
    if isinstance(value, bool | int | str | float) or value is None:
        return value
    if isinstance(value, tuple | list | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def load(text: str, source: str = "<trace>") -> Trace:
    """Parse a trace (safe YAML only); malformed input raises UserError naming the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(data, dict) or data.get("pagingcheck_trace") != FORMAT_VERSION:
        raise UserError(
            f"{source}: not a pagingcheck trace (expected 'pagingcheck_trace: {FORMAT_VERSION}')"
        )
    try:
        hardware = HardwareConfig.from_mapping(data.get("hardware"))
        kernel = KernelConfig.from_mapping(_kernel_from_data(data.get("kernel")))
        raw = data.get("workload")
        if not isinstance(raw, dict) or not isinstance(raw.get("programs"), list):
            raise ConfigError("workload.programs: expected a list of programs")
        programs = tuple(
            program_from_data(p, f"workload.programs[{i}]") for i, p in enumerate(raw["programs"])
        )
        workload = Workload(
            programs,
            tuple(int(i) for i in raw.get("initial", [0])),
            max_spawns=int(raw.get("max_spawns", 0)),
            timer=bool(raw.get("timer", True)),
            kills=bool(raw.get("kills", False)),
            progress_bound=int(raw.get("progress_bound", DEFAULT_PROGRESS_BOUND)),
        )
        choices = [_choice(c, i) for i, c in enumerate(data.get("choices") or [])]
        fair_from = data.get("fair_from")
        if fair_from is not None and (
            not isinstance(fair_from, int) or not 0 <= fair_from <= len(choices)
        ):
            raise ConfigError(f"fair_from: {fair_from!r} is not a choice index")
    except (ConfigError, TypeError, ValueError) as error:
        raise UserError(f"{source}: {error}") from error
    violation = None
    if isinstance(data.get("violation"), dict):
        v = data["violation"]
        violation = Violation(str(v.get("property")), str(v.get("why", "")))
    implementation = data.get("implementation")
    if not isinstance(implementation, str):
        raise UserError(f"{source}: 'implementation' must name the kernel as MODULE:ATTR")
    return Trace(
        hardware,
        kernel,
        programs,
        workload,
        implementation,
        choices,
        list(data.get("steps") or []),
        violation,
        [str(line) for line in data.get("state_difference") or []],
        fair_from,
    )


def _kernel_from_data(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return data


def _choice(data: Any, index: int) -> Choice:
    if not isinstance(data, list) or not data or data[0] not in CHOICE_KINDS:
        raise ConfigError(
            f"choices[{index}]: expected [kind, argument] with kind one of "
            f"{', '.join(CHOICE_KINDS)}, got {data!r}"
        )
    kind = data[0]
    if len(data) != 1 + CHOICE_KINDS[kind] or not all(isinstance(a, int) for a in data[1:]):
        raise ConfigError(f"choices[{index}]: {kind} takes {CHOICE_KINDS[kind]} integer argument")
    return (kind, *data[1:])


def write(trace: Trace, directory: Path, stem: str) -> Path:
    """Write ``trace`` under ``directory`` as ``stem.yaml``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.yaml"
    path.write_text(dump(trace))
    return path


def replay(trace: Trace, factory: KernelFactory) -> RunResult:
    """Re-execute the trace's choices deterministically on ``factory``'s kernel, checking
    everything (progress too, over the fair continuation the trace marks)."""
    return run_choices(trace.config(), factory, trace.choices, trace.programs, trace.fair_from)


def render(trace: Trace, result: RunResult) -> str:
    """A readable step table of a replay."""
    lines = [f"{'step':>4}  {'choice':<12} {'what happened'}"]
    for index, record in enumerate(result.records, start=1):
        if trace.fair_from is not None and index - 1 == trace.fair_from:
            lines.append("      -- fair continuation from here: progress is watched --")
        data = record_to_data(record)
        what = []
        if "retired" in data:
            what.append("retired" if data["retired"] else f"trap {data.get('trap')}")
        if "fault" in data:
            f = data["fault"]
            what.append(f"{f['kind']} at {f['va']} ({f['access']})")
        if "write" in data:
            what.append(f"write {data['write'][1]} -> {data['write'][0]}")
        if "spawned" in data:
            what.append(f"spawned {data['spawned']}")
        what += data.get("events", [])
        lines.append(f"{index:>4}  {_spell(record.choice):<12} {'; '.join(what)}")
    if result.violation is not None:
        lines.append(f"violated at step {result.failing_step}: {result.violation.explain()}")
    elif result.diverged_at is not None:
        lines.append(
            f"no property violated; the trace no longer applies at step {result.diverged_at}: "
            f"choice {_spell(trace.choices[result.diverged_at - 1])} is not enabled"
        )
    else:
        lines.append("no property violated")
    return "\n".join(lines)


def _spell(choice: Choice) -> str:
    return " ".join(str(part) for part in choice)
