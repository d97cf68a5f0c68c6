"""Workload programs and drivers shared by the reference kernel's tests.

Programs are assembled from text whose addresses depend on the layout
(``{data}``, ``{heap}`` ...), so :func:`build` assembles twice: once to
learn the text's length, once with the real addresses. Workload programs
end spinning at the label ``done`` instead of exiting, so a test can read
their final memory through the kernel's view before killing them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pagingcheck.checks import protocol
from pagingcheck.checks.abstraction import page_contents
from pagingcheck.checks.system import Choice, StepRecord, System, boot_system
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import KernelEvent, KernelView, SpawnRefused
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.port import MachinePort, Port
from pagingcheck.model.program import Program, SharedSegment


@dataclass(frozen=True)
class Built:
    """A program and the addresses its text was assembled with."""

    program: Program
    addresses: dict[str, int] = field(default_factory=dict)


def build(
    name: str,
    source: str,
    page_words: int,
    *,
    data: Sequence[int] = (),
    heap_pages: int = 0,
    stack_pages: int = 1,
    shared: tuple[SharedSegment, ...] = (),
    va_pages: int = 64,
) -> Built:
    """Assemble ``source`` (a format string over the layout's addresses) into a Program.

    Names available in ``source``: ``data``, ``heap``, ``heap_end``,
    ``stack_top``, and ``seg_<name>`` for each shared segment's first address.
    """

    def addresses(text_words: int) -> dict[str, int]:
        text_pages = max(1, -(-text_words // page_words))
        data_pages = -(-len(data) // page_words)
        found = {
            "data": text_pages * page_words,
            "heap": (text_pages + data_pages) * page_words,
            "heap_end": (text_pages + data_pages + heap_pages) * page_words,
            "stack_top": va_pages * page_words,
        }
        for segment in shared:
            found[f"seg_{segment.name}"] = segment.vpn * page_words
        return found

    first = assemble(source.format(**addresses(0)))
    where = addresses(len(first))
    words = assemble(source.format(**where))
    if len(words) != len(first):
        raise AssertionError(f"{name}: text length depends on its addresses")
    labels = {"done": _label(source.format(**where), "done")}
    program = Program(name, tuple(words), tuple(data), heap_pages, stack_pages, shared=shared)
    return Built(program, {**where, **labels})


def _label(text: str, label: str) -> int:
    """Address of ``label`` in assembled ``text`` (assemble the prefix before it)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith(f"{label}:"):
            return len(assemble("\n".join(lines[:index])))
    return -1


# -- the workloads -----------------------------------------------------------------------

REVERSE = """
        MOV #{data}, r1
        MOV #{heap_end}, r2
        MOV #{n}, r3
        MOV #0, r0
loop:   MOV (r1)+, r4
        ADD r0, r4
        MOV r4, -(r2)
        ADDI r3, #-1
        BNE @loop
        MOV #{data}, r1
        MOV #{heap_end}, r2
        MOV #{n}, r3
again:  MOV (r1)+, -(r2)
        ADDI r3, #-1
        BNE @again
        MOV r0, -(r7)
        STORE r0, @{heap}
done:   JMP @done
"""


def reverse_program(page_words: int, values: Sequence[int], name: str = "reverse") -> Built:
    """Sums ``values`` into r0 and copies them, reversed, to the end of the heap (twice:
    once through a register, once memory to memory with auto-increment and
    auto-decrement); pushes the sum and stores it at the first heap word."""
    n = len(values)
    heap_pages = -(-(n + 1) // page_words) + 1
    text = REVERSE.replace("{n}", str(n))
    return build(name, text, page_words, data=values, heap_pages=heap_pages)


def reverse_expected(built: Built, values: Sequence[int]) -> dict[int, int]:
    """The words ``reverse_program`` leaves: va -> value."""
    where = built.addresses
    total = sum(values) & 0xFFFF_FFFF
    expected = {where["heap"]: total, where["stack_top"] - 1: total}
    for index, value in enumerate(values):
        expected[where["heap_end"] - 1 - index] = value
    return expected


RESULTS_VPN = 60

FILL = """
        MOV #{heap}, r1
        MOV #{n}, r3
        MOV #{start}, r4
fill:   MOV r4, (r1)+
        ADDI r4, #{step}
        ADDI r3, #-1
        BNE @fill
        MOV #{heap}, r1
        MOV #{n}, r3
        MOV #0, r0
sum:    MOV (r1)+, r5
        ADD r0, r5
        ADDI r3, #-1
        BNE @sum
        STORE r0, @{result}
done:   JMP @done
"""


def fill_program(
    page_words: int, n: int, start: int, step: int, slot: int, name: str = "fill"
) -> Built:
    """Fills ``n`` heap words with start, start+step, ..., sums them back into r0 and
    stores the sum in word ``slot`` of the shared segment ``results``."""
    segment = SharedSegment("results", RESULTS_VPN, 1)
    text = (
        FILL.replace("{n}", str(n))
        .replace("{start}", str(start))
        .replace("{step}", str(step))
        .replace("{result}", str(RESULTS_VPN * page_words + slot))
    )
    heap_pages = -(-n // page_words)
    return build(name, text, page_words, heap_pages=heap_pages, shared=(segment,))


def fill_sum(n: int, start: int, step: int) -> int:
    """The sum ``fill_program`` computes."""
    return sum(start + step * i for i in range(n)) & 0xFFFF_FFFF


# -- drivers and readers -------------------------------------------------------------------


def make_system(
    hardware: HardwareConfig,
    programs: Sequence[Program],
    initial: Sequence[int],
    kernel: KernelConfig | None = None,
    **options: object,
) -> System:
    """Boot a reference kernel on a fresh machine and spawn ``initial``."""
    return boot_system(
        Machine(hardware),
        ReferenceKernel(hardware, kernel or KernelConfig()),
        programs,
        initial=initial,
        **options,  # type: ignore[arg-type]
    )


@contextmanager
def opened(system: System) -> Iterator[Port]:
    """The system's hardware port, open as for a kernel call (to call kernel code directly)."""
    with system.port.opened() as port:
        yield port


def kill(system: System, pid: int) -> tuple[KernelEvent, ...]:
    """Terminate ``pid`` through the kernel, outside the driver's choices."""
    return system.hook("kill()", lambda port: system.kernel.kill(port, pid))


def spawn(system: System, program: Program) -> int | SpawnRefused:
    """Install ``program`` on the disk and create a process running it."""
    index = system.add_program(program)
    assert index is not None, "the image area is full"
    image = system.images[index]
    return system.call(
        "spawn()", lambda port: system.kernel.spawn(port, image), protocol.check_spawned
    )


def booted_extents(hardware: HardwareConfig) -> object:
    """The kernel allocator's free extents right after boot."""
    kernel = ReferenceKernel(hardware)
    with MachinePort(Machine(hardware)).opened() as port:
        kernel.boot(port)
    return kernel.t.kalloc.free_extents


def registers(system: System, pid: int) -> ArchState:
    """The registers of live ``pid``: the CPU's if it is running, else its saved context."""
    kernel = system.kernel
    assert isinstance(kernel, ReferenceKernel)
    proc = kernel.t.processes.get(pid)
    assert proc is not None and proc.state != "exited", f"process {pid} is not live"
    if kernel.t.current == pid:
        return system.machine.cpu.state
    assert proc.context is not None
    return proc.context


def live(system: System) -> set[int]:
    """Pids of live processes (read from the reference kernel's process table)."""
    kernel = system.kernel
    assert isinstance(kernel, ReferenceKernel)
    return {p.pid for p in kernel.t.live()}


def read_word(system: System, pid: int, va: int, view: KernelView | None = None) -> int:
    """The word at virtual address ``va`` of ``pid``, wherever paging put its page."""
    view = view or system.kernel.view()
    proc = view.process(pid)
    assert proc is not None
    page_words = system.machine.config.page_words
    for page in proc.pages:
        if page.vpn == va // page_words:
            return page_contents(system.machine, page.home)[va % page_words]
    raise AssertionError(f"va {va} is not valid in process {pid}")


def run_until_spinning(system: System, done: dict[int, int], max_steps: int = 60_000) -> int:
    """Drive until every pid in ``done`` sits at its ``done`` pc with no I/O pending.

    Runs the unfinished runnable processes in turn, completes the oldest
    disk request when none can run, else runs a process that is already
    spinning (it may hold pages an unfinished instruction of its own still
    pins), else fires the timer. Returns the number of steps; raises
    AssertionError when the limit is reached or a process is stuck.
    """

    def unfinished() -> list[int]:
        alive = live(system)
        return [pid for pid in done if pid in alive and registers(system, pid).pc != done[pid]]

    turn = 0
    for step in range(max_steps):
        left = unfinished()
        runnable = system.kernel.runnable()
        todo = [pid for pid in runnable if pid in left]
        disk = system.machine.disk.completable()
        if todo:
            system.apply(("run", todo[turn % len(todo)]))
            turn += 1
        elif disk:
            system.apply(("disk", disk[0]))
        elif left and runnable:
            system.apply(("run", runnable[turn % len(runnable)]))
            turn += 1
        elif left:
            raise AssertionError(f"processes {left} are stuck")
        else:
            return step
    raise AssertionError(f"workload not finished in {max_steps} steps")


def record_events(system: System) -> list[KernelEvent]:
    """A list that collects every kernel event of every later choice applied to ``system``."""
    events: list[KernelEvent] = []
    apply = system.apply

    def recording(choice: Choice, *args: Any, **kwargs: Any) -> StepRecord:
        record = apply(choice, *args, **kwargs)
        events.extend(record.events)
        return record

    system.apply = recording  # type: ignore[method-assign]
    return events


def resources_all_free(system: System, booted_extents: object) -> None:
    """Assert every frame, slot and word of kernel memory is back as after boot."""
    view = system.kernel.view()
    config = system.machine.config
    assert view.free_frames == tuple(config.user_pfns)
    assert all(f.status == "free" and f.refcount == 0 and not f.users for f in view.frames)
    assert view.free_slots == tuple(range(config.swap_slots))
    assert view.slots == ()
    assert system.machine.disk.pending == ()
    kernel = system.kernel
    assert isinstance(kernel, ReferenceKernel)
    assert kernel.t.kalloc.free_extents == booted_extents
