"""Abstract state: processes executing against ideal memory.

There are no frames, TLB, swap or faults here: paging is invisible. Memory
is a set of **objects**, each a tuple of pages of words:

* ``("private", pid, vpn)``: one private page of one process;
* ``("text", program)``: a program's text, shared by every process running it;
* ``("segment", name)``: a shared segment, shared by every process attaching it.

A process maps each valid vpn to (object, page index within it, protection).
The **console** is every byte the processes have printed, in the order their
instructions retired. All values are frozen; steps in
:mod:`pagingcheck.spec.machine` return new states.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagingcheck.model.isa import ArchState

ObjectKey = tuple[str, ...] | tuple[str, int, int]
Page = tuple[int, ...]


@dataclass(frozen=True)
class Mapping:
    """What a valid virtual page of a process refers to."""

    key: ObjectKey
    index: int
    prot: int


@dataclass(frozen=True)
class SpecProcess:
    """A process: its registers and its address space."""

    pid: int
    regs: ArchState
    space: tuple[tuple[int, Mapping], ...]  # sorted (vpn, mapping)

    def mapping(self, vpn: int) -> Mapping | None:
        """The mapping of ``vpn``, or None when the page is invalid."""
        for page, mapping in self.space:
            if page == vpn:
                return mapping
        return None


@dataclass(frozen=True)
class SpecState:
    """Live processes (sorted by pid), the objects they map and what they printed."""

    processes: tuple[SpecProcess, ...] = ()
    objects: tuple[tuple[ObjectKey, tuple[Page, ...]], ...] = ()  # sorted by key
    console: tuple[int, ...] = ()

    def process(self, pid: int) -> SpecProcess | None:
        """The live process ``pid``, or None."""
        for proc in self.processes:
            if proc.pid == pid:
                return proc
        return None

    def object(self, key: ObjectKey) -> tuple[Page, ...] | None:
        """The pages of object ``key``, or None."""
        for name, pages in self.objects:
            if name == key:
                return pages
        return None

    def page_of(self, pid: int, vpn: int) -> Page | None:
        """The words of ``pid``'s page ``vpn``, or None when invalid."""
        proc = self.process(pid)
        mapping = proc.mapping(vpn) if proc else None
        if mapping is None:
            return None
        pages = self.object(mapping.key)
        return None if pages is None else pages[mapping.index]
