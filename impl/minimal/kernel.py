"""The minimal kernel: demand paging on every hardware variant, in one small class.

Written from the documentation only, on the hardware port and the kernel
library; each choice is the simplest one that passes every check.

* Tables: the library's editor for the configured format and the ``vm``
  helpers, which invalidate the TLB on every PTE edit. Formats that keep
  absent entries get one for every valid page at spawn, so no later edit
  needs kernel memory (the inverted table never allocates after boot).
* Pages: one :class:`~.records.Page` per page of contents. Writable shared
  segments are really shared (one record, slot and frame). Text is shared by
  processes running one program, except on the inverted table, where each
  gets a private read-only copy; there a frame maps one address space at a
  time, so a segment page another process maps is taken over by moving the
  mapping (a minor fault; M is kept in the page).
* Swap: a slot per writable page at spawn (refused if short). Text and data
  come from the image, heap and stack are zero-filled; a slot gets its
  page's contents at the first write-back.
* The heap: SBRK moves the break (``model.program.heap_break``); the pages
  it adds get a slot at their first touch (without one the process dies,
  out of memory), the pages it drops go as at exit.
* Stack growth: the program's rule (``model.program.stack_growth``) with the
  backed-up stack pointer; the pages the stack may grow into get absent
  entries at spawn, so growing needs only a swap slot per page (without
  one the process dies, out of memory).
* FORK and EXEC are not implemented: they fail (r0 all ones, nothing else
  changes), which the spec allows a kernel that cannot make the child or the
  new image; so no process has children, and WAIT fails at once. MMAP fails
  the same way, so no page is ever mapped from a file and MUNMAP fails too.
* Replacement: global FIFO over frames holding a page. A dirty victim is
  written back and its frame stays reserved for the page that evicted it.
* Waiting: a process that cannot be served blocks, its instruction already
  backed up; after every hook the blocked faults are retried, oldest ticket
  first, and a process is made ready as soon as its page is mapped.
* Scheduling: after a fault handled without waiting only that process is
  runnable until it re-runs (an untagged software TLB, flushed at every
  switch, would otherwise starve it).
* It ignores ``KernelConfig`` (policy, allocation, prepaging, cleaner, seed,
  tau) and never arms the timer.

Progress. Four frames, six processes and instructions touching four pages
make naive FIFO livelock: processes evict the pages others just faulted in
before they re-run. Here an instruction is *unfinished* from its first page
fault until it retires; it takes a *ticket* in fault order, and the pages it
faulted are *pinned* to it. Only the *head*, the unfinished instruction with
the lowest ticket, may take a frame from a page (evict it, or move an
inverted mapping), and never from its own pinned pages; the others use free
frames or wait. So the head keeps what it faulted in, each fault pins one
more of its at most four pages, some frame it may take always exists or
comes free when a transfer ends, and it retires; then the next ticket leads.
The kernel learns that an instruction retired at its process's next kernel
entry other than a trap of it (a system call retires at once).
"""

from __future__ import annotations

import copy
from typing import Literal

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import (
    FrameStatus,
    FrameView,
    KernelEvent,
    KernelView,
    Location,
    PageView,
    ProcessView,
    SlotView,
    SpawnRefused,
)
from pagingcheck.impl.lib import restart, vm
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Overlay
from pagingcheck.impl.lib.pagetable import make_editor
from pagingcheck.impl.minimal.records import Frame, Page, PageKey, Proc, Transfer, User
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import InternalError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import (
    EXEC_FAILED,
    FORK_FAILED,
    MMAP_FAILED,
    MUNMAP_FAILED,
    READ_FAILED,
    REGISTERS,
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
    SideEffects,
    buffer_page,
)
from pagingcheck.model.mmu import NEEDED
from pagingcheck.model.port import Port
from pagingcheck.model.program import (
    STACK_POINTER,
    Image,
    LayoutPage,
    heap_break,
    signed,
    stack_growth,
)
from pagingcheck.model.traps import Access, TrapFrame, TrapKind

#: The protection of stack pages, and of those a stack grows by.
STACK = bits.READ | bits.WRITE | bits.USER


