"""The kernel interface: what any paging kernel offers the hardware, the driver and the checks.

Three groups of operations:

* **hooks** the hardware calls: :meth:`Kernel.on_trap` after the CPU traps,
  :meth:`Kernel.on_disk` when a disk request completes, :meth:`Kernel.on_timer`;
* **operations** the workload driver calls: :meth:`Kernel.boot`,
  :meth:`Kernel.spawn`, :meth:`Kernel.runnable`, :meth:`Kernel.dispatch`,
  :meth:`Kernel.kill`;
* a read-only **introspection view**, :meth:`Kernel.view`: what the kernel
  says about itself, which the checks compare with the hardware wherever the
  hardware can confirm it and use only for what only the kernel knows.

Hooks and operations receive the hardware port
(:class:`~pagingcheck.model.port.Port`), open for that call only: a kernel
reaches the machine through it and nothing else. Every call runs
atomically, as a kernel handler does on one CPU, and returns the
observable events it caused. The checks never reach past this interface,
so any implementation of it is checked the same way (the reference kernel
in ``pagingcheck.impl.reference`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pagingcheck.model.disk import Request
from pagingcheck.model.isa import ArchState
from pagingcheck.model.port import Port
from pagingcheck.model.program import Image, PageKind
from pagingcheck.model.traps import TrapFrame

ProcessState = Literal["ready", "running", "blocked", "exited"]
FrameStatus = Literal["free", "in_use", "busy"]


@dataclass(frozen=True)
class Location:
    """Where a page's current contents are: a frame, a swap slot, an image block, or zeros."""

    where: Literal["frame", "slot", "image", "zero"]
    index: int = 0


@dataclass(frozen=True)
class KernelEvent:
    """Something observable the kernel did, for traces and coverage."""

    kind: str
    pid: int | None = None
    vpn: int | None = None
    pfn: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class PageView:
    """One valid page of a process: protection, kind and where its contents are.

    Shared pages name their shared object (``shared_key`` as in
    :class:`~pagingcheck.model.program.LayoutPage`) and their ``index`` in it.
    """

    vpn: int
    prot: int
    kind: PageKind
    home: Location
    shared_key: str | None = None
    index: int = 0

    @property
    def copy_on_write(self) -> bool:
        """Whether this is a private mapping's page that still shows its file's page (the
        process's first write to it copies it)."""
        return self.kind == "private_file" and self.shared_key is not None


@dataclass(frozen=True)
class ProcessView:
    """One process-table entry as the checks see it.

    ``context`` is the saved register state when the process is not on the
    CPU. ``faulting`` is true from the fault until the kernel has backed the
    faulting instruction up and made the process ready again.
    """

    pid: int
    asid: int
    state: ProcessState
    root: int
    pages: tuple[PageView, ...]
    context: ArchState | None
    faulting: bool


@dataclass(frozen=True)
class FrameView:
    """One user frame: status, reference count, the mappings using it, transfer in flight."""

    pfn: int
    status: FrameStatus
    refcount: int
    users: tuple[tuple[int, int], ...]  # (pid, vpn)
    transfer: Literal["read", "write"] | None


@dataclass(frozen=True)
class SlotView:
    """One allocated swap slot: reference count, the pages using it, transfer in flight."""

    slot: int
    refcount: int
    users: tuple[tuple[int, int], ...]  # (pid, vpn)
    transfer: Literal["read", "write"] | None


@dataclass(frozen=True)
class FileView:
    """A page of a workload file (``name``, page ``index``) whose contents a frame holds:
    mapped or not, or being written back. A file page the view does not list is in its
    disk block."""

    name: str
    index: int
    home: Location


@dataclass(frozen=True)
class KernelView:
    """A read-only snapshot of the kernel's paging state."""

    processes: tuple[ProcessView, ...]
    frames: tuple[FrameView, ...]
    free_frames: tuple[int, ...]
    slots: tuple[SlotView, ...]
    free_slots: tuple[int, ...]
    current: int | None
    files: tuple[FileView, ...] = ()

    def process(self, pid: int) -> ProcessView | None:
        """The entry for ``pid``, or None."""
        for entry in self.processes:
            if entry.pid == pid:
                return entry
        return None


@dataclass(frozen=True)
class SpawnRefused:
    """Process creation failed cleanly; nothing stays allocated."""

    reason: str


class Kernel(Protocol):
    """A paging kernel the checks can drive. Copyable and comparable as a value."""

    def boot(self, port: Port) -> tuple[KernelEvent, ...]:
        """Initialise kernel structures on a freshly reset machine."""
        ...

    def spawn(self, port: Port, image: Image) -> int | SpawnRefused:
        """Create a process running the program installed as ``image``; its pid or the refusal."""
        ...

    def runnable(self) -> tuple[int, ...]:
        """Pids the driver may choose to run next, in pid order."""
        ...

    def dispatch(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Put runnable ``pid`` on the CPU, in user mode (a context switch if another was there)."""
        ...

    def on_trap(self, port: Port, trap: TrapFrame) -> tuple[KernelEvent, ...]:
        """Handle the trap the CPU just took (fault, TLB miss, system call, illegal)."""
        ...

    def on_disk(self, port: Port, request: Request) -> tuple[KernelEvent, ...]:
        """Handle completion of ``request`` (one the kernel submitted; its DMA has happened)."""
        ...

    def on_timer(self, port: Port) -> tuple[KernelEvent, ...]:
        """Handle a timer interrupt."""
        ...

    def kill(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Terminate ``pid`` from outside (the driver's exit choice)."""
        ...

    def view(self) -> KernelView:
        """The introspection snapshot."""
        ...

    def copy(self) -> Kernel:
        """An independent copy of all kernel state."""
        ...

    def fingerprint(self) -> bytes:
        """A stable digest of all kernel state."""
        ...
