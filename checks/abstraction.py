"""The abstraction function: system state to spec state.

Per component, in plain functions:

* a process's registers are the CPU's if it is on the CPU, the saved context
  otherwise, and from a fault until the faulting instruction retires, the
  state the driver recorded at the start of that instruction (the
  instruction has not retired, so the spec has not moved);
* a page's contents are its frame's when a present PTE maps it (found by
  walking the page table in memory), else where the kernel's view says
  (a frame while it is written back, a swap slot, an image block, zeros);
  the words themselves are always read from the hardware;
* every workload file (the disk's directory) is an object, mapped or not: a
  page a process maps is where that mapping finds it, any other in the frame
  the view lists it in, else in its disk block;
* the console is what the hardware's console has printed, and its input what
  is still typed there, unread.

``homes_agree`` checks the view's homes against the page tables, so a view
that misplaces a page is a violation, not a silent change of contents.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType

from pagingcheck.checks.observe import Observed
from pagingcheck.impl.interface import Location, ProcessView
from pagingcheck.model.errors import UserError
from pagingcheck.model.isa import ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.spec.machine import object_key
from pagingcheck.spec.state import Mapping, ObjectKey, Page, SpecProcess, SpecState


def page_contents(machine: Machine, home: Location) -> Page:
    """The words of a page stored at ``home`` (a slot or image is its disk block)."""
    words = machine.config.page_words
    if home.where == "frame" and home.index < machine.config.total_frames:
        return machine.memory.frames[home.index]
    if home.where in ("slot", "image") and 0 <= home.index < machine.config.disk_blocks:
        return machine.disk.blocks[home.index]
    return (0,) * words


def registers(
    state: Observed, process: ProcessView, fault_starts: MappingType[int, ArchState]
) -> ArchState:
    """The abstract registers of ``process``.

    From a fault until the faulting instruction retires, they are the state
    at the start of that instruction (the driver's record): the spec has not
    moved. Whether the kernel backed up correctly is checked when the
    process runs again (restart exactness).
    """
    if process.pid in fault_starts:
        return fault_starts[process.pid]
    if state.view.current == process.pid and process.state == "running":
        return state.machine.cpu.state
    if process.context is None:
        raise UserError(
            f"the kernel's view gives process {process.pid} ({process.state}, not on the CPU) "
            "no saved registers; 'pagingcheck docs validate' says what the view must hold"
        )
    return process.context


def abstract(state: Observed, fault_starts: MappingType[int, ArchState]) -> SpecState:
    """The spec state a system state stands for."""
    processes: list[SpecProcess] = []
    objects: dict[ObjectKey, dict[int, Page]] = {}
    for proc in state.live_processes:
        space: list[tuple[int, Mapping]] = []
        for page in proc.pages:
            key = object_key(proc.pid, page.vpn, page.shared_key)
            index = page.index if page.shared_key is not None else 0
            home = state.homes[(proc.pid, page.vpn)]
            objects.setdefault(key, {})[index] = page_contents(state.machine, home)
            space.append((page.vpn, Mapping(key, index, page.prot, page.copy_on_write)))
        regs = registers(state, proc, fault_starts)
        processes.append(SpecProcess(proc.pid, regs, tuple(sorted(space, key=lambda s: s[0]))))
    for (name, index), home in state.file_homes.items():
        objects.setdefault(("file", name), {}).setdefault(index, page_contents(state.machine, home))
    frozen = tuple(
        (key, tuple(pages[i] for i in sorted(pages))) for key, pages in sorted(objects.items())
    )
    return SpecState(tuple(processes), frozen, state.machine.console, state.machine.console_input)
