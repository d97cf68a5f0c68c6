"""The system under check: hardware plus a kernel plus a workload, driven by explicit choices.

Everything nondeterministic is a **choice** the driver makes:

* ``("run", pid)``: put runnable ``pid`` on the CPU (a context switch if
  needed) and run one instruction; a trap goes to the kernel at once;
* ``("disk", i)``: the disk completes its ``i``-th pending request (DMA now),
  and the kernel takes the completion interrupt;
* ``("timer",)``: the timer fires (only while the kernel has armed it);
* ``("spawn", k)``: create a process running workload program ``k``;
* ``("kill", pid)``: terminate ``pid`` from outside.

Given the choices, a step is deterministic, so a trace is the initial
configuration plus the list of choices, and it replays exactly.

The kernel reaches the machine only through the hardware port, opened for
each of its calls. The driver keeps its own record of what the checks need
(the state each instruction started in) before any kernel code runs.
Programs are installed on the disk's image area before boot, as
executable files are, and the kernel is handed the installed image.

Who is to blame for an exception is decided here. One raised inside a
kernel call is the kernel's (:class:`KernelFailed`: ``kernel_crash``, or
``port_rules`` for a broken rule of the port, ``kernel_hang`` for a call
that runs too long), whatever its type, even when the kernel called
pagingcheck code that raised it; except one raised by the hardware while
carrying out a port call the port accepted: that is pagingcheck's own bug
and propagates unchanged, as an internal error.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from pagingcheck.impl.interface import Kernel, KernelEvent, SpawnRefused
from pagingcheck.model.cpu import StepResult
from pagingcheck.model.errors import PortError, UserError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import Port
from pagingcheck.model.program import Image, Program

Choice = tuple[str, ...] | tuple[str, int]
T = TypeVar("T")

#: How long one call into the kernel may run before it counts as hung.
HOOK_SECONDS = 10.0


class KernelHang(Exception):
    """A call into the kernel did not return in time."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise KernelHang in the block after ``seconds`` (where the platform has timers and
    this is the main thread; elsewhere the block runs unlimited)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise KernelHang(f"a kernel call ran for more than {seconds:g} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class KernelFailed(Exception):
    """The kernel under check failed inside one of its calls: ``property`` names how."""

    def __init__(self, property: str, message: str, where: str = "") -> None:
        super().__init__(message)
        self.property = property
        self.message = message
        self.where = where


@dataclass(frozen=True)
class StepRecord:
    """What one choice did: the CPU's step (if it ran one), the kernel's events, and the
    state the instruction started in (recorded before any kernel code ran)."""

    choice: Choice
    result: StepResult | None = None
    events: tuple[KernelEvent, ...] = ()
    spawned: int | SpawnRefused | None = None
    start: ArchState | None = None


def _through_port(error: BaseException) -> bool:
    """Whether ``error`` was raised beneath a call of the hardware port."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "pagingcheck.model.port":
            return True
        tb = tb.tb_next
    return False


def _kernel_site(error: BaseException) -> str:
    """'file:line in function' of the innermost frame of the kernel's code: outside the
    hardware model and the checks (the port and the driver that called the kernel)."""
    site = ""
    for frame, line in traceback.walk_tb(error.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith(("pagingcheck.model.", "pagingcheck.checks.")):
            continue
        code = frame.f_code
        site = f"{code.co_filename}:{line} in {code.co_name}"
    return site


def kernel_call(what: str, port: Port, call: Callable[[Port], T]) -> T:
    """Run ``call`` (one call into the kernel) with the port open, and assign any failure.

    Raises KernelFailed for the kernel's own exceptions, for broken port
    rules and for a call that outlives :data:`HOOK_SECONDS`; re-raises an
    error of the hardware beneath an accepted port call unchanged. A
    UserError raised by the kernel is the kernel's crash, not the user's
    input error.
    """
    try:
        with time_limit(HOOK_SECONDS), port.opened():
            return call(port)
    except PortError as error:
        raise KernelFailed("port_rules", f"{what}: {error}", _kernel_site(error)) from error
    except KernelHang as error:
        raise KernelFailed("kernel_hang", f"{what}: {error}", _kernel_site(error)) from error
    except Exception as error:
        if _through_port(error):
            raise
        raise KernelFailed(
            "kernel_crash",
            f"{what} raised {type(error).__name__}: {error}",
            _kernel_site(error),
        ) from error


def install(machine: Machine, programs: Sequence[Program], first: int) -> list[Image]:
    """Write each program's image to the disk's image area from block ``first`` on.

    Raises UserError when the image area cannot hold them.
    """
    config = machine.config
    images = []
    block = first
    for program in programs:
        image = Image(program, block, config.page_words)
        if block + image.pages > config.disk_blocks:
            raise UserError(
                f"hardware.image_blocks: {config.image_blocks} image blocks cannot hold the "
                f"workload's programs (program {program.name!r} needs {image.pages} more); "
                "add image blocks"
            )
        for offset, words in enumerate(image.contents()):
            machine.disk.write_block(block + offset, words)
        images.append(image)
        block += image.pages
    return images


@dataclass
class System:
    """Machine + kernel + workload programs. Copyable and fingerprintable as a whole."""

    machine: Machine
    kernel: Kernel
    programs: tuple[Program, ...]
    images: tuple[Image, ...] = ()
    max_spawns: int = 0
    spawns: int = 0
    timer_enabled: bool = True
    kills_enabled: bool = False
    history: list[Choice] = field(default_factory=list)
    port: Port = field(init=False)

    def __post_init__(self) -> None:
        self.port = Port(self.machine)

    # -- programs ---------------------------------------------------------------

    def add_program(self, program: Program) -> int | None:
        """Install another program on the disk; its index, or None if the image area is full."""
        first = (
            self.images[-1].first + self.images[-1].pages
            if self.images
            else (self.machine.config.swap_slots)
        )
        image = Image(program, first, self.machine.config.page_words)
        if first + image.pages > self.machine.config.disk_blocks:
            return None
        install(self.machine, [program], first)
        self.programs = (*self.programs, program)
        self.images = (*self.images, image)
        return len(self.programs) - 1

    # -- the choices ----------------------------------------------------------

    def call(self, what: str, call: Callable[[Port], T]) -> T:
        """One call into the kernel, through the port (see :func:`kernel_call`)."""
        return kernel_call(what, self.port, call)

    def choices(self, live: Sequence[int] | None = None) -> list[Choice]:
        """Every choice enabled in this state, in a fixed order.

        ``live`` (the pids of live processes) saves asking the kernel for its
        view when the caller already has it.
        """
        enabled: list[Choice] = [("run", pid) for pid in self.kernel.runnable()]
        enabled += [("disk", index) for index in self.machine.disk.completable()]
        if self.timer_enabled and self.machine.timer and enabled:
            enabled.append(("timer",))
        if self.spawns < self.max_spawns:
            enabled += [("spawn", index) for index in range(len(self.programs))]
        if self.kills_enabled:
            enabled += [("kill", pid) for pid in (self.live_pids() if live is None else live)]
        return enabled

    def live_pids(self) -> list[int]:
        """Pids of processes that have not exited."""
        view = self.kernel.view()
        return [p.pid for p in view.processes if p.state != "exited"]

    def apply(
        self,
        choice: Choice,
        live: Sequence[int] | None = None,
        at_user_entry: Callable[[int], None] | None = None,
    ) -> StepRecord:
        """Carry out one enabled choice; raise UserError if it is not enabled.

        ``at_user_entry(pid)`` is called on a run choice after the kernel has
        dispatched the process and before its instruction runs: the moment
        the CPU enters user mode, which checks of the TLB and the MMU's
        context need to see. Raises KernelFailed when the kernel fails.
        """
        if choice not in self.choices(live):
            raise UserError(f"choice {list(choice)} is not enabled in this state")
        self.history.append(choice)
        kind = choice[0]
        if kind == "run":
            return self._run(int(choice[1]), choice, at_user_entry)
        if kind == "disk":
            request = self.machine.disk.complete(int(choice[1]), self.machine.memory)
            events = self.call("on_disk()", lambda port: self.kernel.on_disk(port, request))
            return StepRecord(choice, events=events)
        if kind == "timer":
            return StepRecord(choice, events=self.call("on_timer()", self.kernel.on_timer))
        if kind == "spawn":
            self.spawns += 1
            image = self.images[int(choice[1])]
            pid = self.call("spawn()", lambda port: self.kernel.spawn(port, image))
            return StepRecord(choice, spawned=pid)
        if kind == "kill":
            target = int(choice[1])
            events = self.call("kill()", lambda port: self.kernel.kill(port, target))
            return StepRecord(choice, events=events)
        raise UserError(f"unknown choice kind {kind!r}")

    def _run(
        self, pid: int, choice: Choice, at_user_entry: Callable[[int], None] | None
    ) -> StepRecord:
        events = self.call("dispatch()", lambda port: self.kernel.dispatch(port, pid))
        if self.machine.cpu.mode != "user":
            raise KernelFailed(
                "dispatch_correct",
                f"dispatch({pid}) returned with the CPU in kernel mode; it must return to "
                "user mode with resume()",
            )
        if at_user_entry is not None:
            at_user_entry(pid)
        start = self.machine.cpu.state
        result = self.machine.step()
        trap = self.machine.cpu.trap
        if trap is not None:
            events += self.call("on_trap()", lambda port: self.kernel.on_trap(port, trap))
        return StepRecord(choice, result=result, events=events, start=start)

    # -- values -------------------------------------------------------------------

    def copy(self) -> System:
        """An independent copy (history included)."""
        return System(
            machine=self.machine.copy(),
            kernel=self.kernel.copy(),
            programs=self.programs,
            images=self.images,
            max_spawns=self.max_spawns,
            spawns=self.spawns,
            timer_enabled=self.timer_enabled,
            kills_enabled=self.kills_enabled,
            history=list(self.history),
        )

    def fingerprint(self) -> bytes:
        """A stable digest of the state (not of the history that reached it)."""
        return fingerprint(self.machine.fingerprint(), self.kernel.fingerprint(), self.spawns)


def spawn(kernel: Kernel, port: Port, image: Image) -> int | SpawnRefused:
    """``kernel.spawn(port, image)``, with the port first (for :meth:`System.call`)."""
    return kernel.spawn(port, image)


def boot_system(
    machine: Machine,
    kernel: Kernel,
    programs: Sequence[Program],
    *,
    initial: Sequence[int] = (),
    max_spawns: int = 0,
    timer: bool = True,
    kills: bool = False,
) -> System:
    """Install ``programs``, boot ``kernel`` on ``machine`` and spawn the programs ``initial``
    indexes. Raises KernelFailed when the kernel fails doing so."""
    images = install(machine, programs, machine.config.swap_slots)
    system = System(
        machine,
        kernel,
        tuple(programs),
        tuple(images),
        max_spawns=max_spawns,
        timer_enabled=timer,
        kills_enabled=kills,
    )
    system.call("boot()", kernel.boot)
    for index in initial:
        image = system.images[index]
        outcome = system.call("spawn()", partial(spawn, kernel, image=image))
        if isinstance(outcome, SpawnRefused):
            raise UserError(
                f"initial process {image.program.name!r} could not be created: {outcome.reason}"
            )
    return system


def run_round_robin(system: System, max_steps: int = 100_000) -> int:
    """Drive ``system`` until no choice but the timer is left: run the runnable pids in
    turn, else complete the oldest disk request. Returns the number of steps taken.

    A simple deterministic driver for workload tests; checks explore all choices.
    """
    steps = 0
    turn = 0
    while steps < max_steps:
        runnable = system.kernel.runnable()
        disk = system.machine.disk.completable()
        if runnable:
            pid = runnable[turn % len(runnable)]
            system.apply(("run", pid))
            turn += 1
        elif disk:
            system.apply(("disk", disk[0]))
        else:
            return steps
        steps += 1
    raise UserError(f"workload did not finish within {max_steps} steps")
