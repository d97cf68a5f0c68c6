"""Abstract steps: spawn, retire one instruction, grow the stack, print, fork, exec, wait,
map and unmap files, exit.

Each step is a pure function from a :class:`SpecState` to a new one. An
instruction runs with the same ISA semantics as the hardware
(:func:`pagingcheck.model.isa.execute`) against ideal memory: an access to an
invalid page or one its protection forbids is a signal, and the process
dies; otherwise the instruction retires with its effects. An access that the
program's stack rule (:meth:`~pagingcheck.model.program.Program.stack_growth`)
says grows the stack first adds zero-filled pages (:func:`grow`), then the
instruction runs again, as on the real machine after the kernel grew it.

Where the spec leaves a choice to the kernel (the pid a FORK's child gets,
whether FORK, EXEC or MMAP finds the memory it needs, which exited child a WAIT
returns), the step takes the kernel's decision as an argument: the checks
read it from what the system did and judge everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from pagingcheck.model.bits import EXEC, READ, USER, WRITE
from pagingcheck.model.isa import (
    EXEC_FAILED,
    FORK_FAILED,
    KILLED,
    MAP_SHARED,
    MMAP_FAILED,
    MUNMAP_FAILED,
    READ_FAILED,
    SBRK_FAILED,
    SYS_EXEC,
    SYS_EXIT,
    SYS_FORK,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_PUTC,
    SYS_READ,
    SYS_SBRK,
    SYS_WAIT,
    SYS_WRITE,
    WAIT_FAILED,
    WRITE_FAILED,
    ArchState,
    Completed,
    Faulted,
    Writes,
    buffer_page,
    execute,
)
from pagingcheck.model.program import STACK_POINTER, Program, heap_break, map_range, signed
from pagingcheck.model.traps import Access, Fault, TrapKind
from pagingcheck.spec.state import Family, Mapping, ObjectKey, Page, SpecProcess, SpecState

_NEEDS = {Access.FETCH: EXEC | USER, Access.READ: READ | USER, Access.WRITE: WRITE | USER}


@dataclass(frozen=True)
class Retired:
    """The instruction retired: its memory writes (va, value) in order, its system call."""

    writes: Writes
    syscall: int | None


@dataclass(frozen=True)
class Signalled:
    """The instruction made an invalid or forbidden access (or did not decode); ``writes``
    are the ones a PUSHM made before it, which memory keeps."""

    reason: Literal["invalid", "protection", "illegal"]
    va: int | None
    writes: Writes = ()


@dataclass(frozen=True)
class Blocked:
    """The instruction waits (a WAIT while every child of the caller is alive): it has not
    retired, nothing changed, and it runs again once a child exits."""


Outcome = Retired | Signalled | Blocked


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
    return replace(state, processes=processes, objects=tuple(sorted(objects.items())))


def exit_process(state: SpecState, pid: int, status: int = KILLED) -> SpecState:
    """Remove ``pid``, which exited with ``status``; objects no live process maps any more
    disappear. A live parent can WAIT for the status; ``pid``'s own children are orphans
    from now on (nobody waits for them), and the statuses it did not wait for are gone."""
    family = state.family
    parent = family.parent(pid)
    parents = tuple((child, p) for child, p in family.parents if pid not in (child, p))
    exited = tuple(entry for entry in family.exited if entry[0] != pid)
    if parent is not None:
        exited = tuple(sorted((*exited, (parent, pid, status))))
    return replace(_without(state, pid), family=Family(parents, exited))


def _without(state: SpecState, pid: int) -> SpecState:
    """``state`` without process ``pid`` and the objects only it mapped (files stay)."""
    processes = tuple(p for p in state.processes if p.pid != pid)
    used = {mapping.key for p in processes for _, mapping in p.space}
    objects = tuple((key, pages) for key, pages in state.objects if key in used or key[0] == "file")
    return replace(state, processes=processes, objects=objects)


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
    process = state.process(process.pid) or process  # an earlier write may have copied a page
    mapping = process.mapping(va // page_words)
    assert mapping is not None
    if mapping.copy_on_write:
        state = copy_page(state, process.pid, va // page_words)
        mapping = Mapping(object_key(process.pid, va // page_words, None), 0, mapping.prot)
    objects = dict(state.objects)
    pages = list(objects[mapping.key])
    page = list(pages[mapping.index])
    page[va % page_words] = value & 0xFFFF_FFFF
    pages[mapping.index] = tuple(page)
    objects[mapping.key] = tuple(pages)
    return replace(state, objects=tuple(sorted(objects.items())))


def written(state: SpecState, pid: int, writes: Writes, page_words: int) -> SpecState:
    """``state`` after ``pid``'s ``writes`` (va, value), in order: an instruction's, or the
    ones a PUSHM made before it faulted, which memory keeps while the instruction waits to
    run again (so another process sharing the page may read them meanwhile)."""
    process = state.process(pid)
    if process is None:
        raise KeyError(f"spec.written: no live process {pid}")
    for va, value in writes:
        state = _write(state, process, va, value, page_words)
    return state


def copy_page(state: SpecState, pid: int, vpn: int) -> SpecState:
    """``pid``'s copy-on-write page ``vpn`` made its own private page, a copy of the file's
    page as it is now: done by the first write to a private mapping of a file, or earlier,
    when the kernel copies the page at a fault of ``pid`` (its choice, which the checks
    read from what it did)."""
    process = state.process(pid)
    mapping = process.mapping(vpn) if process is not None else None
    if process is None or mapping is None or not mapping.copy_on_write:
        raise KeyError(f"spec.copy_page: process {pid} has no copy-on-write page {vpn}")
    pages = state.object(mapping.key)
    assert pages is not None
    key = object_key(pid, vpn, None)
    own = Mapping(key, 0, mapping.prot)
    moved = replace(process, space=tuple((v, own if v == vpn else m) for v, m in process.space))
    objects = dict(state.objects)
    objects[key] = (pages[mapping.index],)
    return replace(
        state,
        processes=tuple(moved if p.pid == pid else p for p in state.processes),
        objects=tuple(sorted(objects.items())),
    )


@dataclass(frozen=True)
class Geometry:
    """What the spec needs of the machine: the page size and the address space's size."""

    page_words: int
    va_pages: int


