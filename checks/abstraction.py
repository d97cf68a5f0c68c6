"""The abstraction function: system state to spec state.

Per component, in plain functions:

* a process's registers are the CPU's if it is on the CPU, the saved context
  otherwise, and from a fault until the faulting instruction retires, the
  start-of-instruction state the hardware's ghost record held at the fault
  (the instruction has not retired, so the spec has not moved);
* a page's contents are its frame's if resident (or being written back),
  else its swap slot's, else its image block's, else zeros, as the kernel's
  view says where they are; the words themselves are read from the
  hardware.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType

from pagingcheck.impl.interface import KernelView, Location, ProcessView
from pagingcheck.model.isa import ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.spec.machine import object_key
from pagingcheck.spec.state import Mapping, ObjectKey, Page, SpecProcess, SpecState


def page_contents(machine: Machine, home: Location) -> Page:
    """The words of a page stored at ``home``."""
    words = machine.config.page_words
    if home.where == "frame":
        base = home.index * words
        return tuple(int(w) for w in machine.memory.words[base : base + words])
    if home.where in ("slot", "image"):
        block = home.index if home.where == "slot" else machine.config.swap_slots + home.index
        return tuple(int(w) for w in machine.disk.blocks[block])
    return (0,) * words


def registers(
    machine: Machine,
    view: KernelView,
    process: ProcessView,
    fault_starts: MappingType[int, ArchState],
) -> ArchState:
    """The abstract registers of ``process``.

    From a fault until the faulting instruction retires, they are the state
    at the start of that instruction (the checker's record of the hardware's
    ghost state): the spec has not moved. Whether the kernel backed up
    correctly is checked when the process runs again (restart exactness).
    """
    if process.pid in fault_starts:
        return fault_starts[process.pid]
    if view.current == process.pid and process.state == "running":
        return machine.cpu.state
    if process.context is None:
        raise AssertionError(f"abstract: process {process.pid} has no saved context")
    return process.context


def abstract(
    machine: Machine, view: KernelView, fault_starts: MappingType[int, ArchState]
) -> SpecState:
    """The spec state a system state stands for."""
    processes: list[SpecProcess] = []
    objects: dict[ObjectKey, dict[int, Page]] = {}
    for proc in sorted(view.processes, key=lambda p: p.pid):
        if proc.state == "exited":
            continue
        space: list[tuple[int, Mapping]] = []
        for page in proc.pages:
            key = object_key(proc.pid, page.vpn, page.shared_key)
            index = page.index if page.shared_key is not None else 0
            objects.setdefault(key, {})[index] = page_contents(machine, page.home)
            space.append((page.vpn, Mapping(key, index, page.prot)))
        regs = registers(machine, view, proc, fault_starts)
        processes.append(SpecProcess(proc.pid, regs, tuple(sorted(space, key=lambda s: s[0]))))
    frozen = tuple(
        (key, tuple(pages[i] for i in sorted(pages))) for key, pages in sorted(objects.items())
    )
    return SpecState(tuple(processes), frozen)
