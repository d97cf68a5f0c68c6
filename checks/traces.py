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
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from pagingcheck.checks.config import (
    GROWTH_KEYS,
    WORKLOAD_KEYS,
    Budget,
    CheckConfig,
    Limits,
    Workload,
    growth,
    integer,
    known_keys,
    mapping,
    parse_limits,
    parse_shared,
    parse_workload_options,
    words,
)
from pagingcheck.checks.inputs import load_yaml
from pagingcheck.checks.observe import Observed, Violation, plain
from pagingcheck.checks.runner import KernelFactory, RunResult, run_choices
from pagingcheck.checks.system import Choice, StepRecord
from pagingcheck.impl.config import KernelConfig
from pagingcheck.model.asm import disassemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import ConfigError, UserError, quote
from pagingcheck.model.program import Program

FORMAT_VERSION = 1
VERSION = version("pagingcheck")
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
    limits: Limits = field(default_factory=Limits)  # what the kernel could use when it ran
    stderr: str = ""  # the end of a program kernel's standard error (--exec), if it wrote any

    def config(self) -> CheckConfig:
        """The configuration this trace runs under."""
        workload = dataclasses.replace(self.workload, programs=self.programs)
        return CheckConfig(self.hardware, self.kernel, workload, Budget(), limits=self.limits)


def program_to_data(program: Program) -> dict[str, Any]:
    """A program as plain YAML data: words, plus a listing for people."""
    return {
        "name": program.name,
        "text": list(program.text),
        "listing": disassemble(list(program.text)),
        "data": list(program.data),
        "heap_pages": program.heap_pages,
        "stack_pages": program.stack_pages,
        **{key: getattr(program, key) for key in GROWTH_KEYS},
        "entry": program.entry,
        "shared": [dataclasses.asdict(s) for s in program.shared],
    }


_PROGRAM_KEYS = {
    *("name", "text", "listing", "data", "heap_pages", "stack_pages", "entry", "shared"),
    *GROWTH_KEYS,
}


def program_from_data(data: Any, where: str) -> Program:
    """Inverse of :func:`program_to_data`, validating every field's type."""
    data = mapping(data, where)
    known_keys(data, _PROGRAM_KEYS, where)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: expected the program's name")
    if "text" not in data:
        raise ConfigError(f"{where}.text: missing; expected the program's words")
    return Program(
        name,
        words(data["text"], f"{where}.text"),
        words(data.get("data"), f"{where}.data"),
        heap_pages=integer(data.get("heap_pages", 0), f"{where}.heap_pages"),
        stack_pages=integer(data.get("stack_pages", 1), f"{where}.stack_pages"),
        entry=integer(data.get("entry", 0), f"{where}.entry"),
        shared=parse_shared(data.get("shared"), f"{where}.shared"),
        **growth(data, where),
    )


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
        if result.writes:
            data["writes"] = [list(write) for write in result.writes]
    if record.spawned is not None:
        data["spawned"] = record.spawned if isinstance(record.spawned, int) else str(record.spawned)
    if record.completed is not None:
        data["completed"] = transfer(record.completed)
    if record.submitted:
        data["submitted"] = [transfer(request) for request in record.submitted]
    if record.events:
        data["events"] = [
            " ".join(f"{k}={v}" for k, v in dataclasses.asdict(e).items() if v not in (None, ""))
            for e in record.events
        ]
    return data


def transfer(request: Request) -> str:
    """A disk transfer in words: ``read block 3 -> frame 17 (request 0)``."""
    way = "->" if request.op == "read" else "<-"
    return f"{request.op} block {request.block} {way} frame {request.pfn} (request {request.id})"


def from_run(
    config: CheckConfig,
    implementation: str,
    choices: list[Choice],
    result: RunResult,
    stderr: str = "",
) -> Trace:
    """A trace of a finished run (the choices up to the failing step), with the end of the
    kernel program's standard error when it has one."""
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
        config.limits,
        stderr,
    )