def growth(
    state: SpecState, pid: int, va: int, program: Program | None, geometry: Geometry
) -> range:
    """The pages an access of ``pid`` to ``va`` grows its stack by (empty: none)."""
    process = state.process(pid)
    if process is None or program is None:
        return range(0)
    floor = program.stack_floor(geometry.va_pages)
    stack = [vpn for vpn, _ in process.space if vpn >= floor]
    lowest = min(stack, default=geometry.va_pages)
    sp = process.regs.regs[STACK_POINTER]
    return program.stack_growth(va, sp, lowest, geometry.page_words, geometry.va_pages)


def grow(state: SpecState, pid: int, vpns: range, page_words: int) -> SpecState:
    """``pid``'s stack grown by the zero-filled private pages ``vpns``."""
    if state.process(pid) is None:
        raise KeyError(f"spec.grow: no live process {pid}")
    return _add_pages(state, pid, vpns, page_words)


def _add_pages(state: SpecState, pid: int, vpns: range, page_words: int) -> SpecState:
    """``pid`` with the zero-filled private read-write pages ``vpns`` added."""
    process = state.process(pid)
    assert process is not None
    objects = dict(state.objects)
    space = dict(process.space)
    for vpn in vpns:
        key = object_key(pid, vpn, None)
        objects[key] = ((0,) * page_words,)
        space[vpn] = Mapping(key, 0, READ | WRITE | USER)
    grown = replace(process, space=tuple(sorted(space.items())))
    return replace(
        state,
        processes=tuple(grown if p.pid == pid else p for p in state.processes),
        objects=tuple(sorted(objects.items())),
    )


def heap_pages(process: SpecProcess, program: Program, page_words: int) -> list[int]:
    """The vpns of ``process``'s heap: its valid pages in the heap's room."""
    start = program.heap_start(page_words)
    return [vpn for vpn, _ in process.space if start <= vpn < start + program.heap_limit]


def sbrk(
    state: SpecState, pid: int, regs: ArchState, program: Program | None, geometry: Geometry
) -> tuple[SpecState, ArchState]:
    """The SBRK system call of ``pid`` (registers ``regs`` after it trapped): the heap moved
    by r1 pages (new pages are zero, dropped ones disappear), r0 the old break's address;
    or nothing changed and r0 :data:`SBRK_FAILED`."""
    process = state.process(pid)
    assert process is not None
    page_words = geometry.page_words
    start = program.heap_start(page_words) if program else 0
    limit = program.heap_limit if program else 0
    brk = start + (len(heap_pages(process, program, page_words)) if program else 0)
    new = heap_break(brk, signed(regs.regs[1]), start, limit) if program else None
    result = SBRK_FAILED if new is None else brk * page_words
    if new is not None and new > brk:
        state = _add_pages(state, pid, range(brk, new), page_words)
    elif new is not None and new < brk:
        state = _drop_pages(state, pid, range(new, brk))
    return state, replace(regs, regs=(result, *regs.regs[1:]))