class MinimalKernel:
    """A small demand-paging kernel for every hardware variant (see the module docstring)."""

    def __init__(self, hardware: HardwareConfig, kernel: KernelConfig | None = None) -> None:
        self.hardware = hardware
        self.editor = make_editor(hardware)
        self.inverted = not vm.holds_absent_entries(self.editor)
        self.kalloc = KernelAllocator(hardware)
        self.system_root = 0
        self.procs: dict[int, Proc] = {}
        self.pages: dict[PageKey, Page] = {}
        self.frames: dict[int, Frame] = {pfn: Frame() for pfn in hardware.user_pfns}
        self.slots: dict[int, PageKey | None] = {}  # allocated slot -> page (None: orphaned)
        self.current: int | None = None  # whose address space the MMU holds
        self.exclusive: int | None = None  # the only runnable process, if any
        self.next_pid = 1
        self.next_ticket = 0
        self.clock = 0  # FIFO load stamps
        self.events: list[KernelEvent] = []

    # -- operations the driver calls ----------------------------------------------------

    def boot(self, port: Port) -> tuple[KernelEvent, ...]:
        """Allocate the format's system-wide table (the inverted one; others have none)."""
        root = self.editor.boot(port, self.kalloc)
        if root is None:
            raise InternalError("boot: kernel memory cannot hold the system page table")
        self.system_root = root
        self._emit("boot")
        return self._finish(port)

    def spawn(self, port: Port, image: Image) -> int | SpawnRefused:
        """Create a process for ``image``: table, pages, slots; refuse with nothing changed."""
        config, pid = self.hardware, self.next_pid
        layout = image.program.layout(config.page_words, config.va_pages)
        # Decide: build the table on a trial overlay with a copy of the allocator.
        overlay, kalloc = Overlay(port), self.kalloc.copy()
        program = image.program
        room = range(program.stack_floor(config.va_pages), config.va_pages - program.stack_pages)
        heap = program.heap_start(config.page_words)
        heap_room = range(heap + program.heap_pages, heap + program.heap_limit)
        entries = [(page.vpn, page.prot) for page in layout]
        entries += [(vpn, STACK) for vpn in (*heap_room, *room)]
        root = self.editor.create(overlay, kalloc, pid, self.system_root)
        if root is None or not all(
            vm.prepare(self.editor, overlay, kalloc, vm.Space(root, pid), vpn, prot)
            for vpn, prot in entries
        ):
            return SpawnRefused("kernel memory cannot hold the page table")
        space = {page.vpn: self._key(pid, page) for page in layout}
        new = {
            space[p.vpn]: self._new_page(image, p) for p in layout if space[p.vpn] not in self.pages
        }
        writable = [key for key, page in new.items() if page.prot & bits.WRITE]
        free = [slot for slot in range(config.swap_slots) if slot not in self.slots]
        if len(free) < len(writable):
            return SpawnRefused("not enough free swap slots")
        # Perform: nothing below can fail.
        overlay.commit()
        self.kalloc = kalloc
        port.register_space(pid, root)
        for key, slot in zip(writable, free, strict=False):
            new[key].slot = slot
            self.slots[slot] = key
        self.pages.update(new)
        regs = [0] * REGISTERS
        regs[STACK_POINTER] = image.program.initial_stack_pointer(
            config.page_words, config.va_pages
        )
        start = ArchState(tuple(regs), image.program.entry, 0)
        self.procs[pid] = Proc(pid, root, space, start)
        self.procs[pid].stack = (room.start, program.stack_reach)
        self.procs[pid].heap = (heap, program.heap_limit)
        self.next_pid += 1
        self.events.clear()  # spawn returns no events
        return pid

    def runnable(self) -> tuple[int, ...]:
        """Ready and running processes, or only the one re-running after a quick fault."""
        if self.exclusive is not None:
            return (self.exclusive,)
        return tuple(
            pid for pid, p in sorted(self.procs.items()) if p.state in ("ready", "running")
        )

    def dispatch(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Put ``pid`` on the CPU in user mode, switching address spaces if needed."""
        self._note_retired()
        self._retry(port)  # a finished instruction may let a waiter go first
        proc = self.procs[pid]
        if self.current != pid:
            old = None if self.current is None else self.procs[self.current]
            if old is not None and old.state == "running":
                old.state, old.context = "ready", port.context()
            port.load_context(proc.root, pid)
            if not self.hardware.tlb_tagged:
                vm.flush(port)
            self.current = pid
            self._emit("dispatch", pid, detail="switch")
        if proc.state != "running":
            assert proc.context is not None, "a process off the CPU has saved registers"
            port.resume(proc.context)
            proc.state, proc.context = "running", None
        proc.ran = True
        if self.exclusive == pid:
            self.exclusive = None
        return self._take_events()

    def kill(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Terminate live process ``pid`` from outside."""
        self._note_retired()
        if self.procs[pid].state != "exited":
            self._exit(port, self.procs[pid], "kill")
        return self._finish(port)

    # -- hooks the hardware calls -------------------------------------------------------

    def on_trap(self, port: Port, trap: TrapFrame) -> tuple[KernelEvent, ...]:
        """The running process trapped: exit or other system call, illegal word, or a fault."""
        assert self.current is not None, "traps come from the running process"
        proc = self.procs[self.current]
        proc.ran = False
        state = port.context()
        if trap.kind is TrapKind.SYSCALL:
            self._retired(proc)
            if trap.number == SYS_EXIT:
                self._exit(port, proc, "exit")
            elif trap.number == SYS_SBRK:
                self._sbrk(port, proc, state)
            elif trap.number == SYS_PUTC:
                port.console_write(state.regs[1] & 0xFF)
                port.resume(state)
            elif trap.number == SYS_WRITE:
                self._write(port, proc, state)
            elif trap.number == SYS_READ:
                self._read(port, proc, state)
            elif trap.number == SYS_FORK:  # not implemented here: the call fails
                _return(port, state, FORK_FAILED)
            elif trap.number == SYS_EXEC:  # not implemented here either
                _return(port, state, EXEC_FAILED)
            elif trap.number == SYS_WAIT:  # no fork, so never a child to wait for
                _return(port, state, WAIT_FAILED)
            elif trap.number == SYS_MMAP:  # not implemented: the call fails
                _return(port, state, MMAP_FAILED)
            elif trap.number == SYS_MUNMAP:  # with no MMAP, never a mapped page to unmap
                _return(port, state, MUNMAP_FAILED)
            else:  # no other system call means anything: carry on
                port.resume(state)
        elif trap.kind is TrapKind.ILLEGAL_INSTRUCTION:
            self._exit(port, proc, "illegal")
        else:
            self._fault(port, proc, trap, state)
        return self._finish(port)

    def on_disk(self, port: Port, request: Request) -> tuple[KernelEvent, ...]:
        """A transfer ended: record where the page now lives, chain a reserved page-in."""
        self._note_retired()
        frame = self.frames[request.pfn]
        frame.transfer = None
        if request.op == "write":
            if frame.holds is not None:  # its page now lives in the slot (unless it died)
                page = self.pages[frame.holds]
                page.source, page.dirty = Location("slot", request.block), False
            frame.holds = None
            if frame.incoming is not None:
                self._page_in(port, request.pfn)
        elif frame.incoming is not None:
            self._install(request.pfn)
        self._free_orphan_slot(request.block)
        return self._finish(port)

    def on_timer(self, port: Port) -> tuple[KernelEvent, ...]:
        """Never called: this kernel never arms the timer."""
        return ()

    # -- faults -----------------------------------------------------------------------------

    def _fault(self, port: Port, proc: Proc, trap: TrapFrame, state: ArchState) -> None:
        """Back the instruction up; then signal, refill the TLB, map, or block until served."""
        va, access, effects = self._locate(port, trap, state)
        start = restart.back_up(state, trap.pc, effects)
        vpn = va // self.hardware.page_words
        key = proc.space.get(vpn) if va < self.hardware.va_words else None
        self._emit("fault", proc.pid, vpn, detail=f"{trap.kind.value} {access.value} {va}")
        needed = NEEDED[access] | bits.USER
        if key is None and trap.kind is not TrapKind.PROTECTION_FAULT:
            grown = self._grow(proc, va, start)
            if grown is None:
                self._exit(port, proc, "out of memory")
                return
            key = proc.space.get(vpn)
        if key is None:
            self._exit(port, proc, "invalid")
        elif trap.kind is TrapKind.PROTECTION_FAULT or self.pages[key].prot & needed != needed:
            self._exit(port, proc, "protection")
        elif trap.kind is TrapKind.TLB_MISS and self._refill(port, proc, vpn):
            self._resume_now(port, proc, start)
        else:
            self._bring_in(port, proc, vpn, start)

    def _bring_in(self, port: Port, proc: Proc, vpn: int, start: ArchState) -> None:
        """Map ``proc``'s valid page ``vpn`` for an instruction to run again from ``start``:
        now if a frame can be had, else block until it can (its slot first, at a first
        touch: with swap full the process dies)."""
        key = proc.space[vpn]
        if not self._backed(key):
            self._exit(port, proc, "out of memory")
            return
        if proc.ticket is None:
            proc.ticket, self.next_ticket = self.next_ticket, self.next_ticket + 1
        proc.pinned.add(key)
        proc.fault_vpn = vpn
        if self._serve(port, proc):
            proc.fault_vpn = None
            self._resume_now(port, proc, start)
        else:
            proc.state, proc.context = "blocked", start
            self._emit("wait", proc.pid, vpn)

    def _write(self, port: Port, proc: Proc, state: ArchState) -> None:
        """WRITE: print the low byte of each word of the buffer (``model.isa.buffer_page``)
        from the frame holding its page, r0 its length; a buffer the process cannot read
        fails. A page not resident is brought in as the process's own read would bring it
        (a fault in kernel mode), and the call runs again: the SYS is one word back."""
        base = self._buffer(port, proc, state, Access.READ, WRITE_FAILED)
        if base is None:
            return
        count = state.regs[2]
        for address in range(base, base + count):
            port.console_write(port.read(address) & 0xFF)
        _return(port, state, count)

    def _read(self, port: Port, proc: Proc, state: ArchState) -> None:
        """READ: the console's next input bytes into the buffer's words, one a word, r0 how
        many; a buffer the process cannot write fails. The page is brought in first as for
        WRITE, and marked dirty: no PTE's modified bit saw the kernel's writes."""
        base = self._buffer(port, proc, state, Access.WRITE, READ_FAILED)
        if base is None:
            return
        count, filled = state.regs[2], 0
        while filled < count and (byte := port.console_read()) is not None:
            port.write(base + filled, byte)
            filled += 1
        vpn = state.regs[1] // self.hardware.page_words
        self.pages[proc.space[vpn]].dirty |= filled > 0
        _return(port, state, filled)

    def _buffer(
        self, port: Port, proc: Proc, state: ArchState, access: Access, failed: int
    ) -> int | None:
        """The physical address of a READ or WRITE buffer (r2 words at r1) on a resident
        page the process may ``access``; None when the call failed (r0 = ``failed``) or
        its page is being brought in (a fault in kernel mode: the call runs again from its
        SYS, one word back)."""
        va, count = state.regs[1], state.regs[2]
        vpn = buffer_page(va, count, self.hardware.page_words)
        key = proc.space.get(vpn) if vpn is not None else None
        needed = NEEDED[access] | bits.USER  # as the process's own access of the page
        if vpn is None or key is None or self.pages[key].prot & needed != needed:
            _return(port, state, failed)
            return None
        pfn = self._frame_of(key)
        if pfn is None:
            self._emit("kernel_fault", proc.pid, vpn, detail=f"{access.value} {va}")
            self._bring_in(port, proc, vpn, ArchState(state.regs, state.pc - 1, state.flags))
            return None
        return pfn * self.hardware.page_words + va % self.hardware.page_words

    def _backed(self, key: PageKey) -> bool:
        """Give a writable private page its swap slot at its first touch (the heap's new
        pages have none): False when swap is full."""
        page = self.pages[key]
        if page.slot is not None or page.shared_key is not None or not page.prot & bits.WRITE:
            return True
        free = [slot for slot in range(self.hardware.swap_slots) if slot not in self.slots]
        if not free:
            return False
        page.slot = free[0]
        self.slots[free[0]] = key
        return True

    def _sbrk(self, port: Port, proc: Proc, state: ArchState) -> None:
        """Move the heap's break by r1 pages (``model.program.heap_break``); r0 gets the old
        break's address, or ``SBRK_FAILED``. New pages are zeros with no slot yet; lost
        ones are unmapped and dropped."""
        start, limit = proc.heap
        heap = [vpn for vpn, key in proc.space.items() if self.pages[key].kind == "heap"]
        brk = start + len(heap)
        new = heap_break(brk, signed(state.regs[1]), start, limit)
        for vpn in range(brk, new if new is not None else brk):
            key: PageKey = ("private", proc.pid, vpn)
            self.pages[key] = Page(STACK, "heap", None, 0, Location("zero"))
            proc.space[vpn] = key
        for vpn in range(new if new is not None else brk, brk):
            gone = proc.space[vpn]
            pfn = self._frame_of(gone)
            if pfn is not None and (proc.pid, vpn) in self.frames[pfn].users:
                self._unmap(port, proc, vpn, pfn)
            del proc.space[vpn]
            self._drop_page(gone)
        result = SBRK_FAILED if new is None else brk * self.hardware.page_words
        _return(port, state, result)

    def _grow(self, proc: Proc, va: int, start: ArchState) -> range | None:
        """Grow ``proc``'s stack as far as an access to ``va`` asks (by the program's rule,
        from the stack pointer ``start`` runs with): the pages added, or None when swap
        cannot back them (nothing changes then)."""
        floor, reach = proc.stack
        lowest = min(
            (v for v, k in proc.space.items() if self.pages[k].kind == "stack"),
            default=self.hardware.va_pages,
        )
        pages = stack_growth(
            va, start.regs[STACK_POINTER], lowest, floor, reach, self.hardware.page_words
        )
        free = [slot for slot in range(self.hardware.swap_slots) if slot not in self.slots]
        if len(free) < len(pages):
            return None
        for vpn, slot in zip(pages, free, strict=False):
            key: PageKey = ("private", proc.pid, vpn)
            self.pages[key] = Page(STACK, "stack", None, 0, Location("zero"), slot)
            self.slots[slot] = key
            proc.space[vpn] = key
        if pages:
            self._emit("stack_growth", proc.pid, pages.start)
        return pages

    def _resume_now(self, port: Port, proc: Proc, start: ArchState) -> None:
        """Handled without waiting: straight back to the instruction, and only it runs next."""
        port.resume(start)
        self.exclusive = proc.pid

    def _locate(
        self, port: Port, trap: TrapFrame, state: ArchState
    ) -> tuple[int, Access, SideEffects]:
        """The faulting address, access and side effects: from the trap frame, or decoded."""
        if trap.va is not None and trap.access is not None:
            return trap.va, trap.access, trap.state_register
        found = restart.locate(port, trap.pc, state)
        if found is None:
            raise InternalError(f"decode: no fault point found for the instruction at {trap.pc}")
        return found.fault.va, found.fault.access, found.side_effects

    def _refill(self, port: Port, proc: Proc, vpn: int) -> bool:
        """Software TLB: load the present PTE of ``vpn``; False when it is not present."""
        entry = self.editor.walk(port, proc.root, proc.pid, vpn)
        if entry is None or not bits.is_present(entry.pte):
            return False
        port.tlb_insert(proc.pid, vpn, entry.pte_addr, entry.pte)
        self._emit("tlb_refill", proc.pid, vpn)
        return True

    def _serve(self, port: Port, proc: Proc) -> bool:
        """Try to map the page ``proc`` waits for: True when mapped now, False to wait."""
        assert proc.fault_vpn is not None
        vpn = proc.fault_vpn
        key = proc.space[vpn]
        if self._frame_of(key) is None and not self._arriving(key):
            pfn = self._take_frame(port, proc)
            if pfn is None:
                return False
            self.frames[pfn].incoming = key
            if self.frames[pfn].transfer is None:  # else: after the victim's write-back
                self._page_in(port, pfn)
        pfn = self._frame_of(key)
        if pfn is None or self.frames[pfn].transfer is not None:
            return False
        return self._map(port, proc, vpn, pfn)

    def _retry(self, port: Port) -> None:
        """Serve blocked processes, oldest ticket first; make ready those now mapped."""
        blocked = [p for p in self.procs.values() if p.state == "blocked"]
        for proc in sorted(blocked, key=lambda p: (p.ticket or 0, p.pid)):
            if self._serve(port, proc):
                proc.state, proc.fault_vpn = "ready", None
                self._emit("ready", proc.pid)

    # -- frames and pages -----------------------------------------------------------------

    def _take_frame(self, port: Port, proc: Proc) -> int | None:
        """A frame for ``proc``'s page: a free one, or (the head only) a FIFO victim.

        None when ``proc`` must wait. A dirty victim's frame comes back busy
        with its write-back; the caller reserves it.
        """
        free = self._free_frames()
        if free:
            return free[0]
        if self._head() is not proc:
            return None
        candidates = [
            pfn
            for pfn, f in self.frames.items()
            if f.transfer is None and f.holds is not None and f.holds not in proc.pinned
        ]
        if not candidates:
            return None
        victim = min(candidates, key=lambda pfn: self.frames[pfn].loaded)
        self._evict(port, victim)
        return victim

    def _evict(self, port: Port, pfn: int) -> None:
        """Unmap the frame's page everywhere; write it back if dirty, else drop the copy."""
        frame = self.frames[pfn]
        assert frame.holds is not None
        page = self.pages[frame.holds]
        for pid, vpn in list(frame.users):
            self._unmap(port, self.procs[pid], vpn, pfn)
        if page.dirty:
            assert page.slot is not None, "only writable pages get dirty, and they have slots"
            frame.transfer = Transfer("write", port.submit("write", page.slot, pfn), page.slot)
            self._emit("evict_dirty", pfn=pfn)
        else:
            frame.holds = None
            self._emit("evict_clean", pfn=pfn)

    def _page_in(self, port: Port, pfn: int) -> None:
        """Bring the frame's incoming page in: zero-fill now, or start a read of its block."""
        frame = self.frames[pfn]
        assert frame.incoming is not None
        source = self.pages[frame.incoming].source
        if source.where == "zero":
            port.fill(pfn, 0)
            self._install(pfn)
        else:
            frame.transfer = Transfer("read", port.submit("read", source.index, pfn), source.index)

    def _install(self, pfn: int) -> None:
        """The incoming page's contents are in the frame now (not mapped yet)."""
        frame = self.frames[pfn]
        frame.holds, frame.incoming = frame.incoming, None
        frame.loaded, self.clock = self.clock, self.clock + 1
        self._emit("pagein", pfn=pfn)

    def _map(self, port: Port, proc: Proc, vpn: int, pfn: int) -> bool:
        """Map resident page ``vpn`` of ``proc`` to ``pfn``; False if it may not take it yet.

        On the inverted table the one mapping moves from its holder, unless
        the head pinned the page and ``proc`` is not the head.
        """
        frame = self.frames[pfn]
        key = proc.space[vpn]
        if (proc.pid, vpn) in frame.users:
            return True
        if self.inverted and frame.users:
            head = self._head()
            if head is not None and head is not proc and key in head.pinned:
                return False
            holder, holder_vpn = frame.users[0]
            self._unmap(port, self.procs[holder], holder_vpn, pfn)
        space = vm.Space(proc.root, proc.pid)
        vm.map_page(port, self.editor, self.kalloc, space, vpn, pfn, self.pages[key].prot)
        frame.users.append((proc.pid, vpn))
        self._emit("map", proc.pid, vpn, pfn)
        return True

    def _unmap(self, port: Port, proc: Proc, vpn: int, pfn: int) -> None:
        """Remove ``proc``'s mapping of ``vpn`` from ``pfn``, keeping its M bit in the page."""
        page = self.pages[proc.space[vpn]]
        space = vm.Space(proc.root, proc.pid)
        old = vm.unmap(port, self.editor, self.kalloc, space, vpn, page.prot)
        page.dirty |= bits.is_modified(old)
        self.frames[pfn].users.remove((proc.pid, vpn))

    # -- processes --------------------------------------------------------------------------

    def _exit(self, port: Port, proc: Proc, why: str) -> None:
        """End ``proc``: unmap its pages, drop those nobody uses now, free its table and asid."""
        for vpn, key in sorted(proc.space.items()):
            pfn = self._frame_of(key)
            if pfn is not None and (proc.pid, vpn) in self.frames[pfn].users:
                self._unmap(port, proc, vpn, pfn)
        keys = set(proc.space.values())
        proc.space, proc.pinned = {}, set()
        proc.state, proc.context, proc.ticket, proc.fault_vpn = "exited", None, None, None
        for key in sorted(keys, key=repr):
            if not self._users(key):
                self._drop_page(key)
        self.editor.destroy(port, self.kalloc, proc.root, proc.pid)
        port.release_space(proc.pid)
        vm.forget(port, vm.Space(proc.root, proc.pid))
        if self.current == proc.pid:
            self.current = None
        if self.exclusive == proc.pid:
            self.exclusive = None
        self._emit("exit", proc.pid, detail=why)

    def _drop_page(self, key: PageKey) -> None:
        """Forget a page no live process uses; a transfer in flight keeps its frame/slot busy."""
        page = self.pages.pop(key)
        for frame in self.frames.values():
            if frame.holds == key:
                frame.holds = None
            if frame.incoming == key:
                frame.incoming = None
        if page.slot is not None:
            self.slots[page.slot] = None
            self._free_orphan_slot(page.slot)

    def _free_orphan_slot(self, slot: int) -> None:
        """Free ``slot`` if its page is gone and no transfer uses it (image blocks: nothing)."""
        moving = any(
            f.transfer is not None and f.transfer.block == slot for f in self.frames.values()
        )
        if slot in self.slots and self.slots[slot] is None and not moving:
            del self.slots[slot]

    def _note_retired(self) -> None:
        """At a kernel entry that is not its trap: the running process's instruction retired."""
        proc = None if self.current is None else self.procs[self.current]
        if proc is not None and proc.state == "running" and proc.ran:
            self._retired(proc)

    def _retired(self, proc: Proc) -> None:
        """``proc``'s instruction retired: its ticket and pins go."""
        proc.ticket, proc.pinned, proc.ran = None, set(), False

    # -- derived facts ------------------------------------------------------------------------

    def _key(self, pid: int, page: LayoutPage) -> PageKey:
        """Which page of contents a layout page is: shared by key, or private to ``pid``."""
        if page.shared_key is None or (page.kind == "text" and self.inverted):
            return ("private", pid, page.vpn)
        return ("shared", page.shared_key, page.index)

    def _new_page(self, image: Image, page: LayoutPage) -> Page:
        """A page record for ``page`` of ``image``: text and data from the image, else zeros."""
        block = image.block_of(page)
        source = Location("zero") if block is None else Location("image", block)
        return Page(page.prot, page.kind, page.shared_key, page.index, source)

    def _head(self) -> Proc | None:
        """The process of the oldest unfinished instruction, if any."""
        ticketed = [p for p in self.procs.values() if p.ticket is not None]
        return min(ticketed, key=lambda p: p.ticket or 0, default=None)

    def _frame_of(self, key: PageKey) -> int | None:
        """The frame holding ``key``'s contents, if any."""
        return next((pfn for pfn, f in self.frames.items() if f.holds == key), None)

    def _arriving(self, key: PageKey) -> bool:
        """Whether a frame is reserved for ``key`` to come in."""
        return any(f.incoming == key for f in self.frames.values())

    def _users(self, key: PageKey) -> list[User]:
        """(pid, vpn) of every live process's page that is ``key``."""
        return [(p.pid, vpn) for p in self.procs.values() for vpn, k in p.space.items() if k == key]

    def _free_frames(self) -> list[int]:
        """Frames that hold, expect and move nothing, in frame order."""
        return [
            pfn
            for pfn, f in sorted(self.frames.items())
            if f.holds is None and f.incoming is None and f.transfer is None
        ]

    def _home(self, key: PageKey) -> Location:
        """Where ``key``'s contents are: the frame holding them, else its source."""
        pfn = self._frame_of(key)
        return self.pages[key].source if pfn is None else Location("frame", pfn)

    # -- events, the view and values ----------------------------------------------------------

    def _emit(
        self,
        kind: str,
        pid: int | None = None,
        vpn: int | None = None,
        pfn: int | None = None,
        detail: str = "",
    ) -> None:
        self.events.append(KernelEvent(kind, pid, vpn, pfn, detail))

    def _take_events(self) -> tuple[KernelEvent, ...]:
        events, self.events = tuple(self.events), []
        return events

    def _finish(self, port: Port) -> tuple[KernelEvent, ...]:
        """End of a hook: retry the waiters, return what happened."""
        self._retry(port)
        return self._take_events()

    def view(self) -> KernelView:
        """What the kernel says about itself (see docs/kernel.md, "The view and values")."""
        frames = tuple(
            FrameView(pfn, _status(f), len(f.users), tuple(sorted(f.users)), _op(f.transfer))
            for pfn, f in sorted(self.frames.items())
        )
        running = self.current is not None and self.procs[self.current].state == "running"
        return KernelView(
            tuple(self._process_view(proc) for _, proc in sorted(self.procs.items())),
            frames,
            tuple(self._free_frames()),
            tuple(self._slot_view(slot) for slot in sorted(self.slots)),
            tuple(s for s in range(self.hardware.swap_slots) if s not in self.slots),
            self.current if running else None,
        )

    def _process_view(self, p: Proc) -> ProcessView:
        """A process-table entry; its asid is its pid, ``faulting`` while it waits."""
        pages = tuple(self._page_view(vpn, key) for vpn, key in sorted(p.space.items()))
        return ProcessView(p.pid, p.pid, p.state, p.root, pages, p.context, p.state == "blocked")

    def _page_view(self, vpn: int, key: PageKey) -> PageView:
        """One valid page of a process, with where its contents are."""
        page = self.pages[key]
        return PageView(vpn, page.prot, page.kind, self._home(key), page.shared_key, page.index)

    def _slot_view(self, slot: int) -> SlotView:
        """An allocated slot: the pages reserving it, and the transfer using it."""
        key = self.slots[slot]
        users = () if key is None else tuple(sorted(self._users(key)))
        moving = [
            f.transfer for f in self.frames.values() if f.transfer and f.transfer.block == slot
        ]
        return SlotView(slot, len(users), users, _op(moving[0] if moving else None))

    def copy(self) -> MinimalKernel:
        """An independent copy (the editor and configuration hold no state and are shared)."""
        memo = {id(self.editor): self.editor, id(self.hardware): self.hardware}
        return copy.deepcopy(self, memo)

    def fingerprint(self) -> bytes:
        """A stable digest of all kernel state."""
        counters = (self.system_root, self.next_pid, self.next_ticket, self.clock)
        registers = (self.current, self.exclusive, self.kalloc.free_extents)
        return fingerprint(self.procs, self.pages, self.frames, self.slots, counters, registers)


def _status(frame: Frame) -> FrameStatus:
    """Busy while a transfer runs, in use while it holds a page, else free."""
    if frame.transfer is not None:
        return "busy"
    return "free" if frame.holds is None else "in_use"


def _op(transfer: Transfer | None) -> Literal["read", "write"] | None:
    """The operation of a transfer in flight, or None."""
    return None if transfer is None else transfer.op


def _return(port: Port, state: ArchState, r0: int) -> None:
    """Return from a system call to the process whose registers are ``state``, with ``r0``."""
    port.resume(ArchState((r0, *state.regs[1:]), state.pc, state.flags))
