"""Kernels in any language: a program that speaks the process protocol on stdin and stdout.

``pagingcheck validate --exec 'COMMAND ARGS'`` starts the program and drives
its kernel through the requests of the process protocol (docs/protocol.md;
the schema is ``checks/schema/protocol.json``). The hardware stays here: the
program sees the port only, as the port operations it sends during a call.
Its standard error is its own (kept, bounded, and quoted when it fails); its
standard output carries the protocol and nothing else.

State as a value, which the explorer and the checker's copies need, comes one
of two ways, as the program says in its ``hello`` reply:

* **save/restore**: the program answers ``save`` with an opaque string and
  goes back to that state on ``restore``. A kernel here is such a string
  while it is not the one loaded in the process;
* **re-execution**: a kernel here is the list of calls made since it was
  built. Making another one the loaded one restarts the program and repeats
  its calls, and checks that the program does the very same port operations
  and replies as the first time (else it depends on something outside the
  protocol, and that is its ``interface_error``).

The program's memory mirror (its view of physical memory, sent as the words
that changed with every call) belongs to the process, not to a kernel state:
the checker tracks what it last sent, whichever state is loaded.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pagingcheck.checks import protocol
from pagingcheck.checks.config import Limits
from pagingcheck.checks.contained import (
    OUTPUT_KEPT,
    PORT_OPERATIONS,
    HostProcess,
    RemoteKernel,
    _checked,
    _child_setup,
    hardware_json,
    kernel_json,
)
from pagingcheck.checks.protocol import InterfaceError
from pagingcheck.checks.system import KernelFailed, KernelLoadError
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel, KernelView
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import PortError, UserError, quote
from pagingcheck.model.port import MachinePort, Port

#: The prefix that marks a kernel spec as a command to run (``exec:COMMAND``).
EXEC = "exec:"
#: The longest saved state accepted, in characters.
SAVE_LIMIT = 1 << 24
#: The JSON Schema of every message, shipped with the package (``pagingcheck schema``).
SCHEMA = Path(__file__).with_name("schema") / "protocol.json"


@dataclass
class Exchange:
    """One call as it happened: the request, the port operations the program sent with
    what each was answered, and the final reply. Re-execution repeats it exactly."""

    request: dict[str, Any]
    operations: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    mirror: np.ndarray | None = None  # the memory words the program knows after it


class ExecProcess(HostProcess):
    """The program, its handshake, and which kernel state it holds now."""

    def __init__(self, command: str, limits: Limits) -> None:
        super().__init__(command, limits)
        self.command = command
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise UserError(f"--exec {command!r}: {error}") from None
        if not self.argv:
            raise UserError("--exec: the command is empty")
        self.saves = False  # the program supports save/restore
        self.fingerprints = False  # it answers fingerprint
        self.loaded: weakref.ref[ExecKernel] | None = None  # the kernel state it holds
        self.done: list[Exchange] = []  # re-execution: the calls it has made since start
        self.mirror: np.ndarray | None = None  # the memory words it was last sent
        self.errors = b""  # the tail of its standard error
        self.fresh: str | None = None  # save/restore: the state just after hello
        self.greeting: dict[str, Any] = {}  # the hello it was sent

    # -- the process --------------------------------------------------------------------

    def ensure(self) -> None:
        """Start the program if it is not running, and shake hands."""
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_child_setup(self.limits.memory_mb),
                start_new_session=True,  # Ctrl-C at a terminal is the checker's to handle
            )
        except OSError as error:
            raise UserError(f"--exec {self.command!r}: cannot run it: {error.strerror}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.writer = self.process.stdin  # type: ignore[assignment]
        self.reader_fd = self.process.stdout.fileno()
        self.buffer, self.output, self.dropped = b"", b"", []
        self.generation += 1
        self.loaded, self.done, self.mirror = None, [], None

    def hello(self, hardware: HardwareConfig, kernel: KernelConfig) -> None:
        """Start the program and tell it the machine; learn what it supports."""
        self.ensure()
        self.greeting = {
            "op": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "hardware": hardware_json(hardware),
            "kernel": kernel_json(kernel),
        }
        self._shake_hands()
        if self.saves:
            self.fresh = self.save()

    def _shake_hands(self) -> None:
        try:
            reply = self.request(self.greeting)
        except KernelFailed as failure:
            self.stop()
            raise KernelLoadError(
                f"--exec {self.command!r}: the program did not answer hello: {failure.message}"
            ) from failure
        offer = reply.get("ok")
        if not isinstance(offer, dict) or offer.get("protocol") != protocol.PROTOCOL_VERSION:
            self.stop()
            raise KernelLoadError(
                f"--exec {self.command!r}: the program answered hello with {quote(offer)}; "
                f'expected {{"ok": {{"protocol": {protocol.PROTOCOL_VERSION}, '
                '"save": true or false}}'
            )
        self.saves = offer.get("save") is True
        self.fingerprints = offer.get("fingerprint") is True

    def stop(self) -> None:
        """End the program (if any); the state it held is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._keep_errors()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process = None
        self.loaded = None

    def _output_streams(self) -> list[Any]:
        assert self.process is not None and self.process.stderr
        return [self.process.stderr]

    def _check_output(self, during: str) -> None:
        """What the program writes to stderr is its own: kept, not a failure."""
        self._keep_errors()

    def _keep_errors(self) -> None:
        if self.process is not None and self.process.stderr and not self.process.stderr.closed:
            self._drain()
        if self.output:
            self.errors = (self.errors + self.output)[-OUTPUT_KEPT:]
            self.output = b""

    def stderr_tail(self) -> str:
        """The end of what the program wrote to its standard error, as text."""
        self._keep_errors()
        return self.errors.decode(errors="replace")

    def _quoted_output(self) -> str:
        tail = self.stderr_tail()
        return f"; its stderr ended with: {tail!r}" if tail else ""

    # -- requests -----------------------------------------------------------------------

    def request(self, message: dict[str, Any], port: Port | None = None) -> dict[str, Any]:
        """As for any kernel process, with the end of the program's stderr in a failure
        (once: a process that ended has it in its message already)."""
        try:
            return super().request(message, port)
        except KernelFailed as failure:
            tail = self._quoted_output()
            if failure.message.endswith(tail):
                raise
            raise KernelFailed(failure.property, failure.message + tail, failure.where) from None

    def save(self) -> str:
        """The program's state as its opaque string."""
        reply = self.request({"op": "save"})
        state = reply.get("ok")
        if not isinstance(state, str) or len(state) > SAVE_LIMIT:
            raise KernelFailed("interface_error", f"save(): answered {quote(state)}, not a string")
        return state

    def call(self, kernel: ExecKernel, request: dict[str, Any], port: Port) -> dict[str, Any]:
        """Run one call of ``kernel`` on the real port, recording it for re-execution."""
        if not isinstance(port, MachinePort):
            raise TypeError("a kernel run by --exec runs on a machine's port")
        self.switch(kernel)
        words = port.words()
        known = np.zeros_like(words) if self.mirror is None else self.mirror
        changed = np.flatnonzero(words != known)
        request = {**request, "memory": [[int(pa), int(words[pa])] for pa in changed]}
        exchange = Exchange(request)
        exchange.reply = self.request(request, _Recording(port, exchange))  # type: ignore[arg-type]
        exchange.mirror = self.mirror = port.words()
        if self.saves:
            kernel.state = None  # its saved state is out of date now
        else:
            self.done.append(exchange)
            kernel.calls = (*kernel.calls, exchange)
        return exchange.reply

    def _serve(self, port: Port, message: dict[str, Any]) -> None:
        """Carry out (and record) a port operation, or check a repeated one."""
        if isinstance(port, _Replaying):
            answer = port.next(message)
        else:
            assert isinstance(port, _Recording)
            answer = self._carried_out(port.port, message)
            port.exchange.operations.append((message, answer))
        if answer is not None:
            self.send(answer)

    def _carried_out(self, port: Port, message: dict[str, Any]) -> dict[str, Any] | None:
        """Carry out one port operation on the real port; its answer if it waits for one."""
        name, args = message.get("port"), message.get("args")
        if name not in PORT_OPERATIONS or not isinstance(args, list):
            raise KernelFailed("interface_error", f"unknown port operation {quote(name)}")
        waits = PORT_OPERATIONS[str(name)]
        try:
            value = self._carry_out(port, str(name), args)
        except PortError as error:
            return {"port_error": str(error)} if waits else None
        except (InterfaceError, TypeError, ValueError, IndexError) as error:
            raise KernelFailed("interface_error", f"port {name}: {error}") from error
        return {"value": value} if waits else None

    # -- which state is loaded ----------------------------------------------------------

    def switch(self, kernel: ExecKernel) -> None:
        """Make ``kernel``'s state the one the program holds."""
        if kernel.generation != self.generation:
            raise KernelFailed(
                "kernel_crash", "the kernel's process was restarted after an earlier failure"
            )
        holder = None if self.loaded is None else self.loaded()
        if holder is kernel:
            return
        if self.saves:
            if holder is not None and holder.state is None:
                holder.state = self.save()
            self.request({"op": "restore", "state": kernel.state})
        else:
            self._reexecute(kernel.calls)
        self.loaded = weakref.ref(kernel)

    def _reexecute(self, calls: tuple[Exchange, ...]) -> None:
        """Bring the program to the state after ``calls``: go on from where it is if that
        is on the way, else start it again."""
        done = self.done
        if len(done) > len(calls) or any(a is not b for a, b in zip(done, calls, strict=False)):
            generation = self.generation
            self.stop()
            self.ensure()
            self.generation = generation  # the same kernels, brought back
            self._shake_hands()
            self.done = []
        for exchange in calls[len(self.done) :]:
            self._repeat(exchange, len(self.done) + 1)
            self.done.append(exchange)
        self.mirror = calls[-1].mirror if calls else None

    def _repeat(self, exchange: Exchange, number: int) -> None:
        """Send a recorded call again and check the program does exactly what it did."""
        replaying = _Replaying(exchange, number)
        replaying.finish(self.request(exchange.request, replaying))  # type: ignore[arg-type]