def _drop_pages(state: SpecState, pid: int, vpns: range) -> SpecState:
    """``pid`` without its (private) pages ``vpns``, whose objects disappear."""
    process = state.process(pid)
    assert process is not None
    gone = {object_key(pid, vpn, None) for vpn in vpns}
    shrunk = replace(process, space=tuple((v, m) for v, m in process.space if v not in vpns))
    return replace(
        state,
        processes=tuple(shrunk if p.pid == pid else p for p in state.processes),
        objects=tuple((key, pages) for key, pages in state.objects if key not in gone),
    )


def write(
    state: SpecState, pid: int, regs: ArchState, page_words: int
) -> tuple[SpecState, ArchState]:
    """The WRITE system call of ``pid`` (registers ``regs`` after it trapped): the low byte
    of each word of the buffer goes to the console and r0 is its length; or, for a buffer
    not within one page ``pid`` may read, nothing is printed and r0 is WRITE_FAILED."""
    va, count = regs.regs[1], regs.regs[2]
    mapping = _buffer(state, pid, regs, page_words, Access.READ)
    pages = state.object(mapping.key) if mapping is not None else None
    if mapping is None or pages is None:
        return state, replace(regs, regs=(WRITE_FAILED, *regs.regs[1:]))
    offset = va % page_words
    words = pages[mapping.index][offset : offset + count]
    printed = tuple(word & 0xFF for word in words)
    return (
        replace(state, console=(*state.console, *printed)),
        replace(regs, regs=(count, *regs.regs[1:])),
    )


def _buffer(
    state: SpecState, pid: int, regs: ArchState, page_words: int, access: Access
) -> Mapping | None:
    """The mapping of the page holding a READ or WRITE buffer (r2 words at r1) when it is
    within one page (:func:`~pagingcheck.model.isa.buffer_page`) that ``pid`` may
    ``access``; None otherwise (the call fails)."""
    vpn = buffer_page(regs.regs[1], regs.regs[2], page_words)
    process = state.process(pid)
    mapping = process.mapping(vpn) if process is not None and vpn is not None else None
    if mapping is None or mapping.prot & _NEEDS[access] != _NEEDS[access]:
        return None
    return mapping


def read(
    state: SpecState, pid: int, regs: ArchState, page_words: int
) -> tuple[SpecState, ArchState]:
    """The READ system call of ``pid`` (registers ``regs`` after it trapped): the buffer's
    words take the console's next input bytes, one each, until the buffer is full or the
    input runs out, and r0 is how many it took; or, for a buffer not within one page
    ``pid`` may write, nothing is read and r0 is READ_FAILED."""
    va, count = regs.regs[1], regs.regs[2]
    process = state.process(pid)
    if process is None or _buffer(state, pid, regs, page_words, Access.WRITE) is None:
        return state, replace(regs, regs=(READ_FAILED, *regs.regs[1:]))
    typed = state.console_input[:count]
    for offset, byte in enumerate(typed):
        state = _write(state, process, va + offset, byte, page_words)
    state = replace(state, console_input=state.console_input[len(typed) :])
    return state, replace(regs, regs=(len(typed), *regs.regs[1:]))


def fork(
    state: SpecState, pid: int, regs: ArchState, child: int | None
) -> tuple[SpecState, ArchState]:
    """The FORK system call of ``pid`` (registers ``regs`` after it trapped), whose child the
    kernel numbered ``child``: the child is a copy of ``pid`` (its private pages copied,
    shared objects joined) with r0 = 0, and ``pid``'s r0 is ``child``. With ``child`` None
    the kernel could not make one: nothing changes and r0 is :data:`FORK_FAILED`. Paging
    is invisible here: how the kernel shares the copies (copy-on-write) is its own affair."""
    process = state.process(pid)
    assert process is not None
    if child is None:
        return state, replace(regs, regs=(FORK_FAILED, *regs.regs[1:]))
    if state.process(child) is not None:
        raise KeyError(f"spec.fork: process {child} is alive already")
    objects = dict(state.objects)
    space: list[tuple[int, Mapping]] = []
    for vpn, mapping in process.space:
        if mapping.key == ("private", pid, vpn):
            copy = ("private", child, vpn)
            objects[copy] = objects[mapping.key]
            mapping = replace(mapping, key=copy)
        space.append((vpn, mapping))
    copied = SpecProcess(child, replace(regs, regs=(0, *regs.regs[1:])), tuple(space))
    processes = tuple(sorted((*state.processes, copied), key=lambda p: p.pid))
    parents = tuple(sorted((*state.family.parents, (child, pid))))
    state = replace(
        state,
        processes=processes,
        objects=tuple(sorted(objects.items())),
        family=replace(state.family, parents=parents),
    )
    return state, replace(regs, regs=(child, *regs.regs[1:]))


