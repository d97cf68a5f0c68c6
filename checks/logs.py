"""Trace validation: is a kernel's log a behaviour of the system?

A log (docs/logs.md) is what a kernel or an emulator wrote while it ran a
workload on pagingcheck's hardware: the hardware's steps (an instruction, a
disk completion, the timer, a spawn or a kill), the calls into the kernel
they caused, each call's port operations and what it returned, and the
kernel's own account of itself (its view and runnable processes) where that
changed. :func:`check_log` runs the log's steps on the modelled hardware,
with a :class:`LogKernel` that answers each call by carrying out the port
operations the log lists. So the log is checked by the very checker every
kernel faces (invariants, refinement, restart exactness), and wherever the
hardware and the log disagree (the hardware traps where the log has a
return, a probe answers otherwise, a step is impossible) the log is no
behaviour of the system, reported at its first line that nothing fits.

Steps the log leaves out are inferred where only one behaviour fits: a
call's step (``dispatch`` of a process is its run step, ``on_disk`` the
completion of that request, ...); a dispatch of the process already on the
CPU that does nothing; and the instructions a process retires between two
logged calls, up to the ``on_trap`` that ends them.

:class:`LoggingKernel` writes such a log of any kernel (``pagingcheck
replay TRACE --write-log FILE``), so a log from elsewhere can be compared
with pagingcheck's own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pagingcheck.checks import protocol
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.config import load as load_config
from pagingcheck.checks.contained import (
    PORT_OPERATIONS,
    HostProcess,
    RemoteKernel,
    _checked,
    hardware_json,
    kernel_json,
)
from pagingcheck.checks.inputs import read_text
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.progress import FairDriver
from pagingcheck.checks.runner import KernelFactory, Run
from pagingcheck.checks.system import Choice, KernelFailed
from pagingcheck.checks.traces import workload_from_data, workload_to_data
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel, KernelEvent, KernelView, SpawnRefused
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import DiskFile
from pagingcheck.model.errors import PortError, UserError, quote
from pagingcheck.model.isa import ArchState
from pagingcheck.model.port import Port
from pagingcheck.model.program import Image, Program
from pagingcheck.model.traps import Access, Fault, TrapFrame

#: The version of the log format this module reads and writes.
LOG_VERSION = 1
#: The property a log breaks where no behaviour of the system fits it.
LOG_FITS = "log_fits"
#: The longest run of unlogged instructions inferred before a logged trap.
MAX_INFERRED_RUN = 100_000
#: What each kind of line may hold besides its kind key.
_LINE_KEYS: dict[str, frozenset[str]] = {
    "step": frozenset(),
    "call": frozenset({"args"}),
    "port": frozenset({"args", "value", "port_error"}),
    "return": frozenset({"events", "view", "runnable"}),
}
#: The step each call stands for, when the log leaves its step line out.
_STEP_OF_CALL = ("dispatch", "on_disk", "on_timer", "spawn", "kill", "on_trap")


@dataclass(frozen=True)
class Line:
    """One line of a log: its number in the file and its object."""

    number: int
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """``step``, ``call``, ``port`` or ``return``."""
        return next(key for key in _LINE_KEYS if key in self.data)

    def describe(self) -> str:
        """The line, short, for messages."""
        return f"line {self.number} ({quote(json.dumps(self.data, separators=(',', ':')))})"


@dataclass(frozen=True)
class Log:
    """A parsed log: its header's machine and workload (None where the header does not
    say) and its lines."""

    hardware: dict[str, Any] | None
    kernel: dict[str, Any] | None
    workload: dict[str, Any] | None
    lines: tuple[Line, ...]
    source: str = "the log"

    def config(self) -> CheckConfig | None:
        """The configuration the header gives whole (machine, kernel and workload), if it
        does; UserError for one that is not a configuration."""
        if self.hardware is None or self.kernel is None or self.workload is None:
            return None
        try:
            hardware = HardwareConfig.from_mapping(self.hardware)
            kernel = KernelConfig.from_mapping(self.kernel)
            workload = workload_from_data(self.workload, hardware)
        except UserError as error:
            raise UserError(f"{self.source}: line 1: the header's {error}") from None
        return CheckConfig(hardware, kernel, workload)


def parse(text: str, source: str) -> Log:
    """The log in ``text``; UserError naming the line for anything that is not one."""
    rows = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not rows:
        raise UserError(f'{source}: the log is empty (its first line is {{"log": 1}})')
    objects = [(n, _object(raw, n, source)) for n, raw in rows]
    number, header = objects[0]
    if header.get("log") != LOG_VERSION:
        raise UserError(
            f'{source}: line {number}: a log starts with {{"log": {LOG_VERSION}}}, '
            f"not {quote(rows[0][1])}"
        )
    lines = tuple(Line(n, _line(data, n, source)) for n, data in objects[1:])
    return Log(
        _section(header, "hardware", source),
        _section(header, "kernel", source),
        _section(header, "workload", source),
        lines,
        source,
    )


def _object(raw: str, number: int, source: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise UserError(f"{source}: line {number}: not JSON: {quote(raw)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: line {number}: not a JSON object: {quote(raw)}")
    return data


def _line(data: dict[str, Any], number: int, source: str) -> dict[str, Any]:
    kinds = [key for key in _LINE_KEYS if key in data]
    if len(kinds) != 1:
        raise UserError(
            f"{source}: line {number}: a line has exactly one of "
            f"{', '.join(repr(k) for k in _LINE_KEYS)}; this one has {len(kinds)}"
        )
    kind = kinds[0]
    extra = set(data) - {kind} - _LINE_KEYS[kind]
    if extra:
        raise UserError(f"{source}: line {number}: a {kind} line has no field {sorted(extra)[0]!r}")
    if kind == "step" and not _is_choice(data["step"]):
        raise UserError(
            f'{source}: line {number}: a step is a list such as ["run", 1], ["disk", 0], '
            f'["timer"], ["spawn", 0] or ["kill", 2], not {quote(data["step"])}'
        )
    if kind == "call" and data["call"] not in (*_STEP_OF_CALL, "boot"):
        raise UserError(f"{source}: line {number}: no kernel call named {quote(data['call'])}")
    if kind == "port" and (
        data["port"] not in PORT_OPERATIONS or not isinstance(data.get("args", []), list)
    ):
        raise UserError(f"{source}: line {number}: no port operation {quote(data['port'])}")
    return data


def _is_choice(value: object) -> bool:
    if (
        not isinstance(value, list)
        or not value
        or value[0] not in ("run", "disk", "timer", "spawn", "kill")
    ):
        return False
    arguments = value[1:]
    wanted = 0 if value[0] == "timer" else 1
    return len(arguments) == wanted and all(
        isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in arguments
    )


def _section(header: dict[str, Any], key: str, source: str) -> dict[str, Any] | None:
    value = header.get(key)
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{source}: line 1: the header's {key!r} is an object")
    return value


def read(path: Path) -> Log:
    """The log in the file ``path``."""
    return parse(read_text(path, "the log"), str(path))


# -- the kernel the log describes ----------------------------------------------------------


class LogKernel(RemoteKernel):
    """A kernel whose every call is read from a log: its port operations are carried out
    on the real port (so the hardware checks them), its answers are the log's.

    Where the log and the hardware part ways it raises :data:`LOG_FITS`; a port rule the
    log breaks is ``port_rules``, as for any kernel.
    """

    #: Nothing of the user's runs here, so the checker sets no time limit.
    limits_itself = True

    def __init__(self, lines: tuple[Line, ...]) -> None:
        self.lines = lines
        self.at = 0  # the next line to read
        self.view_data: Any = None
        self.runnable_data: Any = []
        self.inferred_calls = 0

    def peek(self) -> Line | None:
        """The next unread line, if any."""
        return self.lines[self.at] if self.at < len(self.lines) else None

    def last(self) -> Line | None:
        """The last line read, if any."""
        return self.lines[self.at - 1] if self.at else None

    def _call(self, name: str, port: Port, args: dict[str, Any]) -> dict[str, Any]:
        line = self.peek()
        if line is None or line.data.get("call") != name:
            said = self.view_data if isinstance(self.view_data, dict) else {}
            if name == "dispatch" and args["pid"] == said.get("current"):
                self.inferred_calls += 1  # a dispatch that changes nothing goes unlogged
                return {"ok": None, "events": []}
            raise _unfit(line, f"the hardware calls the kernel's {name}() here")
        self.at += 1
        logged = line.data.get("args")
        if logged is not None and _json(logged) != _json(args):
            raise _unfit(line, f"{name}() is called with {_short(args)} here, not as the log says")
        while (operation := self.peek()) is not None and operation.kind == "port":
            self.at += 1
            self._carry_out(port, operation)
        end = self.peek()
        if end is None or end.kind != "return":
            raise _unfit(end, f"the log gives no return for the {name}() call of {line.describe()}")
        self.at += 1
        if "view" in end.data:
            self.view_data = end.data["view"]
        if "runnable" in end.data:
            self.runnable_data = end.data["runnable"]
        return {"ok": end.data["return"], "events": end.data.get("events", [])}

    def _carry_out(self, port: Port, line: Line) -> None:
        name, args = str(line.data["port"]), line.data.get("args", [])
        try:
            value = HostProcess._carry_out(port, name, args)
        except PortError as error:
            if "port_error" in line.data:
                return  # the kernel was refused, as the log says it was
            raise KernelFailed("port_rules", f"{line.describe()}: {error}") from None
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise _unfit(line, f"its arguments are not those of {name}: {error}") from None
        if "port_error" in line.data:
            raise _unfit(line, f"{name} is carried out here; the log says it was refused")
        if "value" in line.data and _json(line.data["value"]) != _json(value):
            raise _unfit(line, f"{name} answers {_short(value)} here")

    def runnable(self) -> tuple[int, ...]:
        """The runnable pids the log last gave."""
        return _checked(lambda: protocol.check_runnable(self.runnable_data))

    def view(self) -> KernelView:
        """The view the log last gave."""
        if self.view_data is None:
            raise _unfit(self.last(), "the log has given no view of the kernel yet")
        return _checked(lambda: protocol.decode_view(self.view_data))

    def copy(self) -> LogKernel:
        """The same position in the same log."""
        twin = LogKernel(self.lines)
        twin.at, twin.view_data, twin.runnable_data = self.at, self.view_data, self.runnable_data
        twin.inferred_calls = self.inferred_calls
        return twin

    def fingerprint(self) -> bytes:
        """The position in the log and what the kernel last said of itself."""
        said = json.dumps([self.at, self.view_data, self.runnable_data], sort_keys=True)
        return hashlib.blake2b(said.encode(), digest_size=16).digest()


def _unfit(line: Line | None, why: str) -> KernelFailed:
    where = "the end of the log" if line is None else line.describe()
    return KernelFailed(LOG_FITS, f"{where}: no behaviour of the system fits: {why}")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _short(value: object) -> str:
    return quote(_json(value))


# -- checking a log --------------------------------------------------------------------------


@dataclass
class LogResult:
    """What checking a log found."""

    lines: int
    steps: int = 0
    inferred_steps: int = 0
    inferred_calls: int = 0
    violation: Violation | None = None
    line: int | None = None  # the log line the violation is reported at

    @property
    def ok(self) -> bool:
        """Whether the log is a behaviour of the system with no property violated."""
        return self.violation is None

    def to_json(self) -> dict[str, Any]:
        """The result as ``check-log --json`` gives it, its violation apart."""
        return {
            "ok": self.ok,
            "lines": self.lines,
            "steps": self.steps,
            "inferred_steps": self.inferred_steps,
            "inferred_calls": self.inferred_calls,
        }

    def violation_json(self) -> dict[str, Any] | None:
        """The violation as every command's JSON gives it, with the log line it is
        reported at (None when the log passed)."""
        if self.violation is None:
            return None
        return {**self.violation.to_json(self.steps), "line": self.line}


def check_log(config: CheckConfig, log: Log) -> LogResult:
    """Run ``log`` on ``config``'s machine and workload with every check; stop at the
    first line that nothing fits or that breaks a property."""
    kernel = LogKernel(log.lines)
    result = LogResult(lines=len(log.lines) + 1)
    run = Run(config, lambda hardware, kernel_config: kernel, None)
    while not run.failed and (line := kernel.peek()) is not None:
        failure = _follow(run, kernel, line, result)
        if failure is not None:
            run.fail(failure)
    result.steps = len(run.choices)
    result.inferred_calls = kernel.inferred_calls
    if run.result.violation is not None:
        result.violation = run.result.violation
        reached = kernel.last()
        result.line = reached.number if reached is not None else 1
        if result.violation.property == LOG_FITS:
            result.line = _line_named(result.violation.message) or result.line
    return result


def _follow(run: Run, kernel: LogKernel, line: Line, result: LogResult) -> Violation | None:
    """Take the step ``line`` starts (logged, or implied by its call); a violation of
    the fit found on the way."""
    if line.kind == "step":
        kernel.at += 1
        return _take(run, tuple(line.data["step"]), line)
    if line.kind != "call":
        return _unfit(line, f"a {line.kind} line outside any call").violation()
    name = line.data["call"]
    if name == "on_trap":
        return _run_to_trap(run, kernel, line, result)
    choice = _step_of(run, line)
    if choice is None:
        return _unfit(line, f"no step of the hardware calls {name}() now").violation()
    result.inferred_steps += 1
    return _take(run, choice, line)


def _take(run: Run, choice: Choice, line: Line) -> Violation | None:
    enabled = run.enabled()
    if run.failed:
        return None
    if choice not in enabled:
        spelled = ", ".join(_json(list(c)) for c in enabled) or "none"
        why = f"step {_json(list(choice))} is not possible here (possible: {spelled})"
        return _unfit(line, why).violation()
    run.take(choice)
    return None


def _step_of(run: Run, line: Line) -> Choice | None:
    """The step a logged call stands for (None when the hardware has no such step now)."""
    assert run.checker is not None
    name, args = line.data["call"], line.data.get("args") or {}
    machine = run.checker.system.machine
    if name == "dispatch" and isinstance(args.get("pid"), int):
        return ("run", args["pid"])
    if name == "kill" and isinstance(args.get("pid"), int):
        return ("kill", args["pid"])
    if name == "on_timer":
        return ("timer",)
    if name == "on_disk":
        wanted = (args.get("request") or {}).get("id")
        pending = machine.disk.pending
        indices = [i for i in machine.disk.completable() if pending[i].id == wanted]
        if wanted is None and len(machine.disk.completable()) == 1:
            indices = list(machine.disk.completable())
        return ("disk", indices[0]) if indices else None
    if name == "spawn":
        return _spawn_step(run, args)
    return None


def _spawn_step(run: Run, args: dict[str, Any]) -> Choice | None:
    assert run.checker is not None
    images = run.checker.system.images
    first = (args.get("image") or {}).get("first")
    matches = [i for i, image in enumerate(images) if first is None or image.first == first]
    return ("spawn", matches[0]) if len(matches) == 1 else None


def _run_to_trap(run: Run, kernel: LogKernel, line: Line, result: LogResult) -> Violation | None:
    """Run the process on the CPU, its unlogged instructions inferred, until the logged
    ``on_trap`` call has been read."""
    assert run.checker is not None
    start = kernel.at
    for _ in range(MAX_INFERRED_RUN):
        current = run.checker.observed.view.current
        if current is None:
            return _unfit(line, "a trap, but no process is on the CPU").violation()
        result.inferred_steps += 1
        violation = _take(run, ("run", current), line)
        if violation is not None or run.failed or kernel.at > start:
            return violation
    why = f"process {current} runs {MAX_INFERRED_RUN} instructions and never traps"
    return _unfit(line, why).violation()


def _line_named(message: str) -> int | None:
    """The line a :data:`LOG_FITS` message starts by naming (see :func:`_unfit`)."""
    if message.startswith("line "):
        number = message[5:].split(" ", 1)[0]
        return int(number) if number.isdigit() else None
    return None


def choose_config(config: CheckConfig | None, log: Log, variant: str | None) -> CheckConfig:
    """The machine and workload the log ran on: with ``config``, the variant named, else
    the one whose hardware and kernel the log's header gives, else the configuration
    itself if it has one variant; without, the header's own, else the built-in one."""
    if config is None:
        given = log.config()
        if given is not None and variant is None:
            return given
        config = load_config(None)
    runs = config.expand()
    if variant is not None:
        named = [run for name, run in runs if name == variant]
        if not named:
            known = ", ".join(name for name, _ in runs)
            raise UserError(
                f"--variant {variant!r}: no such variant; this configuration has: {known}"
            )
        chosen = named[0]
        _same_machine(chosen, log, variant)
        return chosen
    if len(runs) == 1:
        _same_machine(runs[0][1], log, runs[0][0])
        return runs[0][1]
    if log.hardware is None:
        raise UserError(
            "the configuration has several variants and the log's header does not say which "
            "machine it ran on: name one with --variant"
        )
    fitting = [run for _, run in runs if _difference(run, log) is None]
    if len(fitting) != 1:
        raise UserError(
            f"{'no' if not fitting else 'more than one'} variant of the configuration is the "
            "machine the log's header gives: name one with --variant"
        )
    return fitting[0]