class _Recording:
    """The real port a call runs on, and the record of what the program did on it."""

    def __init__(self, port: Port, exchange: Exchange) -> None:
        self.port = port
        self.exchange = exchange


class _Replaying:
    """Stands for the port while a recorded call is repeated: answers as the first time,
    and fails at the first thing the program does differently."""

    def __init__(self, original: Exchange, number: int) -> None:
        self.original = original
        self.number = number
        self.at = 0

    def _differs(self, now: object, then: object) -> KernelFailed:
        name = self.original.request.get("name", "?")
        return KernelFailed(
            "interface_error",
            f"re-executed from the start, call {self.number} ({name}()) sent {quote(now)} "
            f"where it first sent {quote(then)}: the program depends on something the "
            "protocol does not give it (time, randomness, files), so its states cannot be "
            "rebuilt; give it save and restore, or make it deterministic",
        )

    def next(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The answer the program had the first time for this operation."""
        operations = self.original.operations
        if self.at >= len(operations) or operations[self.at][0] != message:
            then = operations[self.at][0] if self.at < len(operations) else "its reply"
            raise self._differs(message, then)
        answer = operations[self.at][1]
        self.at += 1
        return answer

    def finish(self, reply: dict[str, Any]) -> None:
        """Check the call ended as it did the first time."""
        if self.at < len(self.original.operations):
            raise self._differs(reply, self.original.operations[self.at][0])
        if reply != self.original.reply:
            raise self._differs(reply, self.original.reply)


class ExecKernel(RemoteKernel):
    """A kernel state of the program: loaded in it, or kept here (see the module notes)."""

    #: Every call is limited by the process's deadline, so the checker sets no timer.
    limits_itself = True

    def __init__(
        self, process: ExecProcess, state: str | None, calls: tuple[Exchange, ...]
    ) -> None:
        self.process = process
        self.state = state  # save/restore: its saved state, None while newer one is loaded
        self.calls = calls  # re-execution: the calls that made it
        self.generation = process.generation

    def _call(self, name: str, port: Port, args: dict[str, Any]) -> dict[str, Any]:
        request = {
            "op": "call",
            "name": name,
            "args": args,
            "context": protocol.encode_state(port.context()),
        }
        return self.process.call(self, request, port)

    def _ask(self, op: str) -> dict[str, Any]:
        self.process.switch(self)
        return self.process.request({"op": op})

    def runnable(self) -> tuple[int, ...]:
        """The program's runnable pids."""
        return _checked(lambda: protocol.check_runnable(self._ask("runnable").get("ok")))

    def view(self) -> KernelView:
        """The program's view, checked field by field."""
        return _checked(lambda: protocol.decode_view(self._ask("view").get("ok")))

    def _saved(self) -> str | None:
        """Its saved state, saving it first if the program holds a newer one."""
        if self.process.saves and self.state is None:
            self.process.switch(self)
            self.state = self.process.save()
        return self.state

    def copy(self) -> ExecKernel:
        """Another state equal to this one: its saved string, or its calls."""
        return ExecKernel(self.process, self._saved(), self.calls)

    def fingerprint(self) -> bytes:
        """The program's fingerprint if it gives one, else a digest of the saved state
        (which should then be the same string for the same state), else of the calls."""
        if self.process.fingerprints:
            text = self._ask("fingerprint").get("ok")
            if not isinstance(text, str) or len(text) > 256:
                raise KernelFailed("interface_error", "fingerprint() did not answer a hex string")
            try:
                return bytes.fromhex(text)
            except ValueError:
                raise KernelFailed("interface_error", "fingerprint() is not hex") from None
        if self.process.saves:
            return hashlib.blake2b(str(self._saved()).encode(), digest_size=16).digest()
        history = json.dumps([e.request for e in self.calls], sort_keys=True, default=str)
        return hashlib.blake2b(history.encode(), digest_size=16).digest()


def kernel_stderr(factory: object) -> str:
    """The end of the standard error of the program ``factory`` runs; "" for any other."""
    process = getattr(factory, "host", None)
    if not isinstance(process, ExecProcess):
        return ""
    return process.stderr_tail()


def exec_factory(command: str, limits: Limits) -> Callable[[HardwareConfig, KernelConfig], Kernel]:
    """A factory of kernels of the program ``command`` runs (the process is shared; it is
    started again, with a new hello, when the machine or kernel configuration changes)."""
    process = ExecProcess(command, limits)
    program = process.argv[0]
    if shutil.which(program) is None:
        raise UserError(
            f"--exec {command!r}: no program {program!r} (not an executable file, nor on PATH)"
        )

    def build(hardware: HardwareConfig, kernel: KernelConfig) -> Kernel:
        greeting = {"hardware": hardware_json(hardware), "kernel": kernel_json(kernel)}
        running = process.process is not None and process.process.poll() is None
        if not running or any(process.greeting.get(key) != greeting[key] for key in greeting):
            process.stop()
            process.hello(hardware, kernel)
        return ExecKernel(process, process.fresh, ())

    build.host = process  # type: ignore[attr-defined]
    return build