def exec_program(
    state: SpecState,
    pid: int,
    regs: ArchState,
    programs: Sequence[Program],
    geometry: Geometry,
    failed: bool = False,
) -> tuple[SpecState, ArchState, Program | None]:
    """The EXEC system call of ``pid`` (registers ``regs`` after it trapped): ``pid`` starts
    workload program number r1 afresh, as a process spawned to run it would (its private
    pages new, shared objects joined), keeping its pid, its family and the console; the
    program is returned with the new state and registers. When r1 names no program, or
    the kernel could not build the new space (``failed``), nothing changes, r0 is
    :data:`EXEC_FAILED` and the program is None."""
    index = regs.regs[1]
    if failed or index >= len(programs):
        return state, replace(regs, regs=(EXEC_FAILED, *regs.regs[1:])), None
    program = programs[index]
    started = spawn(_without(state, pid), pid, program, geometry.page_words, geometry.va_pages)
    process = started.process(pid)
    assert process is not None
    return started, process.regs, program


def wait(
    state: SpecState, pid: int, regs: ArchState, reaped: int | None
) -> tuple[SpecState, ArchState] | None:
    """The WAIT system call of ``pid`` (registers ``regs`` after it trapped): r0 the exited
    child ``reaped`` (the kernel's pick; the lowest one when ``reaped`` is none of them),
    r1 its status, and the child forgotten; r0 :data:`WAIT_FAILED` when ``pid`` has no
    children; None (blocked) while all its children are alive."""
    family = state.family
    statuses = dict(family.statuses(pid))
    if not statuses:
        if family.children(pid):
            return None
        return state, replace(regs, regs=(WAIT_FAILED, *regs.regs[1:]))
    child = reaped if reaped in statuses else min(statuses)
    exited = tuple(entry for entry in family.exited if entry[:2] != (pid, child))
    returned = replace(regs, regs=(child, statuses[child], *regs.regs[2:]))
    return replace(state, family=replace(family, exited=exited)), returned


def waits(state: SpecState, pid: int, geometry: Geometry) -> bool:
    """Whether ``pid`` is blocked in a WAIT (its next instruction is one, and every child it
    has is alive): it owes no progress until a child exits."""
    process = state.process(pid)
    if process is None or not state.family.children(pid) or state.family.statuses(pid):
        return False
    outcome = execute(process.regs, _IdealPort(state, process, geometry.page_words))
    return isinstance(outcome, Completed) and outcome.syscall == SYS_WAIT


def mmap(
    state: SpecState,
    pid: int,
    regs: ArchState,
    files: Sequence[str],
    program: Program | None,
    geometry: Geometry,
    failed: bool = False,
) -> tuple[SpecState, ArchState]:
    """The MMAP system call of ``pid`` (registers ``regs`` after it trapped): every page of
    file number r1 (``files`` names them by number) mapped read-write from virtual address
    r2, shared with the file when r3 has :data:`MAP_SHARED`, else copy-on-write over it;
    r0 is r2. When r1 names no file, the pages are not all invalid and within ``program``'s
    map area, or the kernel could not map them (``failed``), nothing changes and r0 is
    :data:`MMAP_FAILED`."""
    process = state.process(pid)
    assert process is not None
    number, va, flags = regs.regs[1], regs.regs[2], regs.regs[3]
    pages = state.object(("file", files[number])) if number < len(files) else None
    area = program.map_area(geometry.page_words, geometry.va_pages) if program else frozenset()
    vpns = map_range(va, len(pages), geometry.page_words, area) if pages else None
    valid = {vpn for vpn, _ in process.space}
    if failed or vpns is None or any(vpn in valid for vpn in vpns):
        return state, replace(regs, regs=(MMAP_FAILED, *regs.regs[1:]))
    key = ("file", files[number])
    private = not flags & MAP_SHARED
    added = {vpn: Mapping(key, i, READ | WRITE | USER, private) for i, vpn in enumerate(vpns)}
    space = tuple(sorted({**dict(process.space), **added}.items()))
    mapped = replace(process, space=space)
    state = replace(state, processes=tuple(mapped if p.pid == pid else p for p in state.processes))
    return state, replace(regs, regs=(va, *regs.regs[1:]))