def _same_machine(config: CheckConfig, log: Log, name: str) -> None:
    difference = _difference(config, log)
    if difference is not None:
        raise UserError(f"the log was written on another machine than {name!r}: {difference}")


def _difference(config: CheckConfig, log: Log) -> str | None:
    for section, ours, theirs in (
        ("hardware", hardware_json(config.hardware), log.hardware),
        ("kernel", kernel_json(config.kernel), log.kernel),
    ):
        for key, value in sorted((theirs or {}).items()):
            if key in ours and ours[key] != value:
                return f"{section}.{key} is {ours[key]!r} here, {value!r} in the log"
    return None


# -- writing a log ---------------------------------------------------------------------------


class LoggingPort(Port):
    """A port that logs each operation (reads and the registers excepted: they change
    nothing) and carries it out on ``inner``. A value is logged with the answer it got."""

    def __init__(self, inner: Port, emit: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.emit = emit

    def _logged(self, name: str, *args: Any, value: Any = None, answered: bool = False) -> None:
        line: dict[str, Any] = {"port": name, "args": list(args)}
        if answered:
            line["value"] = value
        self.emit(line)

    def read(self, pa: int) -> int:
        """The word at ``pa`` (not logged)."""
        return self.inner.read(pa)

    def write(self, pa: int, value: int) -> None:
        """Logged, then carried out."""
        self._logged("write", pa, value)
        self.inner.write(pa, value)

    def fill(self, pfn: int, value: int) -> None:
        """Logged, then carried out."""
        self._logged("fill", pfn, value)
        self.inner.fill(pfn, value)

    def load_context(self, root: int, asid: int) -> None:
        """Logged, then carried out."""
        self._logged("load_context", root, asid)
        self.inner.load_context(root, asid)

    def probe(self, va: int, access: Access) -> int | Fault:
        """Carried out, then logged with its answer."""
        answer = self.inner.probe(va, access)
        self._logged("probe", va, access.value, value=protocol.encode_fault(answer), answered=True)
        return answer

    def tlb_insert(self, asid: int, vpn: int, pte_addr: int, pte: int) -> None:
        """Logged, then carried out."""
        self._logged("tlb_insert", asid, vpn, pte_addr, pte)
        self.inner.tlb_insert(asid, vpn, pte_addr, pte)

    def tlb_invalidate(self, asid: int, vpn: int) -> None:
        """Logged, then carried out."""
        self._logged("tlb_invalidate", asid, vpn)
        self.inner.tlb_invalidate(asid, vpn)

    def tlb_flush(self) -> None:
        """Logged, then carried out."""
        self._logged("tlb_flush")
        self.inner.tlb_flush()

    def tlb_flush_asid(self, asid: int) -> None:
        """Logged, then carried out."""
        self._logged("tlb_flush_asid", asid)
        self.inner.tlb_flush_asid(asid)

    def context(self) -> ArchState:
        """The CPU's registers (not logged)."""
        return self.inner.context()

    def resume(self, state: ArchState) -> None:
        """Logged, then carried out."""
        self._logged("resume", protocol.encode_state(state))
        self.inner.resume(state)

    def submit(self, op: str, block: int, pfn: int) -> int:
        """Carried out, then logged with the request's id."""
        ident = self.inner.submit(op, block, pfn)
        self._logged("submit", op, block, pfn, value=ident, answered=True)
        return ident

    def set_timer(self, on: bool) -> None:
        """Logged, then carried out."""
        self._logged("set_timer", on)
        self.inner.set_timer(on)

    def console_write(self, byte: int) -> None:
        """Logged, then carried out."""
        self._logged("console_write", byte)
        self.inner.console_write(byte)

    def console_read(self) -> int | None:
        """Carried out, then logged with the byte it took."""
        byte = self.inner.console_read()
        self._logged("console_read", value=byte, answered=True)
        return byte

    def register_space(self, asid: int, root: int) -> None:
        """Logged, then carried out."""
        self._logged("register_space", asid, root)
        self.inner.register_space(asid, root)

    def release_space(self, asid: int) -> None:
        """Logged, then carried out."""
        self._logged("release_space", asid)
        self.inner.release_space(asid)

    def image(self, index: int) -> Image | None:
        """The program image at workload position ``index`` (logged with its answer)."""
        image = self.inner.image(index)
        answer = None if image is None else protocol.encode_image(image)
        self._logged("image", index, value=answer, answered=True)
        return image

    def file(self, index: int) -> DiskFile | None:
        """The workload's file number ``index`` (logged with its answer)."""
        file = self.inner.file(index)
        answer = None if file is None else protocol.encode_file(file)
        self._logged("file", index, value=answer, answered=True)
        return file


class LoggingKernel:
    """``inner``, with each call, its port operations and its return written to ``log``,
    and the kernel's view and runnable processes after the call where they changed."""

    def __init__(self, inner: Kernel, log: LogWriter) -> None:
        self.inner = inner
        self.log = log

    def _logged(
        self, name: str, args: dict[str, Any], port: Port, call: Callable[[Port], Any]
    ) -> Any:
        self.log.emit({"call": name, "args": args})
        answer = call(LoggingPort(port, self.log.emit))
        returned = protocol.encode_spawned(answer) if name == "spawn" else None
        events = () if name == "spawn" else answer
        end: dict[str, Any] = {"return": returned, "events": protocol.encode_events(events)}
        view = protocol.encode_view(self.inner.view())
        runnable = list(self.inner.runnable())
        if view != self.log.view:
            end["view"] = self.log.view = view
        if runnable != self.log.runnable:
            end["runnable"] = self.log.runnable = runnable
        self.log.emit(end)
        return answer

    def boot(self, port: Port) -> tuple[KernelEvent, ...]:
        """The inner kernel's boot, logged."""
        return self._logged("boot", {}, port, self.inner.boot)  # type: ignore[no-any-return]

    def spawn(self, port: Port, image: Image) -> int | SpawnRefused:
        """The inner kernel's spawn, logged."""
        args = {"image": protocol.encode_image(image)}
        return self._logged(  # type: ignore[no-any-return]
            "spawn", args, port, lambda p: self.inner.spawn(p, image)
        )

    def dispatch(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """The inner kernel's dispatch, logged."""
        return self._logged(  # type: ignore[no-any-return]
            "dispatch", {"pid": pid}, port, lambda p: self.inner.dispatch(p, pid)
        )

    def on_trap(self, port: Port, trap: TrapFrame) -> tuple[KernelEvent, ...]:
        """The inner kernel's trap handler, logged."""
        args = {"trap": protocol.encode_trap(trap)}
        return self._logged(  # type: ignore[no-any-return]
            "on_trap", args, port, lambda p: self.inner.on_trap(p, trap)
        )

    def on_disk(self, port: Port, request: Any) -> tuple[KernelEvent, ...]:
        """The inner kernel's disk completion handler, logged."""
        args = {"request": protocol.encode_request(request)}
        return self._logged(  # type: ignore[no-any-return]
            "on_disk", args, port, lambda p: self.inner.on_disk(p, request)
        )

    def on_timer(self, port: Port) -> tuple[KernelEvent, ...]:
        """The inner kernel's timer handler, logged."""
        return self._logged("on_timer", {}, port, self.inner.on_timer)  # type: ignore[no-any-return]

    def kill(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """The inner kernel's kill, logged."""
        return self._logged(  # type: ignore[no-any-return]
            "kill", {"pid": pid}, port, lambda p: self.inner.kill(p, pid)
        )

    def runnable(self) -> tuple[int, ...]:
        """The inner kernel's."""
        return self.inner.runnable()

    def view(self) -> KernelView:
        """The inner kernel's."""
        return self.inner.view()

    def copy(self) -> LoggingKernel:
        """Not used: a log follows one run."""
        raise NotImplementedError("a logged kernel follows one run and is not copied")

    def fingerprint(self) -> bytes:
        """The inner kernel's."""
        return self.inner.fingerprint()


@dataclass
class LogWriter:
    """Where log lines go, and what the kernel last said of itself."""

    stream: IO[str]
    view: Any = None
    runnable: list[int] | None = None
    lines: int = 0

    def emit(self, line: dict[str, Any]) -> None:
        """Write one line."""
        self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.lines += 1

    def header(self, config: CheckConfig, programs: Sequence[Program]) -> None:
        """The first line: the format's version, the machine and the workload."""
        self.emit(
            {
                "log": LOG_VERSION,
                "hardware": hardware_json(config.hardware),
                "kernel": kernel_json(config.kernel),
                "workload": workload_to_data(config.workload, programs),
            }
        )


def write_log(
    config: CheckConfig,
    factory: KernelFactory,
    stream: IO[str],
    choices: Iterable[Choice] | None = None,
    max_steps: int = 10_000,
    programs: Sequence[Program] | None = None,
) -> Run:
    """Run ``factory``'s kernel on ``config`` with every check and log it to ``stream``:
    the ``choices`` given, else fair choices until nothing is left to run (at most
    ``max_steps``). Returns the run (its violation, if the kernel had one)."""
    writer = LogWriter(stream)
    writer.header(config, config.workload.programs if programs is None else programs)

    def logged(hardware: HardwareConfig, kernel: KernelConfig) -> Kernel:
        return LoggingKernel(factory(hardware, kernel), writer)

    run = Run(config, logged, programs)
    plan = iter(choices) if choices is not None else None
    driver = FairDriver()
    for _ in range(max_steps):
        if run.failed:
            break
        enabled = run.enabled()
        choice = next(plan, None) if plan is not None else driver.choose(enabled)
        if choice is None or choice not in enabled:
            break
        writer.emit({"step": list(choice)})
        run.take(choice)
    return run


def describe(result: LogResult) -> str:
    """The verdict in words."""
    inferred = (
        f"{result.inferred_steps} steps and {result.inferred_calls} calls inferred"
        if result.inferred_steps or result.inferred_calls
        else "nothing inferred"
    )
    if result.violation is None:
        return f"log OK: {result.lines} lines, {result.steps} steps checked ({inferred})"
    return (
        f"log rejected at line {result.line}: {result.violation.explain()}\n"
        f"({result.steps} steps checked before it, {inferred})"
    )
