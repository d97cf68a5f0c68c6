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

import gc
import importlib
import io
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal, TypeVar

from pagingcheck.checks import protocol
from pagingcheck.checks.observe import Violation
from pagingcheck.checks.protocol import InterfaceError
from pagingcheck.impl.interface import Kernel, KernelEvent, KernelView, SpawnRefused
from pagingcheck.model.cpu import StepResult
from pagingcheck.model.disk import DiskFile, Request
from pagingcheck.model.errors import PortError, UserError, quote, shorten
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import SYS_FORK, ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MachinePort, Port
from pagingcheck.model.program import Image, Program, page_of, pages_for

Choice = tuple[str, ...] | tuple[str, int]
T = TypeVar("T")

#: How long one call into the kernel may run before it counts as hung.
HOOK_SECONDS = 10.0


class KernelHang(Exception):
    """A call into the kernel did not return in time."""


#: The handler installed for a signal, as ``signal.getsignal`` gives it but without its
#: conversion to an enum member, which fails (slowly: an exception each time) for a Python
#: function such as :func:`_expire`. It is asked before every kernel call.
_handler_of: Callable[[int], object] = importlib.import_module("_signal").getsignal


def _expire(signum: int, frame: object) -> None:
    raise KernelHang(f"a kernel call ran for more than {_Limit.seconds:g} seconds")


