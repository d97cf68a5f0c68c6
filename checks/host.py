"""The kernel host: a child process that runs a Python kernel behind the process protocol.

``python -m pagingcheck.checks.host MODULE:ATTR`` imports the kernel, then
serves requests from the checker, one JSON object per line, on the file
descriptors it is given (never on stdout or stderr, which belong to the
kernel: anything the kernel prints there is caught by the checker). The
checker's side is :mod:`pagingcheck.checks.contained`.

Requests (checker to host), each answered by one reply:

=================================  =========================================================
``{"op": "new", "hardware", ...}`` build a kernel: ``{"ok": id}``
``{"op": "call", "kernel", "name",  run ``boot``, ``spawn``, ``dispatch``, ``on_trap``,
"args", "memory", "context"}``      ``on_disk``, ``on_timer`` or ``kill``; while it runs, the
                                    host sends port operations (below); then
                                    ``{"ok": result, "events": [...]}``
``{"op": "view"|"runnable"|         the kernel's answer, ``{"ok": ...}``
"copy"|"fingerprint"|"drop",
"kernel"}``
=================================  =========================================================

A failure of the kernel is the reply ``{"failed": property, "message",
"where"}`` (``kernel_crash``, ``kernel_exit``, ``kernel_oom``,
``kernel_thread``, ``port_rules``).

Port operations (host to checker, during a call) are ``{"port": name,
"args": [...]}``. The host keeps a mirror of physical memory, brought up
to date by the ``memory`` changes each call carries, so reads never leave
the process; writes and every other operation that only changes the
machine are sent without waiting; ``probe``, ``submit``,
``release_space`` and ``image`` wait for ``{"value": ...}``. The checker applies the
operations in the order they were sent, so it always sees the kernel's
writes before answering.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from pagingcheck.checks import protocol
from pagingcheck.checks.protocol import InterfaceError
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import DiskFile
from pagingcheck.model.errors import PortError, quote, shorten
from pagingcheck.model.isa import ArchState
from pagingcheck.model.port import Port
from pagingcheck.model.program import Image
from pagingcheck.model.traps import Access, Fault


class Channel:
    """JSON lines over a pair of file descriptors."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, message: dict[str, Any]) -> None:
        """Write one message (buffered until :meth:`flush` or a :meth:`receive`)."""
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def flush(self) -> None:
        """Push buffered messages to the checker."""
        self.writer.flush()

    def receive(self) -> dict[str, Any]:
        """The next message (after flushing what was sent); exits quietly at end of input."""
        self.flush()
        line = self.reader.readline()
        if not line:
            os._exit(0)
        message: dict[str, Any] = json.loads(line)
        return message


