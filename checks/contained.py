"""Kernels run contained: in a child process, with a time limit on every call and a memory limit.

A kernel that is not part of pagingcheck may crash, hang, exit, print, start
threads or allocate without bound; none of that may take the checker down
or be mistaken for a pass. :func:`contained_factory` builds kernels that
live in a child process running :mod:`pagingcheck.checks.host`, and hands
the checker a :class:`ContainedKernel` that implements the kernel interface
by talking to it (the protocol is described in the host's docstring).

What the child does wrong becomes a violation of the kernel, raised as
:class:`~pagingcheck.checks.system.KernelFailed`:

==================  ==============================================================
``kernel_crash``    it raised an exception, or died of a signal (abort, segfault)
``kernel_exit``     it exited (``sys.exit``, ``os._exit``)
``kernel_hang``     a call did not answer within ``limits.call_seconds``
``kernel_oom``      it ran out of the ``limits.memory_mb`` megabytes it may use
``kernel_output``   it wrote to its standard output or error
``kernel_thread``   it started a thread
``interface_error`` it answered something the interface does not allow
``port_rules``      it broke a rule of the hardware port
==================  ==============================================================

The child is started once per factory and reused by every kernel the
factory builds (a campaign builds one per run); after a failure that ends
it, the next kernel starts a fresh one. Failing to import the kernel's
module at all is the user's error (exit 2), reported with what happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from pagingcheck.checks import protocol
from pagingcheck.checks.config import Limits
from pagingcheck.checks.protocol import InterfaceError
from pagingcheck.checks.system import KernelFailed, KernelLoadError
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel, KernelEvent, KernelView, SpawnRefused
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import PortError, quote
from pagingcheck.model.port import MachinePort, Port
from pagingcheck.model.program import Image
from pagingcheck.model.traps import Access, TrapFrame

T = TypeVar("T")

#: Bytes of a kernel's output kept for the report.
OUTPUT_KEPT = 2000
#: The longest message line a kernel may send: past it, it is flooding the checker.
LINE_LIMIT = 1 << 22
#: Port operations a contained kernel may send, and whether each waits for an answer.
PORT_OPERATIONS: dict[str, bool] = {
    "write": False,
    "fill": False,
    "load_context": False,
    "probe": True,
    "tlb_insert": False,
    "tlb_invalidate": False,
    "tlb_flush": False,
    "tlb_flush_asid": False,
    "resume": False,
    "submit": True,
    "set_timer": False,
    "console_write": False,
    "console_read": True,
    "register_space": False,
    "release_space": True,
    "image": True,
    "file": True,
}


#: Linux's prctl option that signals a process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """Have this process killed when ``parent``, the process that started it, ends (on
    Linux; elsewhere nothing). For children that may be busy when the parent goes, and
    so never notice a closed pipe: a kernel spinning in a loop, a worker mid-campaign."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)


def _child_setup(megabytes: int) -> Callable[[], None]:
    """What the child does before it runs Python: cap its memory, die with its parent."""

    parent = os.getpid()

    def apply() -> None:
        # Without this a checker killed mid-call would leave the kernel running for ever.
        die_with(parent)
        # The cap last: until exec this is still a copy of the checker, which may already
        # hold more address space than the kernel is allowed (loading libc would fail).
        size = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return apply


