"""Abstract steps: spawn, retire one instruction, exit.

Each step is a pure function from a :class:`SpecState` to a new one. An
instruction runs with the same ISA semantics as the hardware
(:func:`pagingcheck.model.isa.execute`) against ideal memory: an access to an
invalid page or one its protection forbids is a signal, and the process
dies; otherwise the instruction retires with its effects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pagingcheck.model.bits import EXEC, READ, USER, WRITE
from pagingcheck.model.isa import SYS_EXIT, ArchState, Completed, Faulted, execute
from pagingcheck.model.program import STACK_POINTER, Program
from pagingcheck.model.traps import Access, Fault, TrapKind
from pagingcheck.spec.state import Mapping, ObjectKey, Page, SpecProcess, SpecState

_NEEDS = {Access.FETCH: EXEC | USER, Access.READ: READ | USER, Access.WRITE: WRITE | USER}


@dataclass(frozen=True)
class Retired:
    """The instruction retired: its memory write and system call, if any."""

    write: tuple[int, int] | None
    syscall: int | None


@dataclass(frozen=True)
class Signalled:
    """The instruction made an invalid or forbidden access (or did not decode)."""

    reason: Literal["invalid", "protection", "illegal"]
    va: int | None


Outcome = Retired | Signalled


def object_key(pid: int, vpn: int, shared_key: str | None) -> ObjectKey:
    """The object a layout page belongs to."""
    if shared_key is None:
        return ("private", pid, vpn)
    kind, _, name = shared_key.partition(":")
    return (kind, name)


def spawn(
    state: SpecState, pid: int, program: Program, page_words: int, va_pages: int
) -> SpecState:
    """A new process ``pid`` running ``program``; shared objects are joined, not copied."""
    objects = dict(state.objects)
    fresh: dict[ObjectKey, dict[int, Page]] = {}
    space: list[tuple[int, Mapping]] = []
    for page in program.layout(page_words, va_pages):
        key = object_key(pid, page.vpn, page.shared_key)
        if key not in objects:
            fresh.setdefault(key, {})[page.index] = page.initial
        space.append((page.vpn, Mapping(key, page.index, page.prot)))
    for key, pages in fresh.items():
        objects[key] = tuple(pages[i] for i in range(len(pages)))
    regs = [0] * 8
    regs[STACK_POINTER] = program.initial_stack_pointer(page_words, va_pages)
    process = SpecProcess(pid, ArchState(tuple(regs), program.entry, 0), tuple(space))
    processes = tuple(sorted((*state.processes, process), key=lambda p: p.pid))
    return SpecState(processes, tuple(sorted(objects.items())))


def exit_process(state: SpecState, pid: int) -> SpecState:
    """Remove ``pid``; objects no live process maps any more disappear."""
    processes = tuple(p for p in state.processes if p.pid != pid)
    used = {mapping.key for p in processes for _, mapping in p.space}
    objects = tuple((key, pages) for key, pages in state.objects if key in used)
    return SpecState(processes, objects)


class _IdealPort:
    """A MemoryPort over one process's view of ideal memory."""

    def __init__(self, state: SpecState, process: SpecProcess, page_words: int) -> None:
        self.state = state
        self.process = process
        self.page_words = page_words

    def _resolve(self, va: int, access: Access) -> Mapping | Fault:
        mapping = self.process.mapping(va // self.page_words) if va >= 0 else None
        if mapping is None:
            return Fault(TrapKind.PAGE_FAULT, va, access)
        if mapping.prot & _NEEDS[access] != _NEEDS[access]:
            return Fault(TrapKind.PROTECTION_FAULT, va, access)
        return mapping

    def load(self, va: int, access: Access) -> int | Fault:
        mapping = self._resolve(va, access)
        if isinstance(mapping, Fault):
            return mapping
        pages = self.state.object(mapping.key)
        assert pages is not None
        return pages[mapping.index][va % self.page_words]

    def store(self, va: int, value: int) -> Fault | None:
        mapping = self._resolve(va, Access.WRITE)
        return mapping if isinstance(mapping, Fault) else None


def _write(
    state: SpecState, process: SpecProcess, va: int, value: int, page_words: int
) -> SpecState:
    mapping = process.mapping(va // page_words)
    assert mapping is not None
    objects = dict(state.objects)
    pages = list(objects[mapping.key])
    page = list(pages[mapping.index])
    page[va % page_words] = value & 0xFFFF_FFFF
    pages[mapping.index] = tuple(page)
    objects[mapping.key] = tuple(pages)
    return replace(state, objects=tuple(sorted(objects.items())))


def retire(state: SpecState, pid: int, page_words: int) -> tuple[SpecState, Outcome]:
    """Run ``pid``'s next instruction to completion against ideal memory.

    Returns the new state and what happened. A signal kills the process (the
    default action); the exit system call retires and then removes it.
    """
    process = state.process(pid)
    if process is None:
        raise KeyError(f"spec.retire: no live process {pid}")
    outcome = execute(process.regs, _IdealPort(state, process, page_words))
    if isinstance(outcome, Faulted):
        reason: Literal["invalid", "protection"] = (
            "invalid" if outcome.fault.kind is TrapKind.PAGE_FAULT else "protection"
        )
        return exit_process(state, pid), Signalled(reason, outcome.fault.va)
    if not isinstance(outcome, Completed):
        return exit_process(state, pid), Signalled("illegal", None)
    if outcome.write is not None:
        state = _write(state, process, outcome.write[0], outcome.write[1], page_words)
    moved = replace(process, regs=outcome.state)
    state = replace(state, processes=tuple(moved if p.pid == pid else p for p in state.processes))
    if outcome.syscall == SYS_EXIT:
        state = exit_process(state, pid)
    return state, Retired(outcome.write, outcome.syscall)