class RemotePort(Port):
    """The hardware port as a contained kernel sees it: checked here, carried out there."""

    def __init__(self, config: HardwareConfig, channel: Channel, memory: np.ndarray) -> None:
        super().__init__(config)
        self.channel = channel
        self.memory = memory
        self.state = ArchState((0,) * 8, 0, 0)

    def _send(self, name: str, *args: Any) -> None:
        self.channel.send({"port": name, "args": list(args)})

    def _ask(self, name: str, *args: Any) -> Any:
        self._send(name, *args)
        reply = self.channel.receive()
        if "port_error" in reply:
            raise PortError(str(reply["port_error"]))
        return reply["value"]

    def read(self, pa: int) -> int:
        """The word at ``pa``, from the mirror."""
        self._closed("read")
        return int(self.memory[self._address("read", pa)])

    def write(self, pa: int, value: int) -> None:
        """Store ``value`` at ``pa`` (mirror now, machine in order)."""
        self._closed("write")
        address, word = self._address("write", pa), self._word("write", value)
        self.memory[address] = word
        self._send("write", address, word)

    def fill(self, pfn: int, value: int) -> None:
        """Fill user frame ``pfn`` with ``value``."""
        self._closed("fill")
        frame, word = self._user_frame("fill", pfn), self._word("fill", value)
        base = frame * self.config.page_words
        self.memory[base : base + self.config.page_words] = word
        self._send("fill", frame, word)

    def load_context(self, root: int, asid: int) -> None:
        """Load the MMU's table base and asid."""
        self._closed("load_context")
        self._send(
            "load_context", self._address("load_context", root), self._asid("load_context", asid)
        )

    def probe(self, va: int, access: Access) -> int | Fault:
        """The PROBE instruction, answered by the machine."""
        self._closed("probe")
        self._access("probe", access)
        address = self._integer("probe", "virtual address", va, protocol.WORD_MAX)
        return protocol.decode_fault(self._ask("probe", address, access.value))

    def tlb_insert(self, asid: int, vpn: int, pte_addr: int, pte: int) -> None:
        """Software refill."""
        self._closed("tlb_insert")
        entry = self._tlb_entry(asid, vpn, pte_addr, pte)
        self._send("tlb_insert", entry.asid, entry.vpn, entry.pte_addr, entry.pte)

    def tlb_invalidate(self, asid: int, vpn: int) -> None:
        """Drop matching TLB entries."""
        self._closed("tlb_invalidate")
        self._send(
            "tlb_invalidate",
            self._asid("tlb_invalidate", asid),
            self._vpn("tlb_invalidate", vpn),
        )

    def tlb_flush(self) -> None:
        """Empty the TLB."""
        self._closed("tlb_flush")
        self._send("tlb_flush")

    def tlb_flush_asid(self, asid: int) -> None:
        """Drop every TLB entry of ``asid``."""
        self._closed("tlb_flush_asid")
        self._send("tlb_flush_asid", self._asid("tlb_flush_asid", asid))

    def context(self) -> ArchState:
        """The CPU's registers."""
        self._closed("context")
        return self.state

    def resume(self, state: ArchState) -> None:
        """Load registers and return to user mode."""
        self._closed("resume")
        self.state = self._arch_state("resume", state)
        self._send("resume", protocol.encode_state(self.state))

    def submit(self, op: str, block: int, pfn: int) -> int:
        """Queue a transfer; its request id."""
        self._closed("submit")
        number, frame = self._transfer("submit", op, block, pfn)
        return int(self._ask("submit", op, number, frame))

    def set_timer(self, on: bool) -> None:
        """Arm or disarm the timer."""
        self._closed("set_timer")
        self._send("set_timer", self._flag("set_timer", on))

    def console_write(self, byte: int) -> None:
        """Print a byte on the console."""
        self._closed("console_write")
        self._send("console_write", self._byte("console_write", byte))

    def console_read(self) -> int | None:
        """Take the next byte typed at the console (the machine keeps the input)."""
        self._closed("console_read")
        answer = self._ask("console_read")
        return None if answer is None else int(answer)

    def register_space(self, asid: int, root: int) -> None:
        """Declare an address space."""
        self._closed("register_space")
        self._send(
            "register_space",
            self._asid("register_space", asid),
            self._address("register_space", root),
        )

    def release_space(self, asid: int) -> None:
        """Withdraw an address space (the machine knows which are declared)."""
        self._closed("release_space")
        self._ask("release_space", self._asid("release_space", asid))

    def image(self, index: int) -> Image | None:
        """The program image at workload position ``index``, from the machine's directory."""
        self._closed("image")
        answer = self._ask("image", self._index("image", index))
        return None if answer is None else protocol.decode_image(answer)

    def file(self, index: int) -> DiskFile | None:
        """The workload's file number ``index``, from the machine's directory."""
        self._closed("file")
        answer = self._ask("file", self._index("file", index, "file number"))
        return None if answer is None else protocol.decode_file(answer)

    def _writable(self, block: int) -> bool:
        """Any block here: the machine's port, which knows where the files are, judges."""
        return True


CALLS: dict[str, Callable[[Kernel, RemotePort, dict[str, Any]], Any]] = {
    "boot": lambda k, port, a: k.boot(port),
    "spawn": lambda k, port, a: k.spawn(port, protocol.decode_image(a["image"])),
    "dispatch": lambda k, port, a: k.dispatch(port, int(a["pid"])),
    "on_trap": lambda k, port, a: k.on_trap(port, protocol.decode_trap(a["trap"])),
    "on_disk": lambda k, port, a: k.on_disk(port, protocol.decode_request(a["request"])),
    "on_timer": lambda k, port, a: k.on_timer(port),
    "kill": lambda k, port, a: k.kill(port, int(a["pid"])),
}


def _where(error: BaseException) -> str:
    """'file:line in function' of the innermost frame outside pagingcheck's own code."""
    return protocol.kernel_site(error, __file__)