def _readable(fds: list[int], seconds: float) -> list[int]:
    """Those of ``fds`` with something to read (or closed), waiting up to ``seconds``.
    ``poll``, not ``select``: a long campaign may hold descriptors numbered past 1024."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return [fd for fd, _ in poller.poll(max(0.0, seconds) * 1000)]


class HostProcess:
    """The child process that runs a kernel's module; started on first need."""

    def __init__(self, spec: str, limits: Limits) -> None:
        self.spec = spec
        self.limits = limits
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.buffer = b""
        self.output = b""
        self.dropped: list[int] = []
        # The child ends with the checker, however the checker's objects are let go.
        weakref.finalize(self, HostProcess._kill, self.__dict__)

    @staticmethod
    def _kill(fields: dict[str, Any]) -> None:
        process = fields.get("process")
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr, fields.get("writer")):
            if stream is not None:
                stream.close()
        with contextlib.suppress(OSError):
            os.close(fields["reader_fd"])

    # -- the process --------------------------------------------------------------------

    def ensure(self) -> None:
        """Start the child if it is not running (a new generation of kernels)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        # The child imports what the checker can: it gets the checker's module path.
        path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, "-m", "pagingcheck.checks.host", self.spec]
        self.process = subprocess.Popen(
            [*command, str(child_reads), str(child_writes)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(child_reads, child_writes),
            preexec_fn=_child_setup(self.limits.memory_mb),
            start_new_session=True,  # Ctrl-C at a terminal is the checker's to handle
            env=env,
        )
        os.close(child_reads)
        os.close(child_writes)
        self.writer = os.fdopen(parent_writes, "wb")
        self.reader_fd = parent_reads
        self.buffer, self.output, self.dropped = b"", b"", []
        self.generation += 1
        loaded = self._loading_reply()
        if not loaded.get("loaded"):
            self.stop()
            raise KernelLoadError(
                f"--impl {self.spec}: cannot load the kernel: {loaded.get('message', '?')}"
            )
        self.output = b""  # what the module prints as it is imported is not a call's output

    def _loading_reply(self) -> dict[str, Any]:
        try:
            return self._receive(time.monotonic() + max(self.limits.call_seconds, 30.0))
        except KernelFailed as failure:
            self.stop()
            raise KernelLoadError(
                f"--impl {self.spec}: cannot load the kernel: while its module was imported, "
                f"{failure.message}"
            ) from failure

    def stop(self) -> None:
        """End the child (if any); its kernels are gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.writer.close()
        os.close(self.reader_fd)
        self.process = None

    # -- messages -----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Write one message to the child."""
        try:
            self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            self.writer.flush()
        except BrokenPipeError:
            pass  # the child is gone: receiving says how

    def request(self, message: dict[str, Any], port: Port | None = None) -> dict[str, Any]:
        """Send a request; serve the port operations the child sends meanwhile; the reply.

        Raises KernelFailed when the child fails, exits, hangs or prints.
        """
        what = message.get("name") or message["op"]
        self._nothing_unasked(what)
        deadline = time.monotonic() + self.limits.call_seconds
        drops, self.dropped = self.dropped, []
        for kernel in drops:  # kernels the checker let go of: the child forgets them first
            self.send({"op": "drop", "kernel": kernel})
        self.send(message)
        for _ in drops:
            self._receive(deadline)
        while True:
            reply = self._receive(deadline)
            if "port" not in reply:
                if self.buffer:
                    raise KernelFailed(
                        "interface_error",
                        f"{what}(): the kernel sent more after its reply: "
                        f"{quote(self.buffer[:200])}",
                    )
                self._check_output(f"{what}()")
                if "failed" in reply:
                    text = str(reply.get("message", ""))
                    joint = " " if text.startswith("raised ") else ": "
                    raise KernelFailed(
                        str(reply["failed"]),
                        f"{what}(){joint}{text}",
                        str(reply.get("where", "")),
                        str(reply.get("traceback", "")),
                    )
                return reply
            if port is None:
                raise KernelFailed("interface_error", f"{what}(): used the port outside a call")
            self._serve(port, reply)

    def _nothing_unasked(self, what: str) -> None:
        """Fail if the child sent anything since its last reply (a reply out of turn)."""
        if not self.buffer and _readable([self.reader_fd], 0):
            chunk = os.read(self.reader_fd, 65536)
            if not chunk:
                raise self._ended()
            self.buffer = chunk
        if self.buffer:
            unasked, self.buffer = self.buffer, b""
            raise KernelFailed(
                "interface_error",
                f"before {what}(): the kernel sent what it was not asked for: "
                f"{quote(unasked[:200])}",
            )

    def _serve(self, port: Port, message: dict[str, Any]) -> None:
        """Carry out one port operation of the child on the real port; answer if it waits."""
        name, args = message.get("port"), message.get("args")
        if name not in PORT_OPERATIONS or not isinstance(args, list):
            raise KernelFailed("interface_error", f"unknown port operation {quote(name)}")
        waits = PORT_OPERATIONS[str(name)]
        try:
            value = self._carry_out(port, str(name), args)
        except PortError as error:
            if waits:
                self.send({"port_error": str(error)})
            return
        except (InterfaceError, TypeError, ValueError) as error:
            raise KernelFailed("interface_error", f"port {name}: {error}") from error
        if waits:
            self.send({"value": value})

    @staticmethod
    def _carry_out(port: Port, name: str, args: list[Any]) -> Any:
        if name == "resume":
            port.resume(protocol.decode_state(args[0], "resume"))
            return None
        if name == "probe":
            return protocol.encode_fault(port.probe(args[0], Access(args[1])))
        if name == "image":
            image = port.image(args[0])
            return None if image is None else protocol.encode_image(image)
        if name == "file":
            file = port.file(args[0])
            return None if file is None else protocol.encode_file(file)
        return getattr(port, name)(*args)

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next message from the child, draining its output meanwhile."""
        outputs = [stream.fileno() for stream in self._output_streams()]
        while b"\n" not in self.buffer:
            if len(self.buffer) > LINE_LIMIT:
                self.stop()
                raise KernelFailed(
                    "interface_error",
                    f"the kernel sent a line of more than {LINE_LIMIT} bytes (flooding)",
                )
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise KernelFailed(
                    "kernel_hang",
                    f"the kernel did not answer within {self.limits.call_seconds:g} seconds",
                )
            ready = _readable([self.reader_fd, *outputs], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if fd == self.reader_fd:
                    if not chunk:
                        raise self._ended()
                    self.buffer += chunk
                elif chunk:
                    self.output = (self.output + chunk)[: OUTPUT_KEPT * 2]
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as error:
            raise KernelFailed(
                "interface_error", f"the kernel sent something not JSON: {quote(line[:200])}"
            ) from error
        if not isinstance(message, dict):
            raise KernelFailed(
                "interface_error", f"the kernel sent something not an object: {quote(line[:200])}"
            )
        return message

    def _output_streams(self) -> list[Any]:
        """The child's streams that are its own output, not the protocol."""
        assert self.process is not None and self.process.stdout and self.process.stderr
        return [self.process.stdout, self.process.stderr]

    def _ended(self) -> KernelFailed:
        """The failure of a child that closed its end: its exit status or signal."""
        assert self.process is not None
        code = self.process.wait()
        self._drain()
        output = self._quoted_output()
        self.stop()
        if code < 0:
            name = signal.Signals(-code).name
            return KernelFailed("kernel_crash", f"the kernel's process died of {name}{output}")
        return KernelFailed(
            "kernel_exit", f"the kernel's process exited with status {code}{output}"
        )

    def _drain(self) -> None:
        assert self.process is not None
        for stream in self._output_streams():
            if stream is not None and not stream.closed:
                while _readable([stream.fileno()], 0):
                    chunk = os.read(stream.fileno(), 65536)
                    if not chunk:
                        break
                    self.output = (self.output + chunk)[: OUTPUT_KEPT * 2]

    def _quoted_output(self) -> str:
        if not self.output:
            return ""
        text = self.output[:OUTPUT_KEPT].decode(errors="replace")
        return f"; it printed: {text!r}"

    def _check_output(self, during: str) -> None:
        """Fail ``kernel_output`` if the child wrote anything to stdout or stderr."""
        self._drain()
        if self.output:
            printed = self._quoted_output()
            self.output = b""
            raise KernelFailed("kernel_output", f"{during}: the kernel wrote output{printed}")


