"""Abstract state: processes executing against ideal memory.

There are no frames, TLB, swap or faults here: paging is invisible. Memory
is a set of **objects**, each a tuple of pages of words:

* ``("private", pid, vpn)``: one private page of one process;
* ``("text", program)``: a program's text, shared by every process running it;
* ``("segment", name)``: a shared segment, shared by every process attaching it;
* ``("file", name)``: a file of the workload, ideal storage: it is always there,
  mapped or not, and a shared mapping of it (MMAP) shows it as it is now.

A process maps each valid vpn to (object, page index within it, protection); a
private mapping of a file page is *copy-on-write*: it shows the file's page until the
process first writes it, which gives the process its own copy.
The **console** is every byte the processes have printed, in the order their
instructions retired; its **input** is the bytes typed at it that no READ
has taken yet, next first. The **family** is who forked whom and the exit statuses
no parent has waited for yet: what WAIT returns. No hardware shows it (the
kernel keeps it), so it is left out of a state's equality and is checked
only through what WAIT returns. All values are frozen; steps in
:mod:`pagingcheck.spec.machine` return new states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pagingcheck.model.isa import ArchState

ObjectKey = tuple[str, ...] | tuple[str, int, int]
Page = tuple[int, ...]


@dataclass(frozen=True)
class Mapping:
    """What a valid virtual page of a process refers to."""

    key: ObjectKey
    index: int
    prot: int
    copy_on_write: bool = False  # a private mapping of a file page: a write copies it first


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
class Family:
    """Which live process forked which, and the children that exited with no WAIT yet."""

    parents: tuple[tuple[int, int], ...] = ()  # sorted (child, parent), both live
    exited: tuple[tuple[int, int, int], ...] = ()  # sorted (parent, child, status)

    def parent(self, pid: int) -> int | None:
        """The live parent of ``pid``, or None (spawned, or its parent has exited)."""
        return next((parent for child, parent in self.parents if child == pid), None)

    def children(self, pid: int) -> tuple[int, ...]:
        """The live children of ``pid``."""
        return tuple(child for child, parent in self.parents if parent == pid)

    def statuses(self, pid: int) -> tuple[tuple[int, int], ...]:
        """(child, status) of each child of ``pid`` that exited and was not waited for."""
        return tuple((child, status) for parent, child, status in self.exited if parent == pid)


@dataclass(frozen=True)
class SpecState:
    """Live processes (sorted by pid), the objects they map, what they printed, what is
    left to read, and their family (not compared: no hardware shows it)."""

    processes: tuple[SpecProcess, ...] = ()
    objects: tuple[tuple[ObjectKey, tuple[Page, ...]], ...] = ()  # sorted by key
    console: tuple[int, ...] = ()
    console_input: tuple[int, ...] = ()
    family: Family = field(default_factory=Family, compare=False)

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