class _Limit:
    """The wall-clock limit of the kernel call running now (SIGALRM raises KernelHang in it).

    The handler stays installed between calls while nothing else replaces it: installing
    it per call was a tenth of the explorer's time.
    """

    seconds = 0.0

    @staticmethod
    def arm(seconds: float | None) -> bool:
        """Start the clock for ``seconds``; False where it cannot run (no limit, no timers,
        or not the main thread), and the call runs unlimited."""
        if (
            seconds is None
            or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
        ):
            return False
        _Limit.seconds = seconds
        if _handler_of(signal.SIGALRM) is not _expire:
            signal.signal(signal.SIGALRM, _expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        return True

    @staticmethod
    def disarm() -> None:
        """Stop the clock."""
        signal.setitimer(signal.ITIMER_REAL, 0)


class KernelLoadError(UserError):
    """A kernel's module could not be loaded at all: the user's error to fix (exit 2)."""


class KernelFailed(Exception):
    """The kernel under check failed inside one of its calls: ``property`` names how."""

    def __init__(self, property: str, message: str, where: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.property = property
        self.message = message
        self.where = where
        self.traceback = traceback  # the kernel's own frames, as Python prints them

    def violation(self) -> Violation:
        """The property this failure violates, with where in the kernel's code it happened."""
        where = (("at", self.where),) if self.where else ()
        return Violation(self.property, self.message, where, self.traceback)


@dataclass(frozen=True)
class StepRecord:
    """What one choice did: the CPU's step (if it ran one), the kernel's events, the
    state the instruction started in (recorded before any kernel code ran), and the disk
    transfers it completed and started, as the disk saw them."""

    choice: Choice
    result: StepResult | None = None
    events: tuple[KernelEvent, ...] = ()
    spawned: int | SpawnRefused | None = None
    start: ArchState | None = None
    completed: Request | None = None
    submitted: tuple[Request, ...] = ()
    forked: tuple[int, ...] = ()  # the live processes a FORK made (one, or none if it failed)


def _through_port(error: BaseException) -> bool:
    """Whether ``error`` was raised beneath a call of the hardware port."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "pagingcheck.model.port":
            return True
        tb = tb.tb_next
    return False


def kernel_call(
    what: str, port: Port, call: Callable[[Port], T], seconds: float | None = HOOK_SECONDS
) -> T:
    """Run ``call`` (one call into the kernel) with the port open, and assign any failure.

    Raises KernelFailed for the kernel's own exceptions, for broken port
    rules (even one the kernel caught) and for a call that outlives ``seconds``;
    re-raises an error of the hardware beneath an accepted port call
    unchanged. A UserError raised by the kernel is the kernel's crash, not
    the user's input error.
    """
    port.broken = None
    with blamed(what, seconds, port_open=True), port.opened():
        result = call(port)
    if port.broken is not None:  # the kernel caught the PortError and went on
        raise KernelFailed("port_rules", f"{what}: {port.broken}")
    return result


def kernel_query(what: str, call: Callable[[], T], seconds: float | None = HOOK_SECONDS) -> T:
    """Ask the kernel something outside its calls; its failures are the kernel's, as in
    :func:`kernel_call` (the port is closed meanwhile: a kernel that uses it breaks a rule)."""
    with blamed(what, seconds, port_open=False):
        return call()


class blamed:
    """Run the block as a call into the kernel, held to a contained kernel's conduct and
    limited to ``seconds``; whatever goes wrong in it is the kernel's, as KernelFailed.
    With the port open, an error of the hardware beneath a port call passes unchanged.

    What the kernel writes to stdout or stderr is caught (it would corrupt ``--json``)
    and is ``kernel_output``; a thread it leaves running is ``kernel_thread``. Python's
    cyclic garbage collector is held off during the call and runs after it: a collection
    of the checker's own objects (a large exploration's, say) takes seconds, and its pause
    must not count against the kernel's time. A class, not a generator: it wraps every
    call into the kernel, a dozen per explored state.
    """

    __slots__ = (
        "armed",
        "collecting",
        "port_open",
        "printed",
        "saved",
        "seconds",
        "threads",
        "what",
    )

    def __init__(self, what: str, seconds: float | None, port_open: bool) -> None:
        self.what = what
        self.seconds = seconds
        self.port_open = port_open

    def __enter__(self) -> None:
        self.threads = threading.active_count()
        self.printed = io.StringIO()
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self.printed
        self.collecting = gc.isenabled()
        if self.collecting:
            gc.disable()
        self.armed = _Limit.arm(self.seconds)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> Literal[False]:
        if self.armed:
            _Limit.disarm()
        if self.collecting:
            gc.enable()
        sys.stdout, sys.stderr = self.saved
        what = self.what
        if error is None:
            if self.printed.getvalue():
                raise KernelFailed(
                    "kernel_output",
                    f"{what}: the kernel wrote output: {quote(self.printed.getvalue())}",
                )
            if threading.active_count() > self.threads:
                raise KernelFailed("kernel_thread", f"{what}: the kernel started a thread")
            return False
        failure = _assigned(what, error, self.port_open)
        if failure is None:
            return False  # raised again unchanged
        raise failure from error


def _assigned(what: str, error: BaseException, port_open: bool) -> KernelFailed | None:
    """The kernel's failure that ``error``, raised in a call into it, stands for; None for
    one to pass unchanged (already assigned, or the hardware's beneath a port call)."""
    if isinstance(error, KernelFailed | KernelLoadError):
        return None
    site = protocol.kernel_site(error)
    if isinstance(error, PortError):
        return KernelFailed("port_rules", f"{what}: {error}", site)
    if isinstance(error, KernelHang):
        return KernelFailed("kernel_hang", f"{what}: {error}", site)
    if isinstance(error, SystemExit):
        return KernelFailed("kernel_exit", f"{what}: the kernel called exit({error.code!r})", site)
    if isinstance(error, MemoryError):
        return KernelFailed("kernel_oom", f"{what}: the kernel ran out of memory", site)
    if not isinstance(error, Exception) or (port_open and _through_port(error)):
        return None
    return KernelFailed(
        "kernel_crash",
        f"{what} raised {type(error).__name__}: {shorten(str(error), 300)}",
        site,
        protocol.kernel_traceback(error),
    )


def checked(check: Callable[[object], T], answer: object) -> T:
    """``check(answer)``; an answer the interface does not allow is ``interface_error``."""
    try:
        return check(answer)
    except InterfaceError as error:
        raise KernelFailed("interface_error", str(error)) from error


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
    machine.images = (*machine.images, *images)
    return images


def install_files(machine: Machine, files: Sequence[tuple[str, Sequence[int]]]) -> None:
    """Write the workload's ``files`` (name, words) to the end of the disk's image area, in
    order, and list them in the machine's directory. Raises UserError when the image area
    cannot hold them beside the program images."""
    config = machine.config
    sizes = [pages_for(len(words), config.page_words) for _, words in files]
    block = config.disk_blocks - sum(sizes)
    end = machine.images[-1].first + machine.images[-1].pages if machine.images else 0
    if block < max(end, config.swap_slots):
        raise UserError(
            f"hardware.image_blocks: {config.image_blocks} image blocks cannot hold the "
            "workload's programs and files; add image blocks"
        )
    stored = []
    for (name, words), pages in zip(files, sizes, strict=True):
        for index in range(pages):
            contents = page_of(tuple(words), index, config.page_words)  # zeros after the last
            machine.disk.write_block(block + index, contents)
        stored.append(DiskFile(name, block, pages))
        block += pages
    machine.files = tuple(stored)


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
    call_seconds: float = HOOK_SECONDS
    # Which program each process was spawned to run (pid -> index), as the driver knows it:
    # the spec's stack rule is the program's.
    owners: dict[int, int] = field(default_factory=dict)
    port: MachinePort = field(init=False)
    # The kernel's checked view, asked once between two calls into the kernel: only its
    # calls change what it can say. A copy asks its own kernel again.
    known_view: KernelView | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.port = MachinePort(self.machine)

    # -- programs ---------------------------------------------------------------

    def add_program(self, program: Program) -> int | None:
        """Install another program on the disk; its index, or None if the image area is full."""
        first = (
            self.images[-1].first + self.images[-1].pages
            if self.images
            else (self.machine.config.swap_slots)
        )
        image = Image(program, first, self.machine.config.page_words)
        files = self.machine.files
        if first + image.pages > (files[0].first if files else self.machine.config.disk_blocks):
            return None
        install(self.machine, [program], first)
        self.programs = (*self.programs, program)
        self.images = (*self.images, image)
        return len(self.programs) - 1

    def program_of(self, pid: int) -> Program | None:
        """The program process ``pid`` was spawned to run, or None if it never was."""
        index = self.owners.get(pid)
        return None if index is None else self.programs[index]

    def spawn(self, index: int) -> int | SpawnRefused:
        """Ask the kernel to create a process running program ``index``: its pid (recorded
        as running that program) or the refusal."""
        image = self.images[index]
        pid = self.call("spawn()", partial(spawn, self.kernel, image=image), protocol.check_spawned)
        if isinstance(pid, int):
            self.owners[pid] = index
        return pid

    # -- the choices ----------------------------------------------------------

    def call(self, what: str, call: Callable[[Port], object], check: Callable[[object], T]) -> T:
        """One call into the kernel through the port (see :func:`kernel_call`), its answer
        checked: an answer the interface does not allow is ``interface_error``."""
        self.known_view = None
        answer = kernel_call(what, self.port, call, self._timer())
        return checked(check, answer)

    def hook(self, what: str, call: Callable[[Port], object]) -> tuple[KernelEvent, ...]:
        """A call into the kernel that returns the events it caused."""
        return self.call(what, call, protocol.check_events)

    def query(self, what: str, call: Callable[[], object], check: Callable[[object], T]) -> T:
        """A question to the kernel outside its calls (``view``, ``runnable``): limited in
        time like a call, its failures the kernel's, its answer checked."""
        answer = kernel_query(what, call, self._timer())
        return checked(check, answer)

    def _timer(self) -> float | None:
        """The time limit this process sets on a kernel call: none for a contained kernel,
        which its own process's deadline limits."""
        return None if getattr(self.kernel, "limits_itself", False) else self.call_seconds

    def view(self) -> KernelView:
        """The kernel's view, checked."""
        if self.known_view is None:
            self.known_view = self.query("view()", self.kernel.view, protocol.check_view)
        return self.known_view

    def runnable(self) -> tuple[int, ...]:
        """The kernel's runnable pids, checked."""
        return self.query("runnable()", self.kernel.runnable, protocol.check_runnable)

    def choices(self, live: Sequence[int] | None = None) -> list[Choice]:
        """Every choice enabled in this state, in a fixed order.

        ``live`` (the pids of live processes) saves asking the kernel for its
        view when the caller already has it.
        """
        enabled: list[Choice] = [("run", pid) for pid in self.runnable()]
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
        return [p.pid for p in self.view().processes if p.state != "exited"]

    def apply(
        self,
        choice: Choice,
        live: Sequence[int] | None = None,
        at_user_entry: Callable[[int], None] | None = None,
        enabled: Sequence[Choice] | None = None,
    ) -> StepRecord:
        """Carry out one enabled choice; raise UserError if it is not enabled.

        ``enabled``, the choices of this state if the caller has them, saves asking
        the kernel again. ``at_user_entry(pid)`` is called on a run choice after the kernel has
        dispatched the process and before its instruction runs: the moment
        the CPU enters user mode, which checks of the TLB and the MMU's
        context need to see. Raises KernelFailed when the kernel fails.
        """
        if choice not in (self.choices(live) if enabled is None else enabled):
            raise UserError(f"choice {list(choice)} is not enabled in this state")
        self.history.append(choice)
        pending = self.machine.disk.pending
        record = self._take(choice, at_user_entry)
        if self.machine.disk.pending is not pending:  # transfers were started or completed
            before = {id(request) for request in pending}
            submitted = tuple(r for r in self.machine.disk.pending if id(r) not in before)
            if submitted:
                return replace(record, submitted=submitted)
        return record

    def _take(self, choice: Choice, at_user_entry: Callable[[int], None] | None) -> StepRecord:
        kind = choice[0]
        if kind == "run":
            return self._run(int(choice[1]), choice, at_user_entry)
        if kind == "disk":
            request = self.machine.disk.complete(int(choice[1]), self.machine.memory)
            events = self.hook("on_disk()", lambda port: self.kernel.on_disk(port, request))
            return StepRecord(choice, events=events, completed=request)
        if kind == "timer":
            return StepRecord(choice, events=self.hook("on_timer()", self.kernel.on_timer))
        if kind == "spawn":
            self.spawns += 1
            return StepRecord(choice, spawned=self.spawn(int(choice[1])))
        if kind == "kill":
            target = int(choice[1])
            events = self.hook("kill()", lambda port: self.kernel.kill(port, target))
            return StepRecord(choice, events=events)
        raise UserError(f"unknown choice kind {kind!r}")

    def _run(
        self, pid: int, choice: Choice, at_user_entry: Callable[[int], None] | None
    ) -> StepRecord:
        events = self.hook("dispatch()", lambda port: self.kernel.dispatch(port, pid))
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
            events += self.hook("on_trap()", lambda port: self.kernel.on_trap(port, trap))
        forked = self._forked(pid) if result.syscall == SYS_FORK else ()
        return StepRecord(choice, result=result, events=events, start=start, forked=forked)

    def _forked(self, parent: int) -> tuple[int, ...]:
        """The live processes that appeared in ``parent``'s FORK: they run its program."""
        born = tuple(pid for pid in self.live_pids() if pid not in self.owners)
        program = self.owners.get(parent)
        for pid in born:
            if program is not None:
                self.owners[pid] = program
        return born

    # -- values -------------------------------------------------------------------

    def copy(self) -> System:
        """An independent copy (history included). Raises KernelFailed when the kernel's
        copy fails or is not one."""
        kernel = self.query("copy()", self.kernel.copy, protocol.copy_check(self.kernel))
        return System(
            machine=self.machine.copy(),
            kernel=kernel,
            programs=self.programs,
            images=self.images,
            max_spawns=self.max_spawns,
            call_seconds=self.call_seconds,
            spawns=self.spawns,
            timer_enabled=self.timer_enabled,
            kills_enabled=self.kills_enabled,
            history=list(self.history),
            owners=dict(self.owners),
        )

    def fingerprint(self) -> bytes:
        """A stable digest of the state (not of the history that reached it). Raises
        KernelFailed when the kernel's fingerprint fails or is not bytes."""
        kernel = self.query("fingerprint()", self.kernel.fingerprint, protocol.check_fingerprint)
        return fingerprint(
            self.machine.fingerprint(), kernel, self.spawns, sorted(self.owners.items())
        )


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
    call_seconds: float = HOOK_SECONDS,
    console_input: Sequence[int] = (),
    files: Sequence[tuple[str, Sequence[int]]] = (),
) -> System:
    """Install ``programs`` and ``files``, type ``console_input`` at the console, boot
    ``kernel`` on ``machine`` and spawn the programs ``initial`` indexes. Raises
    KernelFailed when the kernel fails doing so."""
    images = install(machine, programs, machine.config.swap_slots)
    install_files(machine, files)
    machine.console_input = tuple(console_input)
    system = System(
        machine,
        kernel,
        tuple(programs),
        tuple(images),
        max_spawns=max_spawns,
        timer_enabled=timer,
        kills_enabled=kills,
        call_seconds=call_seconds,
    )
    system.hook("boot()", kernel.boot)
    for index in initial:
        image = system.images[index]
        outcome = system.spawn(index)
        if isinstance(outcome, SpawnRefused):
            raise UserError(
                f"the kernel could not create initial process {image.program.name!r} "
                f"({shorten(outcome.reason, 200)}): give the machine more room for the "
                "workload (hardware.kernel_frames for page tables, hardware.swap_slots), or, "
                "if it has enough, the kernel refuses wrongly"
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
        runnable = system.runnable()
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