class RemoteKernel(ABC):
    """The kernel interface's calls as protocol messages (the process protocol's
    ``call``); a subclass carries them to the process that runs the kernel."""

    @abstractmethod
    def _call(self, name: str, port: Port, args: dict[str, Any]) -> dict[str, Any]:
        """Send call ``name`` with ``args``, serving its port operations on ``port``; the
        reply."""

    def _events(self, name: str, port: Port, args: dict[str, Any]) -> tuple[KernelEvent, ...]:
        reply = self._call(name, port, args)
        return _checked(lambda: protocol.decode_events(reply.get("events"), f"{name}() events"))

    def boot(self, port: Port) -> tuple[KernelEvent, ...]:
        """The kernel's boot."""
        return self._events("boot", port, {})

    def spawn(self, port: Port, image: Image) -> int | SpawnRefused:
        """The kernel's spawn."""
        reply = self._call("spawn", port, {"image": protocol.encode_image(image)})
        return _checked(lambda: protocol.decode_spawned(reply.get("ok")))

    def dispatch(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """The kernel's dispatch."""
        return self._events("dispatch", port, {"pid": pid})

    def on_trap(self, port: Port, trap: TrapFrame) -> tuple[KernelEvent, ...]:
        """The kernel's trap handler."""
        return self._events("on_trap", port, {"trap": protocol.encode_trap(trap)})

    def on_disk(self, port: Port, request: Request) -> tuple[KernelEvent, ...]:
        """The kernel's disk completion handler."""
        return self._events("on_disk", port, {"request": protocol.encode_request(request)})

    def on_timer(self, port: Port) -> tuple[KernelEvent, ...]:
        """The kernel's timer handler."""
        return self._events("on_timer", port, {})

    def kill(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """The kernel's kill."""
        return self._events("kill", port, {"pid": pid})


class ContainedKernel(RemoteKernel):
    """A kernel living in a host process, driven through the kernel interface."""

    #: Every call is limited by the host's deadline, so the checker sets no timer of its own.
    limits_itself = True

    def __init__(self, host: HostProcess, ident: int, synced: np.ndarray | None) -> None:
        self.host = host
        self.ident = ident
        self.generation = host.generation
        self.synced = synced
        weakref.finalize(self, _drop, host, ident, self.generation)

    def _live(self) -> None:
        if self.generation != self.host.generation:
            raise KernelFailed(
                "kernel_crash", "the kernel's process was restarted after an earlier failure"
            )

    def _call(self, name: str, port: Port, args: dict[str, Any]) -> dict[str, Any]:
        self._live()
        if not isinstance(port, MachinePort):
            raise TypeError("a contained kernel runs on a machine's port")
        words = port.words()
        if self.synced is None:
            changed = np.flatnonzero(words)
        else:
            changed = np.flatnonzero(words != self.synced)
        memory = [[int(pa), int(words[pa])] for pa in changed]
        reply = self.host.request(
            {
                "op": "call",
                "kernel": self.ident,
                "name": name,
                "args": args,
                "memory": memory,
                "context": protocol.encode_state(port.context()),
            },
            port,
        )
        self.synced = port.words()
        return reply

    def runnable(self) -> tuple[int, ...]:
        """The child kernel's runnable pids."""
        self._live()
        reply = self.host.request({"op": "runnable", "kernel": self.ident})
        return _checked(lambda: protocol.check_runnable(reply.get("ok")))

    def view(self) -> KernelView:
        """The child kernel's view, checked field by field."""
        self._live()
        reply = self.host.request({"op": "view", "kernel": self.ident})
        return _checked(lambda: protocol.decode_view(reply.get("ok")))

    def copy(self) -> ContainedKernel:
        """A copy made in the child (the kernel's own ``copy``)."""
        self._live()
        reply = self.host.request({"op": "copy", "kernel": self.ident})
        synced = None if self.synced is None else self.synced.copy()
        ident = _checked(lambda: protocol.decode_int(reply.get("ok"), "copy()", 1, 1 << 62))
        return ContainedKernel(self.host, ident, synced)

    def fingerprint(self) -> bytes:
        """The child kernel's fingerprint."""
        self._live()
        reply = self.host.request({"op": "fingerprint", "kernel": self.ident})
        text = reply.get("ok")
        if not isinstance(text, str) or len(text) > 256:
            raise KernelFailed("interface_error", "fingerprint() did not return bytes")
        return bytes.fromhex(text)


def _checked(decode: Callable[[], T]) -> T:
    """Run a decoder; its InterfaceError is the kernel's ``interface_error``."""
    try:
        return decode()
    except InterfaceError as error:
        raise KernelFailed("interface_error", str(error)) from error


def _drop(host: HostProcess, ident: int, generation: int) -> None:
    """Forget a kernel the checker no longer holds (told to the child with the next request)."""
    if host.generation == generation and host.process is not None:
        host.dropped.append(ident)


def hardware_json(hardware: HardwareConfig) -> dict[str, Any]:
    """The machine's parameters as JSON, as the protocol sends them."""
    return hardware.to_mapping()


def kernel_json(kernel: KernelConfig) -> dict[str, Any]:
    """The kernel configuration's fields as JSON (its fields only: a fingerprint may have
    kept its encoding on the instance)."""
    values = {f.name: getattr(kernel, f.name) for f in dataclasses.fields(kernel)}
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
    }


def contained_factory(
    spec: str, limits: Limits
) -> Callable[[HardwareConfig, KernelConfig], Kernel]:
    """A kernel factory building ``spec``'s kernels in a contained child process."""
    host = HostProcess(spec, limits)

    def build(hardware: HardwareConfig, kernel: KernelConfig) -> Kernel:
        host.ensure()
        reply = host.request(
            {
                "op": "new",
                "hardware": hardware_json(hardware),
                "kernel": kernel_json(kernel),
            }
        )
        ident = _checked(lambda: protocol.decode_int(reply.get("ok"), "construction", 1, 1 << 62))
        return ContainedKernel(host, ident, None)

    build.host = host  # type: ignore[attr-defined]
    return build