def munmap(
    state: SpecState, pid: int, regs: ArchState, program: Program | None, geometry: Geometry
) -> tuple[SpecState, ArchState]:
    """The MUNMAP system call of ``pid`` (registers ``regs`` after it trapped): the r2 pages
    from virtual address r1, every one valid and within ``program``'s map area (pages an
    MMAP mapped), are gone (private copies with them; files keep what was written through
    a shared mapping) and r0 is 0; otherwise nothing changes and r0 is
    :data:`MUNMAP_FAILED`."""
    process = state.process(pid)
    assert process is not None
    area = program.map_area(geometry.page_words, geometry.va_pages) if program else frozenset()
    vpns = map_range(regs.regs[1], regs.regs[2], geometry.page_words, area)
    valid = {vpn for vpn, _ in process.space}
    if vpns is None or any(vpn not in valid for vpn in vpns):
        return state, replace(regs, regs=(MUNMAP_FAILED, *regs.regs[1:]))
    return _drop_pages(state, pid, vpns), replace(regs, regs=(0, *regs.regs[1:]))


def retire(
    state: SpecState,
    pid: int,
    geometry: Geometry,
    program: Program | None = None,
    child: int | None = None,
    *,
    programs: Sequence[Program] = (),
    exec_failed: bool = False,
    reaped: int | None = None,
    files: Sequence[str] = (),
    map_failed: bool = False,
) -> tuple[SpecState, Outcome]:
    """Run ``pid``'s next instruction to completion against ideal memory.

    Returns the new state and what happened. An access that grows the stack
    (``program``'s rule) grows it and runs the instruction again. A signal kills
    the process (the default action); the exit system call retires and then
    removes it with its r0 as its status; PUTC adds r1's low byte to the console, WRITE
    a buffer's (:func:`write`); READ fills a buffer from the console's input
    (:func:`read`); FORK makes process ``child`` (:func:`fork`); EXEC starts
    one of ``programs`` unless the kernel failed it (:func:`exec_program`); WAIT returns
    the exited child ``reaped`` or blocks (:func:`wait`); MMAP maps one of ``files``
    unless the kernel failed it (:func:`mmap`), MUNMAP unmaps (:func:`munmap`).
    """
    page_words = geometry.page_words
    while True:
        process = state.process(pid)
        if process is None:
            raise KeyError(f"spec.retire: no live process {pid}")
        outcome = execute(process.regs, _IdealPort(state, process, page_words))
        if not isinstance(outcome, Faulted) or outcome.fault.kind is not TrapKind.PAGE_FAULT:
            break
        pages = growth(state, pid, outcome.fault.va, program, geometry)
        if not pages:
            break
        state = grow(state, pid, pages, page_words)
    if isinstance(outcome, Faulted):
        reason: Literal["invalid", "protection"] = (
            "invalid" if outcome.fault.kind is TrapKind.PAGE_FAULT else "protection"
        )
        state = written(state, pid, outcome.writes, page_words)
        return exit_process(state, pid), Signalled(reason, outcome.fault.va, outcome.writes)
    if not isinstance(outcome, Completed):
        return exit_process(state, pid), Signalled("illegal", None)
    state = written(state, pid, outcome.writes, page_words)
    regs = outcome.state
    if outcome.syscall == SYS_SBRK:
        state, regs = sbrk(state, pid, regs, program, geometry)
    elif outcome.syscall == SYS_PUTC:
        state = replace(state, console=(*state.console, regs.regs[1] & 0xFF))
    elif outcome.syscall == SYS_WRITE:
        state, regs = write(state, pid, regs, page_words)
    elif outcome.syscall == SYS_READ:
        state, regs = read(state, pid, regs, page_words)
    elif outcome.syscall == SYS_FORK:
        state, regs = fork(state, pid, regs, child)
    elif outcome.syscall == SYS_EXEC:
        state, regs, _ = exec_program(state, pid, regs, programs, geometry, exec_failed)
    elif outcome.syscall == SYS_MMAP:
        state, regs = mmap(state, pid, regs, files, program, geometry, map_failed)
    elif outcome.syscall == SYS_MUNMAP:
        state, regs = munmap(state, pid, regs, program, geometry)
    elif outcome.syscall == SYS_WAIT:
        waited = wait(state, pid, regs, reaped)
        if waited is None:
            return state, Blocked()
        state, regs = waited
    moved = replace(state.process(pid) or process, regs=regs)
    state = replace(state, processes=tuple(moved if p.pid == pid else p for p in state.processes))
    if outcome.syscall == SYS_EXIT:
        state = exit_process(state, pid, regs.regs[0])
    return state, Retired(outcome.writes, outcome.syscall)