class Host:
    """The kernels this process runs, by id, with their memory mirrors."""

    def __init__(self, factory: Callable[[HardwareConfig, KernelConfig], Kernel]) -> None:
        self.factory = factory
        self.kernels: dict[int, tuple[Kernel, HardwareConfig, np.ndarray]] = {}
        self.next_id = 0

    def _add(self, kernel: Kernel, hardware: HardwareConfig, memory: np.ndarray) -> int:
        self.next_id += 1
        self.kernels[self.next_id] = (kernel, hardware, memory)
        return self.next_id

    def serve(self, channel: Channel) -> None:
        """Answer requests until the checker closes the channel."""
        while True:
            request = channel.receive()
            reply = self.answer(request, channel)
            try:
                channel.send(reply)
            except (TypeError, ValueError):
                channel.send(
                    {
                        "failed": "interface_error",
                        "message": f"answered something that is not data: {quote(reply)}",
                        "where": "",
                    }
                )

    def answer(self, request: dict[str, Any], channel: Channel) -> dict[str, Any]:
        """The reply to one request; a failure of the kernel is a ``failed`` reply."""
        try:
            reply = self._answer(request, channel)
        except PortError as error:
            return {"failed": "port_rules", "message": str(error), "where": _where(error)}
        except MemoryError as error:
            return {
                "failed": "kernel_oom",
                "message": "the kernel ran out of memory",
                "where": _where(error),
            }
        except SystemExit as error:
            return {
                "failed": "kernel_exit",
                "message": f"the kernel called exit({error.code!r})",
                "where": _where(error),
            }
        except BaseException as error:  # the kernel may raise anything
            return {
                "failed": "kernel_crash",
                "message": f"raised {type(error).__name__}: {shorten(str(error), 300)}",
                "where": _where(error),
                "traceback": protocol.kernel_traceback(error, __file__),
            }
        if threading.active_count() > 1:
            return {
                "failed": "kernel_thread",
                "message": "the kernel started a thread",
                "where": "",
            }
        return reply

    def _answer(self, request: dict[str, Any], channel: Channel) -> dict[str, Any]:
        op = request["op"]
        if op == "new":
            hardware = HardwareConfig.from_mapping(request["hardware"])
            kernel_config = KernelConfig.from_mapping(request["kernel"])
            kernel = self.factory(hardware, kernel_config)
            memory = np.zeros(hardware.memory_words, dtype=np.uint32)
            return {"ok": self._add(kernel, hardware, memory)}
        kernel, hardware, memory = self.kernels[int(request["kernel"])]
        if op == "call":
            for pa, value in request["memory"]:
                memory[pa] = value
            port = RemotePort(hardware, channel, memory)
            port.state = protocol.decode_state(request["context"])
            port.open = True
            try:
                result = CALLS[request["name"]](kernel, port, request["args"])
            finally:
                port.open = False
            if request["name"] == "spawn":
                return {"ok": protocol.encode_spawned(result)}
            return {"ok": None, "events": protocol.encode_events(result)}
        if op == "view":
            try:
                return {"ok": protocol.encode_view(protocol.check_view(kernel.view()))}
            except InterfaceError as error:
                return {"failed": "interface_error", "message": str(error), "where": ""}
        if op == "runnable":
            pids = kernel.runnable()
            return {"ok": list(pids) if isinstance(pids, list | tuple) else pids}
        if op == "fingerprint":
            return {"ok": kernel.fingerprint().hex()}
        if op == "copy":
            return {"ok": self._add(kernel.copy(), hardware, memory.copy())}
        if op == "drop":
            self.kernels.pop(int(request["kernel"]), None)
            return {"ok": None}
        raise ValueError(f"unknown request {op!r}")


class StdioHost(Host):
    """One kernel behind the public process protocol (docs/protocol.md), on stdin and
    stdout: what ``pagingcheck validate --exec`` drives. A Python kernel served this way
    checks the protocol end to end; its ``save`` keeps a copy of the kernel in this
    process and answers its number, so every saved state stays until the process ends.
    """

    def __init__(self, factory: Callable[[HardwareConfig, KernelConfig], Kernel], saves: bool):
        super().__init__(factory)
        self.saves = saves
        self.current = 0
        self.saved: dict[str, int] = {}

    def _answer(self, request: dict[str, Any], channel: Channel) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            self.current = super()._answer({**request, "op": "new"}, channel)["ok"]
            return {
                "ok": {
                    "protocol": protocol.PROTOCOL_VERSION,
                    "save": self.saves,
                    "fingerprint": True,
                }
            }
        if op == "save" and self.saves:
            ident = super()._answer({"op": "copy", "kernel": self.current}, channel)["ok"]
            self.saved[str(ident)] = ident
            return {"ok": str(ident)}
        if op == "restore" and self.saves:
            kept = self.saved[str(request.get("state"))]
            _, _, memory = self.kernels[self.current]
            ident = super()._answer({"op": "copy", "kernel": kept}, channel)["ok"]
            kernel, hardware, _ = self.kernels[ident]
            self.kernels[ident] = (kernel, hardware, memory)  # memory is the process's
            self.kernels.pop(self.current, None)
            self.current = ident
            return {"ok": None}
        if op in ("call", "view", "runnable", "fingerprint"):
            return super()._answer({**request, "kernel": self.current}, channel)
        raise ValueError(f"unknown request {op!r}")


def serve_stdio(spec: str, saves: bool) -> None:
    """Serve one kernel of ``spec`` on stdin and stdout; what the kernel prints goes to
    stderr, since stdout carries the protocol."""
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    module_name, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    StdioHost(factory, saves).serve(Channel(sys.stdin.buffer, protocol_out))


def main() -> None:
    """Import the kernel named on the command line and serve the checker: on the file
    descriptors given (a contained kernel), or with ``--stdio [--no-save]`` on stdin and
    stdout, by the public process protocol."""
    if sys.argv[1] == "--stdio":
        saves = sys.argv[2] != "--no-save"
        serve_stdio(sys.argv[-1], saves)
        return
    spec, read_fd, write_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    channel = Channel(os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb"))
    try:
        module_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        if not callable(factory):
            raise TypeError(f"{module_name}.{attr} is not callable")
    except SystemExit as error:
        channel.send({"loaded": False, "message": f"the module called exit({error.code!r})"})
        channel.flush()
        return
    except BaseException as error:  # the kernel's module may fail in any way
        message = f"{type(error).__name__}: {shorten(str(error), 300)}"
        channel.send({"loaded": False, "message": message})
        channel.flush()
        return
    channel.send({"loaded": True})
    Host(factory).serve(channel)


if __name__ == "__main__":
    main()
