"""The whole machine as one value: memory, MMU with TLB, CPU, disk, timer, console.

A :class:`Machine` is copied, compared and fingerprinted as a whole; the
explorer and shrinking depend on that. Page tables live in physical memory,
so they are part of ``memory``.

Kernels never hold a Machine: they reach it only through the hardware port
(:class:`pagingcheck.model.port.Port`). Besides the hardware proper the
machine keeps ``spaces``, the address spaces the kernel has declared through
the port (asid to table root), so the checks can walk every address space
and not only the one loaded in the MMU, and the disk's directory: ``images``, the
programs installed in the disk's image area (what EXEC starts), and ``files``, the
workload's files at the end of that area (what MMAP maps).
"""

from __future__ import annotations

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.cpu import CPU, StepResult
from pagingcheck.model.disk import Disk, DiskFile
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.mmu import MMU
from pagingcheck.model.pagetable import PageTableFormat, make_format
from pagingcheck.model.program import Image


class Machine:
    """Paging hardware: physical memory, MMU and TLB, CPU, swap disk, interval timer and
    a console."""

    __slots__ = (
        "config",
        "console",
        "console_input",
        "cpu",
        "disk",
        "files",
        "format",
        "images",
        "memory",
        "mmu",
        "spaces",
        "timer",
    )

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.format: PageTableFormat = make_format(config)
        self.memory = PhysicalMemory(config)
        self.mmu = MMU(config, self.format)
        self.cpu = CPU(config)
        self.disk = Disk(config)
        #: Whether the kernel has armed the interval timer.
        self.timer = False
        #: Every byte the kernel has written to the console, oldest first.
        self.console: tuple[int, ...] = ()
        #: The bytes typed at the console that no READ has taken yet, next first.
        self.console_input: tuple[int, ...] = ()
        #: Declared address spaces: asid -> table root.
        self.spaces: dict[int, int] = {}
        #: The programs installed in the image area, by workload position.
        self.images: tuple[Image, ...] = ()
        #: The workload's files, at the end of the image area, by workload position.
        self.files: tuple[DiskFile, ...] = ()

    def step(self) -> StepResult:
        """Run one user instruction of the address space loaded in the MMU."""
        return self.cpu.step(self.mmu, self.memory)

    def copy(self) -> Machine:
        """An independent copy of the whole machine."""
        clone = Machine.__new__(Machine)
        clone.config = self.config
        clone.format = self.format
        clone.memory = self.memory.copy()
        clone.mmu = self.mmu.copy()
        clone.cpu = self.cpu.copy()
        clone.disk = self.disk.copy()
        clone.timer = self.timer
        clone.console = self.console
        clone.console_input = self.console_input
        clone.spaces = dict(self.spaces)
        clone.images = self.images
        clone.files = self.files
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Machine)
            and self.config == other.config
            and self.cpu == other.cpu
            and self.mmu == other.mmu
            and self.memory == other.memory
            and self.disk == other.disk
            and self.timer == other.timer
            and self.console == other.console
            and self.console_input == other.console_input
            and self.spaces == other.spaces
            and self.images == other.images
            and self.files == other.files
        )

    __hash__ = None  # type: ignore[assignment]

    def fingerprint(self) -> bytes:
        """A stable digest of the whole machine state."""
        return fingerprint(
            self.memory.digest(),
            self.disk.digest(),
            self.disk.snapshot(),
            self.mmu.snapshot(),
            self.cpu.snapshot(),
            self.timer,
            self.spaces,
            self.console,
            self.console_input,
            self.images,
            self.files,
        )