def dump(trace: Trace) -> str:
    """The trace as YAML text."""
    configuration = _configuration(trace)
    data: dict[str, Any] = {
        "pagingcheck_trace": FORMAT_VERSION,
        "pagingcheck_version": VERSION,
        "config_digest": digest(configuration),
        "implementation": trace.implementation,
        **configuration,
        "choices": [list(c) for c in trace.choices],
        "fair_from": trace.fair_from,
        "steps": trace.steps,
    }
    if trace.violation is not None:
        # As every command's JSON gives it, less the trace file: this is the file.
        violation = trace.violation.to_json(len(trace.choices))
        del violation["trace"]
        data["violation"] = violation
        data["state_difference"] = trace.difference
    if trace.stderr:
        data["kernel_stderr"] = trace.stderr
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Safe YAML, with text of several lines (a kernel's traceback, its stderr) as a
    literal block, readable in the file as it was printed."""


def _text_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text_block)


def _configuration(trace: Trace) -> dict[str, Any]:
    """The sections of a trace that decide how it runs, as plain data."""
    workload = trace.workload
    return {
        "hardware": trace.hardware.to_mapping(),
        "kernel": _kernel_data(trace.kernel),
        "workload": workload_to_data(workload, trace.programs),
        "limits": dataclasses.asdict(trace.limits),
    }


def workload_to_data(workload: Workload, programs: Sequence[Program]) -> dict[str, Any]:
    """A workload as plain data (``programs`` are its programs as run: a trace's own)."""
    data: dict[str, Any] = {
        "programs": [program_to_data(p) for p in programs],
        "initial": list(workload.initial),
        "max_spawns": workload.max_spawns,
        "timer": workload.timer,
        "kills": workload.kills,
        "progress_bound": workload.progress_bound,
    }
    if workload.console_input:  # left out when empty, as traces written before READ had it
        data["input"] = "".join(map(chr, workload.console_input))
    if workload.files:
        data["files"] = {name: list(words) for name, words in workload.files}
    return data


def workload_from_data(data: object, hardware: HardwareConfig) -> Workload:
    """The workload ``data`` (as :func:`workload_to_data` gives it) describes, its programs
    checked against ``hardware``; ConfigError for anything else."""
    raw = mapping(data, "workload")
    known_keys(raw, WORKLOAD_KEYS, "workload")
    programs = tuple(
        program_from_data(p, f"workload.programs[{i}]")
        for i, p in enumerate(_list(raw.get("programs"), "workload.programs"))
    )
    if not programs:
        raise ConfigError("workload.programs: expected a non-empty list of programs")
    for program in programs:
        program.validate(hardware.page_words, hardware.va_pages)
    return Workload(programs, **parse_workload_options(raw, len(programs)))


def digest(configuration: dict[str, Any]) -> str:
    """A short digest of a trace's configuration sections: an edited trace is told apart."""
    canonical = json.dumps(configuration, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _kernel_data(kernel: KernelConfig) -> dict[str, Any]:
    return {k: plain(v) for k, v in dataclasses.asdict(kernel).items()}


def load(text: str, source: str = "<trace>", any_version: bool = False) -> Trace:
    """Parse a trace (safe YAML only). Anything malformed, missing, of the wrong type, edited
    since it was written, or (unless ``any_version``) written by another version of
    pagingcheck raises UserError naming the problem."""
    data = load_yaml(text, source)
    if not isinstance(data, dict) or data.get("pagingcheck_trace") != FORMAT_VERSION:
        raise UserError(
            f"{source}: not a pagingcheck trace (expected 'pagingcheck_trace: {FORMAT_VERSION}')"
        )
    try:
        return _parse(data, any_version)
    except UserError as error:
        raise UserError(f"{source}: {error}") from None


_SECTIONS = {
    "pagingcheck_trace",
    "pagingcheck_version",
    "config_digest",
    "implementation",
    "hardware",
    "kernel",
    "workload",
    "limits",
    "choices",
    "fair_from",
    "steps",
    "violation",
    "state_difference",
    "kernel_stderr",
}


def _parse(data: dict[str, Any], any_version: bool) -> Trace:
    known_keys(data, _SECTIONS, "trace")
    for section in ("implementation", "hardware", "kernel", "workload", "limits", "choices"):
        if section not in data:
            raise ConfigError(f"{section}: missing; a trace records every section it runs with")
    _check_origin(data, any_version)
    implementation = data["implementation"]
    if not isinstance(implementation, str):
        raise ConfigError("implementation: expected the kernel as MODULE:ATTR")
    hardware = HardwareConfig.from_mapping(mapping(data["hardware"], "hardware"))
    kernel = KernelConfig.from_mapping(_kernel_from_data(mapping(data["kernel"], "kernel")))
    workload = workload_from_data(data["workload"], hardware)
    programs = workload.programs
    choices = [_choice(c, i) for i, c in enumerate(_list(data["choices"], "choices"))]
    fair_from = data.get("fair_from")
    if fair_from is not None:
        integer(fair_from, "fair_from (a choice index)", 0, len(choices))
    return Trace(
        hardware,
        kernel,
        programs,
        workload,
        implementation,
        choices,
        [mapping(s, f"steps[{i}]") for i, s in enumerate(_list(data.get("steps"), "steps"))],
        _violation(data.get("violation")),
        [str(line) for line in _list(data.get("state_difference"), "state_difference")],
        fair_from,
        parse_limits(data["limits"]),
        _text(data.get("kernel_stderr", ""), "kernel_stderr"),
    )


def _check_origin(data: dict[str, Any], any_version: bool) -> None:
    """Refuse a trace edited since it was written, or written by another pagingcheck."""
    recorded = data.get("config_digest")
    if recorded is not None:
        present = {k: data.get(k) for k in ("hardware", "kernel", "workload", "limits")}
        if recorded != digest(present):
            raise ConfigError(
                "config_digest: the configuration was edited after the trace was written; "
                "to replay an edited trace on purpose, delete its config_digest line"
            )
    version = data.get("pagingcheck_version")
    if version is not None and version != VERSION and not any_version:
        raise ConfigError(
            f"pagingcheck_version: written by pagingcheck {quote(version)}, this is {VERSION}; "
            f"replay it with that version, or pass --any-version to try anyway"
        )


def _violation(data: Any) -> Violation | None:
    if data is None:
        return None
    data = mapping(data, "violation")
    prop, why = data.get("property"), data.get("why", "")
    if not isinstance(prop, str) or not isinstance(why, str):
        raise ConfigError("violation: expected the property's name and why it failed, as text")
    return Violation(prop, why, traceback=_text(data.get("traceback", ""), "violation.traceback"))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _kernel_from_data(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _choice(data: Any, index: int) -> Choice:
    if (
        not isinstance(data, list)
        or not data
        or not isinstance(data[0], str)
        or (data[0] not in CHOICE_KINDS)
    ):
        raise ConfigError(
            f"choices[{index}]: expected [kind, argument] with kind one of "
            f"{', '.join(CHOICE_KINDS)}, got {quote(data)}"
        )
    kind = data[0]
    if len(data) != 1 + CHOICE_KINDS[kind] or not all(
        isinstance(a, int) and not isinstance(a, bool) and 0 <= a < 1 << 32 for a in data[1:]
    ):
        raise ConfigError(
            f"choices[{index}]: {kind} takes {CHOICE_KINDS[kind]} argument(s), a number "
            f"such as a pid or request"
        )
    return (kind, *data[1:])


WRITING = threading.Lock()
"""Held while a trace file is written, so that an interrupted run never ends in the middle."""


def write(trace: Trace, directory: Path, stem: str) -> Path:
    """Write ``trace`` under ``directory`` as ``stem.yaml``, or ``stem-2.yaml`` and so on if
    that name is taken: a trace never overwrites another run's. Return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = dump(trace)
    for number in itertools.count(1):
        path = directory / (f"{stem}.yaml" if number == 1 else f"{stem}-{number}.yaml")
        try:
            with WRITING, path.open("x") as stream:
                stream.write(text)
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def writable_folder(directory: Path) -> Path:
    """``directory``, created if need be, once it is known traces can be written there:
    checked before a run, so a bad ``--traces`` never costs the run."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--traces {directory}: is a file; name a folder for the traces")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--traces {directory}: cannot create it: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"--traces {directory}: cannot write there; name a writable folder")
    return directory


def replay(
    trace: Trace, factory: KernelFactory, watch: Callable[[Observed], None] | None = None
) -> RunResult:
    """Re-execute the trace's choices deterministically on ``factory``'s kernel, checking
    everything (progress too, over the fair continuation the trace marks); ``watch`` is
    shown each state on the way (see :func:`~pagingcheck.checks.runner.run_choices`)."""
    return run_choices(
        trace.config(), factory, trace.choices, trace.programs, trace.fair_from, watch=watch
    )


def render(trace: Trace, result: RunResult) -> str:
    """A readable step table of a replay."""
    lines = [f"{'step':>4}  {'choice':<12} {'what happened'}"]
    for index, record in enumerate(result.records, start=1):
        if trace.fair_from is not None and index - 1 == trace.fair_from:
            lines.append("      -- fair continuation from here: progress is watched --")
        lines.append(f"{index:>4}  {spell(record.choice):<12} {'; '.join(happened(record))}")
    if result.violation is not None:
        lines.append(f"violated at step {result.failing_step}: {result.violation.explain()}")
        if result.violation.traceback:
            lines.append("the kernel's traceback (most recent call last):")
            lines += [f"  {line}" for line in result.violation.traceback.splitlines()]
        if result.difference:
            lines.append("what the failing step changed:")
            lines += [f"  {change}" for change in result.difference]
        if result.state:
            lines.append("the state after it:")
            lines += [f"  {line}" for line in result.state]
    elif result.diverged_at is not None:
        lines.append(
            f"no property violated; the trace no longer applies at step {result.diverged_at}: "
            f"choice {spell(trace.choices[result.diverged_at - 1])} is not enabled"
        )
    else:
        lines.append("no property violated")
    return "\n".join(lines)


def happened(record: StepRecord) -> list[str]:
    """What one step did, in short phrases: retired or trapped, the fault, the memory
    write, the process spawned, the disk transfers that ended and started, the events."""
    data = record_to_data(record)
    what = []
    if "retired" in data:
        what.append("retired" if data["retired"] else f"trap {data.get('trap')}")
    if "fault" in data:
        f = data["fault"]
        what.append(f"{f['kind']} at {f['va']} ({f['access']})")
    what += [f"write {value} -> {va}" for va, value in data.get("writes", [])]
    if "spawned" in data:
        what.append(f"spawned {data['spawned']}")
    if "completed" in data:
        what.append(f"disk done: {data['completed']}")
    what += [f"disk started: {request}" for request in data.get("submitted", [])]
    what += data.get("events", [])
    return what


def spell(choice: Choice) -> str:
    """A choice as words: ``run 1``, ``timer``."""
    return " ".join(str(part) for part in choice)
