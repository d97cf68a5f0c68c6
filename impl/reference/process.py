"""Process creation, execution (dispatch) and termination: three of the four times the
kernel does paging work (the fourth, the page fault, is :mod:`pagingcheck.impl.reference.fault`).

Creation (:func:`spawn`), decide then perform:

1. :func:`size_program` - how large text, data, heap and stack are, and which
   shared objects the program joins or creates;
2. :func:`plan_swap` - the swap slots every writable private page and every
   new shared page needs;
3. :func:`build_page_table` - allocate and initialise the page table, on a
   trial overlay of memory and a copy of the allocator, so a refusal leaves
   nothing behind;
4. :func:`perform_creation` (cannot fail) - write the table, take the slots,
   record the page table root, the page map and the swap map in the
   process table, and declare the address space to the hardware.

Swap is not filled at creation: every write to the disk is a transfer, so
text and initialised data are paged in from the program's image on the
disk, where they lie like an executable file; a data page's swap slot takes
its contents from its first write-back on.

Execution (:func:`dispatch`): save the running process's context, reset the
MMU to the new page table, flush the TLB unless it is tagged, load the new
context, and on the first dispatch start the configured prepaging.

Termination (:func:`terminate`): drop every mapping (a shared page stays
resident for its other users; a dirty shared page whose last mapping goes
is written back), release private pages, slots and frames, shared ones at
the last user only, leave a frame with a transfer in flight busy until the
transfer ends (it is orphaned, then freed at completion), then free the
page table (:func:`release_image`); keep the exit status for the parent.

The system calls that reshape a process: SBRK, FORK (copy-on-write), EXEC
(a new image planned as creation plans one, the old one released as at
exit), WAIT (a parent sleeps until a child's exit wakes it), MMAP and MUNMAP
(a file's pages, shared with the file or copy-on-write over it); and the
console's PUTC, WRITE and READ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pagingcheck.impl.interface import SpawnRefused
from pagingcheck.impl.lib import identity, vm
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Overlay
from pagingcheck.impl.reference import fault as faults
from pagingcheck.impl.reference.fault import GROWN_PROT, drop_mapping, save_registers
from pagingcheck.impl.reference.tables import (
    FaultRecord,
    Mapping,
    PageId,
    PageRecord,
    Process,
    SharedObject,
    Tables,
    User,
)
from pagingcheck.model import bits
from pagingcheck.model.disk import DiskFile
from pagingcheck.model.errors import InternalError, UserError
from pagingcheck.model.isa import (
    EXEC_FAILED,
    FORK_FAILED,
    KILLED,
    MAP_SHARED,
    MMAP_FAILED,
    MUNMAP_FAILED,
    READ_FAILED,
    REGISTERS,
    SBRK_FAILED,
    WAIT_FAILED,
    WRITE_FAILED,
    ArchState,
    buffer_page,
)
from pagingcheck.model.port import Port
from pagingcheck.model.program import (
    STACK_POINTER,
    Image,
    LayoutPage,
    heap_break,
    map_range,
    signed,
)
from pagingcheck.model.traps import Access

# -- creation ------------------------------------------------------------------------


@dataclass(frozen=True)
class NewPage:
    """A page record creation makes: whether it needs a swap slot, where it starts."""

    page: PageId
    needs_slot: bool  # writable: a write-back needs somewhere to go
    image: int | None = None  # the disk block of its first contents; None: all zeros


@dataclass(frozen=True)
class Sizing:
    """Step 1: the program's pages, and the shared objects it creates or joins."""

    layout: tuple[LayoutPage, ...]
    mappings: tuple[Mapping, ...]
    new_objects: tuple[SharedObject, ...]
    joined: tuple[str, ...]
    new_pages: tuple[NewPage, ...]
    joined_pages: tuple[PageId, ...]  # pages of joined objects: their slots gain a user


@dataclass(frozen=True)
class CreationPlan:
    """Everything process creation will do, decided with every check made."""

    pid: int
    image: Image
    sizing: Sizing
    slots: tuple[int, ...]  # the free slots the new pages take, in order
    root: int
    table: Overlay  # the new table's words, not yet written
    table_kalloc: KernelAllocator


def copies_text(t: Tables) -> bool:
    """Whether each process gets its own copy of program text.

    An inverted table has one entry per frame, so a frame is mapped by one
    address space at a time. Sharing text that way would make processes
    steal the mapping from each other on every instruction fetch, so on
    that format each process pages in its own copy of the text (from the
    same image blocks). Writable segments stay shared, one mapping at a time.
    """
    return t.editor.layout.kind == "inverted"


def size_program(t: Tables, image: Image, pid: int) -> Sizing:
    """Step 1: how large text, data, heap and stack are; which shared objects exist.

    Private pages (data, heap, stack; text on an inverted table) get a page
    record each. A shared object (text, segment) that no live process uses
    yet is created with a record per page; one that exists is joined.
    """
    program = image.program
    layout = program.layout(t.config.page_words, t.config.va_pages)
    mappings: list[Mapping] = []
    new_objects: dict[str, int] = {}
    new_pages: list[NewPage] = []
    joined_pages: list[PageId] = []
    for page in layout:
        key = page.shared_key
        writable = bool(page.prot & bits.WRITE)
        if key is None or (page.kind == "text" and copies_text(t)):
            own = faults.fresh_page(t, pid, page.vpn)
            new_pages.append(NewPage(own, writable, image.block_of(page)))
            mappings.append(Mapping(page.vpn, page.kind, page.prot, own, key, page.index))
            continue
        shared = PageId(key, page.index)
        if key in t.objects:
            if page.index >= t.objects[key].pages:
                raise UserError(
                    f"program {program.name!r}: shared object {key!r} already exists with "
                    f"{t.objects[key].pages} pages; every program must declare it the same size"
                )
            joined_pages.append(shared)
        else:
            new_objects[key] = max(new_objects.get(key, 0), page.index + 1)
            new_pages.append(NewPage(shared, writable, image.block_of(page)))
        mappings.append(Mapping(page.vpn, page.kind, page.prot, shared, key, page.index))
    joined = tuple(sorted({p.owner for p in joined_pages}))
    objects = tuple(SharedObject(key, (pid,), size) for key, size in sorted(new_objects.items()))
    return Sizing(layout, tuple(mappings), objects, joined, tuple(new_pages), tuple(joined_pages))


def asid_for(t: Tables, pid: int) -> int:
    """The address-space id of process ``pid``: the pid itself. Pids are never reused, so
    neither are asids, and a tagged TLB never mistakes one process's entry for another's."""
    return pid


def plan_swap(t: Tables, sizing: Sizing) -> tuple[int, ...] | SpawnRefused:
    """Step 2: the free slots the new pages take, or a refusal when swap is short."""
    needed = sum(1 for page in sizing.new_pages if page.needs_slot)
    if needed > len(t.free_slots):
        return SpawnRefused(f"out of swap: {needed} slots needed, {len(t.free_slots)} free")
    return identity.free_slots(t.free_slots, needed)


def build_page_table(
    t: Tables, port: Port, pid: int, mappings: tuple[Mapping, ...], growth: tuple[int, ...] = ()
) -> tuple[int, Overlay, KernelAllocator] | SpawnRefused:
    """Step 3: allocate and initialise the page table on a trial overlay and allocator.

    The pages the heap and stack may grow into (``growth``) get their non-present
    entries now too, so growing either never needs kernel memory (only swap).

    Returns the root and the overlay and allocator holding the new table,
    or a refusal (nothing real has changed either way).
    """
    memory, kalloc = Overlay(port), t.kalloc.copy()
    asid = asid_for(t, pid)
    root = t.editor.create(memory, kalloc, asid, t.system_root)
    if root is None:
        return SpawnRefused("out of kernel memory for the page table")
    space = vm.Space(root, asid)
    entries = [(entry.vpn, entry.prot) for entry in mappings]
    entries += [(vpn, GROWN_PROT) for vpn in growth]
    for vpn, prot in entries:
        if not vm.prepare(t.editor, memory, kalloc, space, vpn, prot):
            return SpawnRefused(f"out of kernel memory for the page table entry of vpn {vpn}")
    return root, memory, kalloc


def growth_room(t: Tables, image: Image) -> tuple[int, ...]:
    """The pages the heap (after its initial pages) and the stack (below its initial pages)
    may grow into."""
    program, va_pages = image.program, t.config.va_pages
    heap = program.heap_start(t.config.page_words)
    return (
        *range(heap + program.heap_pages, heap + program.heap_limit),
        *range(program.stack_floor(va_pages), va_pages - program.stack_pages),
    )


def plan_creation(
    t: Tables, port: Port, image: Image, pid: int | None = None
) -> CreationPlan | SpawnRefused:
    """Decide process creation: steps 1-3, every check made, nothing changed. ``pid`` is
    the next pid, unless an EXEC gives its caller's."""
    pid = t.next_pid if pid is None else pid
    sizing = size_program(t, image, pid)
    slots = plan_swap(t, sizing)
    if isinstance(slots, SpawnRefused):
        return slots
    table = build_page_table(t, port, pid, sizing.mappings, growth_room(t, image))
    if isinstance(table, SpawnRefused):
        return table
    root, memory, kalloc = table
    return CreationPlan(pid, image, sizing, slots, root, memory, kalloc)


def perform_creation(t: Tables, port: Port, plan: CreationPlan) -> int:
    """Step 4 (cannot fail): write the table, take slots, record the process. Returns the pid."""
    plan.table.commit()
    t.kalloc = plan.table_kalloc
    take_image(t, plan)
    t.processes[plan.pid] = new_entry(t, plan)
    port.register_space(asid_for(t, plan.pid), plan.root)
    t.next_pid = plan.pid + 1
    t.emit("spawn", plan.pid, detail=plan.image.program.name)
    return plan.pid


def take_image(t: Tables, plan: CreationPlan) -> None:
    """The new image's page records, swap slots and shared objects (a process that is
    already a user of a joined object, as an EXEC's caller may be, stays one user)."""
    sizing = plan.sizing
    free = iter(plan.slots)
    vpn = {entry.page: entry.vpn for entry in sizing.mappings}
    for new in sizing.new_pages:
        slot = None
        if new.needs_slot:
            slot = next(free)
            t.slot_op(slot, "allocate", (plan.pid, vpn[new.page]))
        t.pages[new.page] = PageRecord(slot=slot, image=new.image)
    for page in sizing.joined_pages:
        slot = t.record(page).slot
        if slot is not None:
            t.slot_op(slot, "add_user", (plan.pid, vpn[page]))
    for obj in sizing.new_objects:
        t.objects[obj.key] = obj
    for key in sizing.joined:
        obj = t.objects[key]
        if plan.pid not in obj.users:
            t.objects[key] = SharedObject(key, (*obj.users, plan.pid), obj.pages)


def new_entry(t: Tables, plan: CreationPlan) -> Process:
    """The process-table entry of a process starting ``plan``'s image, ready to run."""
    program = plan.image.program
    regs = [0] * REGISTERS
    regs[STACK_POINTER] = program.initial_stack_pointer(t.config.page_words, t.config.va_pages)
    sizing = plan.sizing
    attached = tuple(sorted({o.key for o in sizing.new_objects} | set(sizing.joined)))
    return Process(
        plan.pid,
        asid_for(t, plan.pid),
        program.name,
        plan.root,
        sizing.mappings,
        "ready",
        ArchState(tuple(regs), program.entry, 0),
        attached=attached,
        image=plan.image.first,
        stack_floor=program.stack_floor(t.config.va_pages),
        stack_reach=program.stack_reach,
        heap_start=program.heap_start(t.config.page_words),
        heap_limit=program.heap_limit,
        map_area=tuple(sorted(program.map_area(t.config.page_words, t.config.va_pages))),
    )


def spawn(t: Tables, port: Port, image: Image) -> int | SpawnRefused:
    """Create a process running ``image``'s program: its pid, or a refusal, nothing changed."""
    plan = plan_creation(t, port, image)
    if isinstance(plan, SpawnRefused):
        return plan
    return perform_creation(t, port, plan)


# -- execution -----------------------------------------------------------------------------


def dispatch(t: Tables, port: Port, pid: int) -> None:
    """Put ready ``pid`` on the CPU (steps 9-10 of a fault end here too).

    Saves the running process's registers, resets the MMU to ``pid``'s page
    table (flushing an untagged TLB when the address space changes), loads
    ``pid``'s registers in user mode, and on its first dispatch starts the
    configured prepaging. Dispatching the running process changes nothing
    but noting what its last instruction did (:func:`rerun_finished`) and that
    the next one starts (:func:`instruction_starts`).
    """
    rerun_finished(t)
    proc = t.process(pid)
    if t.current == pid and proc.state == "running":
        instruction_starts(t, proc)
        return
    if proc.state != "ready" or proc.context is None:
        raise InternalError(f"process.dispatch: process {pid} is {proc.state}, not ready")
    if t.current is not None:
        save_context(t, port)
    switching = switch_space(t, port, proc)
    port.resume(proc.context)
    first = not proc.started
    proc = t.update(proc, state="running", context=None, started=True)
    t.current = pid
    t.emit("dispatch", pid, detail="switch" if switching else "")
    instruction_starts(t, proc)
    if first:
        prepage(t, port, t.process(pid))


def switch_space(t: Tables, port: Port, proc: Process) -> bool:
    """Reset the MMU to ``proc``'s page table (base and asid registers), flushing an untagged
    TLB when the address space changes. Returns whether it changed."""
    switching = t.loaded != (proc.root, proc.asid)
    port.load_context(proc.root, proc.asid)
    t.loaded = (proc.root, proc.asid)
    if switching and not t.config.tlb_tagged:
        vm.flush(port)
    return switching


def instruction_starts(t: Tables, proc: Process) -> None:
    """The driver runs one instruction of ``proc`` after each dispatch: an instruction
    whose fault was handled now runs again (``rerunning``)."""
    if proc.waiting_to_rerun:
        t.update(proc, waiting_to_rerun=False, rerunning=True)


def rerun_finished(t: Tables) -> None:
    """At any kernel entry but a trap: the running process, if it was re-running an
    instruction, has retired it (a trap would have come first). The instruction is
    finished: its pages are no longer pinned, and a process waiting for memory may now
    take them."""
    if t.current is None:
        return
    proc = t.process(t.current)
    if proc.rerunning:
        t.update(proc, ticket=None, pinned=(), rerunning=False)
        t.memory_changed = True


def instruction_retired(t: Tables, proc: Process) -> None:
    """``proc`` trapped after its instruction retired (a system call): it is finished."""
    if proc.rerunning or proc.ticket is not None:
        t.update(proc, ticket=None, pinned=(), rerunning=False, waiting_to_rerun=False)
        t.memory_changed = True


def save_context(t: Tables, port: Port) -> None:
    """Save the running process's registers in its table entry; it becomes ready."""
    if t.current is None:
        return
    running = t.process(t.current)
    t.update(running, state="ready", context=save_registers(port))
    t.current = None


def prepage(t: Tables, port: Port, proc: Process) -> None:
    """Start page-ins for the configured pages, into free frames only.

    ``"pc"`` names the page the PC points at; a tuple names vpns (invalid
    ones are ignored). Nothing is evicted for prepaging, and the process is
    not blocked: if it touches a page still in transit it faults and waits.
    """
    setting = t.kconfig.prepage
    if setting == "none":
        return
    if setting == "pc":
        context = port.context()
        vpns: tuple[int, ...] = (context.pc // t.config.page_words,)
    else:
        vpns = tuple(setting)
    for vpn in vpns:
        entry = proc.mapping(vpn)
        if entry is None or not t.free_frames:
            continue
        rec = t.record(entry.page)
        if rec.frame is not None or rec.incoming is not None:
            continue
        pfn = t.take_free_frame()
        t.frame_step(port, pfn, "reserve")
        t.emit("prepage", proc.pid, vpn, pfn)
        faults.start_pagein(t, port, pfn, entry.page, parked=((proc.pid, vpn),))


# -- the console ---------------------------------------------------------------------------


def putc(t: Tables, port: Port, pid: int) -> None:
    """The PUTC system call of running ``pid``: print r1's low byte on the console and
    return to it with every register as it was."""
    context = port.context()
    byte = context.regs[1] & 0xFF
    port.console_write(byte)
    t.emit("putc", pid, detail=f"{byte:#04x}")
    port.resume(context)


def write(t: Tables, port: Port, pid: int) -> None:
    """The WRITE system call of running ``pid``: print the low byte of each word of the
    buffer of r2 words at r1 and return with r0 = r2; or, for a buffer that is not within
    one page the process may read (:func:`~pagingcheck.model.isa.buffer_page`), print
    nothing and return :data:`WRITE_FAILED`.

    The words are read from the page's frame. A page that is not resident is a fault in
    kernel mode (:func:`~pagingcheck.impl.reference.fault.kernel_fault`): the page comes
    in, and the process runs the call again from the start, so it prints exactly once.
    Until then the call is an unfinished instruction that keeps its ticket (its place
    among the instructions served first) and its pinned pages across its runs, as any
    instruction that faults again does: taking a new ticket at each run, it would always
    be the youngest, whose pages every other instruction may take."""
    call = buffer_call(t, port, pid, Access.READ)
    if call is None:
        return
    frame = t.record(call.entry.page).frame
    if frame is None:
        fault_in_kernel(t, port, call)
        return
    instruction_retired(t, call.proc)
    base = frame * t.config.page_words + call.va % t.config.page_words
    for address in range(base, base + call.count):
        port.console_write(port.read(address) & 0xFF)
    t.emit("write", pid, call.entry.vpn, frame, detail=f"{call.count} words")
    port.resume(dataclasses.replace(call.context, regs=(call.count, *call.context.regs[1:])))


def read(t: Tables, port: Port, pid: int) -> None:
    """The READ system call of running ``pid``: fill the buffer of r2 words at r1 with the
    console's next input bytes, one a word, until it is full or the input runs out, and
    return with r0 = the words filled; or, for a buffer that is not within one page the
    process may write (:func:`~pagingcheck.model.isa.buffer_page`), read nothing and
    return :data:`READ_FAILED`.

    The kernel writes the page's frame by its physical address, so two things the MMU
    would do for a user's write are its own to do. The page must be the process's alone:
    a page not resident, or resident but shared copy-on-write (its PTE without the write
    right), is a fault in kernel mode (:func:`~pagingcheck.impl.reference.fault.kernel_fault`)
    that brings it in or copies it, and the process runs the call again from the start,
    so it reads exactly once. And the page is marked dirty, since no PTE's modified bit
    saw these writes: a clean page evicted now would lose them. Until the call completes
    it keeps its ticket and pinned pages, as WRITE does."""
    call = buffer_call(t, port, pid, Access.WRITE)
    if call is None:
        return
    frame = own_frame(t, port, (pid, call.entry.vpn))
    if frame is None:
        fault_in_kernel(t, port, call)
        return
    instruction_retired(t, call.proc)
    base = frame * t.config.page_words + call.va % t.config.page_words
    filled = fill_buffer(t, port, call.entry.page, base, call.count)
    t.emit("read", pid, call.entry.vpn, frame, detail=f"{filled} of {call.count} words")
    port.resume(dataclasses.replace(call.context, regs=(filled, *call.context.regs[1:])))


@dataclass(frozen=True)
class BufferCall:
    """A READ or WRITE whose buffer (``count`` words from ``va``) lies on one page the
    process may access (``entry``); ``record`` is the kernel's own access to it."""

    proc: Process
    context: ArchState
    entry: Mapping
    record: FaultRecord

    @property
    def va(self) -> int:
        """Where the buffer starts (r1)."""
        return self.context.regs[1]

    @property
    def count(self) -> int:
        """How many words it has (r2)."""
        return self.context.regs[2]


#: What READ and WRITE return for a buffer the process may not access, by that access.
FAILED_CALLS = {Access.READ: ("write", WRITE_FAILED), Access.WRITE: ("read", READ_FAILED)}


def buffer_call(t: Tables, port: Port, pid: int, access: Access) -> BufferCall | None:
    """The start of running ``pid``'s WRITE (its kernel reads the buffer: ``access`` READ)
    or READ (``access`` WRITE): the call, or None when the buffer is not within one page
    the process may so access (:func:`~pagingcheck.model.isa.buffer_page`), and the call
    has failed with r0 all ones."""
    proc = t.process(pid)
    context = port.context()
    va, count = context.regs[1], context.regs[2]
    vpn = buffer_page(va, count, t.config.page_words)
    record = faults.kernel_access(va, access, context)
    entry = proc.mapping(vpn) if vpn is not None else None
    if entry is None or faults.check_access(t, proc, record) is not None:
        name, failed = FAILED_CALLS[access]
        instruction_retired(t, proc)
        t.emit(name, pid, vpn, detail="failed")
        port.resume(dataclasses.replace(context, regs=(failed, *context.regs[1:])))
        return None
    return BufferCall(proc, context, entry, record)


def fault_in_kernel(t: Tables, port: Port, call: BufferCall) -> None:
    """The call's own access found its page not ready (:func:`~pagingcheck.impl.reference.
    fault.kernel_fault`): the page comes, and the call runs again; or the process dies,
    out of memory."""
    pid = call.proc.pid
    signal = faults.kernel_fault(t, port, pid, call.record, call.context)
    if signal is not None:
        terminate(t, port, pid, "signal", signal.reason)


def own_frame(t: Tables, port: Port, user: User) -> int | None:
    """The frame of ``user``'s page if the kernel may write it for the process now: resident
    and writable in its PTE. None for a page not resident, or shared copy-on-write (its
    PTEs lack the write right until it is copied or taken over)."""
    pte = t.pte_of(port, user)
    return bits.pfn(pte) if bits.is_present(pte) and pte & bits.WRITE else None


def fill_buffer(t: Tables, port: Port, page: PageId, base: int, count: int) -> int:
    """Write the console's next input bytes to the ``count`` words from physical address
    ``base`` (on ``page``'s frame), until the input runs out; return how many. The page is
    dirty if any were written: no PTE's modified bit saw these writes."""
    filled = 0
    while filled < count and (byte := port.console_read()) is not None:
        port.write(base + filled, byte)
        filled += 1
    if filled:
        t.set_record(page, dirty=True)
    return filled


# -- fork --------------------------------------------------------------------------------------


def fork(t: Tables, port: Port, pid: int) -> None:
    """The FORK system call of running ``pid``: a child with a copy of its address space
    and registers (r0 = 0 in the child, the child's pid in the parent), or, when kernel
    memory cannot hold the child's page table, no child and r0 = FORK_FAILED.

    Nothing is copied now. The child's table starts with no page present; each writable
    private page is shared copy-on-write (its record, frame and slot now have two users,
    and every PTE of it loses write, its TLB entry invalidated), to be copied at the first
    write by either side (:func:`~pagingcheck.impl.reference.fault.copy_on_write`). A page
    never touched (a heap page with no frame nor slot yet) is simply given to each its own.
    Shared objects are joined, as at creation."""
    parent = t.process(pid)
    context = port.context()
    child = t.next_pid
    mappings = tuple(child_mapping(t, child, entry) for entry in parent.mappings)
    table = build_page_table(t, port, child, mappings, room(parent, t.config.va_pages))
    if isinstance(table, SpawnRefused):
        t.emit("fork", pid, detail=f"failed: {table.reason}")
        port.resume(dataclasses.replace(context, regs=(FORK_FAILED, *context.regs[1:])))
        return
    root, memory, kalloc = table
    memory.commit()
    t.kalloc = kalloc
    for entry in mappings:
        record = t.pages.get(entry.page)
        if record is None:
            t.pages[entry.page] = PageRecord()
        elif record.slot is not None:
            t.slot_op(record.slot, "add_user", (child, entry.vpn))
    for key in parent.attached:
        obj = t.objects[key]
        t.objects[key] = SharedObject(key, (*obj.users, child), obj.pages)
    t.processes[child] = dataclasses.replace(
        parent,
        pid=child,
        asid=asid_for(t, child),
        root=root,
        mappings=mappings,
        state="ready",
        context=dataclasses.replace(context, regs=(0, *context.regs[1:])),
        started=True,
        parent=pid,
        waits_child=False,
    )
    port.register_space(asid_for(t, child), root)
    t.next_pid = child + 1
    write_protect(t, port, pid)
    t.emit("fork", pid, detail=f"child {child}")
    port.resume(dataclasses.replace(context, regs=(child, *context.regs[1:])))


def child_mapping(t: Tables, child: int, entry: Mapping) -> Mapping:
    """The child's mapping of a parent's ``entry``: the same page, except a writable
    private page never touched, which becomes a new page of the child's."""
    record = t.record(entry.page)
    untouched = not entry.page.shared and entry.prot & bits.WRITE and record == PageRecord()
    if untouched:
        return dataclasses.replace(entry, page=PageId.private(child, entry.vpn))
    return entry


def room(proc: Process, va_pages: int) -> tuple[int, ...]:
    """The pages ``proc``'s heap and stack may still grow into (not valid yet)."""
    valid = {entry.vpn for entry in proc.mappings}
    stack = min((e.vpn for e in proc.mappings if e.kind == "stack"), default=va_pages)
    heap = range(proc.heap_start, proc.heap_start + proc.heap_limit)
    return tuple(v for v in (*heap, *range(proc.stack_floor, stack)) if v not in valid)


def write_protect(t: Tables, port: Port, pid: int) -> None:
    """Take write away from every present PTE of ``pid`` that shows a page now shared
    copy-on-write (the TLB entry goes with it)."""
    proc = t.process(pid)
    for entry in proc.mappings:
        user = (pid, entry.vpn)
        prot, copied = t.pte_rights(entry)
        if copied and bits.is_present(t.pte_of(port, user)):
            t.protect(port, user, prot)


# -- the heap --------------------------------------------------------------------------------


def sbrk(t: Tables, port: Port, pid: int) -> None:
    """The SBRK system call of running ``pid``: move the heap's break by r1 pages and
    return to it with r0 the old break's address, or :data:`SBRK_FAILED` with nothing
    changed when the heap cannot be that size (``model.program.heap_break``).

    New pages are zero-filled ones with no frame and no swap slot yet: both come at
    the first touch (:func:`~pagingcheck.impl.reference.fault.reserve_slot`). Pages
    the heap loses go as at termination: unmapped (PTE and TLB), their frames and
    slots freed, a transfer in flight left to end on an orphaned frame."""
    proc = t.process(pid)
    context = port.context()
    heap = [entry for entry in proc.mappings if entry.kind == "heap"]
    brk = proc.heap_start + len(heap)
    new = heap_break(brk, signed(context.regs[1]), proc.heap_start, proc.heap_limit)
    if new is not None and new > brk:
        grow_heap(t, proc, range(brk, new))
    elif new is not None and new < brk:
        shrink_heap(t, port, proc, [entry for entry in heap if entry.vpn >= new])
    result = SBRK_FAILED if new is None else brk * t.config.page_words
    t.emit("sbrk", pid, new, detail=f"r1={signed(context.regs[1])} r0={result:#x}")
    port.resume(dataclasses.replace(context, regs=(result, *context.regs[1:])))


def grow_heap(t: Tables, proc: Process, pages: range) -> None:
    """Make ``pages`` valid zero-filled heap pages of ``proc``, with no slot yet."""
    added = []
    for vpn in pages:
        page = faults.fresh_page(t, proc.pid, vpn)
        t.pages[page] = PageRecord()
        added.append(Mapping(vpn, "heap", GROWN_PROT, page, None, 0))
    mappings = tuple(sorted((*proc.mappings, *added), key=lambda entry: entry.vpn))
    t.update(proc, mappings=mappings)


def shrink_heap(t: Tables, port: Port, proc: Process, gone: list[Mapping]) -> None:
    """Take the heap pages ``gone`` from ``proc``: release them as termination would."""
    release_private(t, port, proc.pid, gone)
    dropped = {entry.vpn for entry in gone}
    mappings = tuple(entry for entry in proc.mappings if entry.vpn not in dropped)
    t.update(t.process(proc.pid), mappings=mappings)
    faults.settle_transfers(t, port)


def release_private(t: Tables, port: Port, pid: int, entries: list[Mapping]) -> None:
    """Unmap ``pid``'s private pages ``entries`` and free their frames, slots and records
    (a frame with a transfer in flight stays busy until it ends). A page a fork shares
    with another process stays, for it: only ``pid``'s mapping and slot use go."""
    kept = forked_pages(t, pid, entries)
    for entry in entries:
        rec = t.record(entry.page)
        user = (pid, entry.vpn)
        if rec.frame is not None and user in t.users(rec.frame):
            drop_mapping(t, port, rec.frame, user, entry.page, entry.page in kept)
    for entry in entries:
        slot = t.record(entry.page).slot
        if slot is not None:
            t.drop_slot_user(slot, (pid, entry.vpn))
        if entry.page not in kept:
            del t.pages[entry.page]


def forked_pages(t: Tables, pid: int, entries: list[Mapping]) -> set[PageId]:
    """The private pages among ``entries`` that another live process shares (after a fork)."""
    return {
        entry.page
        for entry in entries
        if not entry.page.shared and any(user[0] != pid for user in t.sharers(entry.page))
    }


# -- termination ---------------------------------------------------------------------------


def terminate(
    t: Tables, port: Port, pid: int, how: str, reason: str = "", status: int = KILLED
) -> None:
    """Release everything ``pid`` holds: mappings, pages, frames, slots, page table.

    ``how`` is ``"exit"`` (the exit system call, with its ``status``), ``"kill"``
    (from outside) or ``"signal"`` (an invalid or forbidden access, an illegal
    instruction: the default action). Shared pages and their slots stay while another
    process uses them; a frame with a transfer in flight stays busy and is
    freed when the transfer ends. The entry stays, with the status, until the parent
    waits for it; a parent asleep in a WAIT is woken; children become orphans.
    """
    proc = t.process(pid)
    if how == "signal":
        t.emit("signal", pid, detail=reason)
    release_image(t, port, proc)
    if t.current == pid:
        t.current = None
    t.update(
        proc,
        state="exited",
        context=None,
        fault=None,
        wait=None,
        wait_page=None,
        waits_memory=False,
        ticket=None,
        pinned=(),
        waits_child=False,
        status=status,
    )
    for child in list(t.processes.values()):
        if child.parent == pid:
            t.update(child, parent=None)
    t.memory_changed = True
    t.emit("exit", pid, detail=reason or how)
    wake_parent(t, proc)
    faults.settle_transfers(t, port)


def release_image(
    t: Tables, port: Port, proc: Process, staying: frozenset[str] = frozenset()
) -> None:
    """Release ``proc``'s address space: every mapping, its private pages, its use of
    shared objects and their slots, and its page table (its TLB entries go too). The
    shared objects ``staying`` keep ``proc`` as a user (an EXEC's new image joins them)."""
    pid = proc.pid
    survivors = {
        key
        for key in proc.attached
        if key in staying or is_file(key) or any(u != pid for u in t.objects[key].users)
    }
    shared = [entry for entry in proc.mappings if entry.page.shared]
    for entry in shared:
        rec = t.record(entry.page)
        user = (pid, entry.vpn)
        if rec.frame is not None and user in t.users(rec.frame):
            survives = entry.page.owner in survivors
            drop_mapping(t, port, rec.frame, user, entry.page, survives)
    for entry in shared:
        rec = t.record(entry.page)
        if rec.slot is not None:
            t.drop_slot_user(rec.slot, (pid, entry.vpn))
    release_private(t, port, pid, [entry for entry in proc.mappings if not entry.page.shared])
    for key in proc.attached:
        if key in staying:
            continue
        obj = t.objects[key]
        users = tuple(u for u in obj.users if u != pid)
        if users or is_file(key):  # a file outlives its mappings
            t.objects[key] = SharedObject(key, users, obj.pages)
            continue
        del t.objects[key]
        for index in range(obj.pages):
            t.pages.pop(PageId(key, index), None)
        t.emit("shared_zero", pid, detail=key)
    t.editor.destroy(port, t.kalloc, proc.root, proc.asid)
    vm.forget(port, proc.space)
    port.release_space(proc.asid)


# -- files ----------------------------------------------------------------------------------


def is_file(key: str) -> bool:
    """Whether shared object ``key`` is a workload file (``file:<name>``)."""
    return key.startswith("file:")


def mmap(t: Tables, port: Port, pid: int) -> None:
    """The MMAP system call of running ``pid``: map every page of file number r1 read-write
    from virtual address r2, shared with the file when r3 has MAP_SHARED, else private
    (copy-on-write over it), and return r2; or MMAP_FAILED with nothing changed when r1
    names no file, the pages are not all invalid and in the process's map area, or kernel
    memory cannot hold their page-table entries.

    Nothing is read now. The file is a shared object, made at its first mapping, whose
    page records stay for good: each page's home is its own block of the file (no swap
    slot), from which a fault pages it in and to which a dirty page is written back. A
    private mapping shows the file's page, its PTE without write, until the process
    writes it: that write copies it (:func:`~pagingcheck.impl.reference.fault.plan_copy`)."""
    proc = t.process(pid)
    context = port.context()
    number, va, flags = context.regs[1], context.regs[2], context.regs[3]
    file = port.file(number)
    area = frozenset(proc.map_area)
    vpns = map_range(va, file.pages, t.config.page_words, area) if file is not None else None
    if file is None or vpns is None or any(proc.mapping(vpn) for vpn in vpns):
        map_failed(t, port, pid, context, "no such file, or not room for it")
        return
    memory, kalloc = Overlay(port), t.kalloc.copy()
    for vpn in vpns:
        if not vm.prepare(t.editor, memory, kalloc, proc.space, vpn, GROWN_PROT):
            map_failed(t, port, pid, context, "out of kernel memory for its page-table entries")
            return
    memory.commit()
    t.kalloc = kalloc
    key = open_file(t, file)
    kind = "file" if flags & MAP_SHARED else "private_file"
    added = [
        Mapping(vpn, kind, GROWN_PROT, PageId(key, i), key, i)  # type: ignore[arg-type]
        for i, vpn in enumerate(vpns)
    ]
    obj = t.objects[key]
    if pid not in obj.users:
        t.objects[key] = SharedObject(key, (*obj.users, pid), obj.pages)
    mappings = tuple(sorted((*proc.mappings, *added), key=lambda entry: entry.vpn))
    attached = tuple(sorted({*proc.attached, key}))
    t.update(proc, mappings=mappings, attached=attached)
    t.emit("mmap", pid, vpns.start, detail=f"{key} {kind} {len(vpns)} pages")
    port.resume(dataclasses.replace(context, regs=(va, *context.regs[1:])))


def map_failed(t: Tables, port: Port, pid: int, context: ArchState, why: str) -> None:
    """MMAP returns MMAP_FAILED, having changed nothing."""
    t.emit("mmap", pid, detail=f"failed: {why}")
    port.resume(dataclasses.replace(context, regs=(MMAP_FAILED, *context.regs[1:])))


def open_file(t: Tables, file: DiskFile) -> str:
    """The shared object of ``file`` (made at its first mapping, with a page record per
    page homed in its block): its key."""
    key = f"file:{file.name}"
    if key not in t.objects:
        t.objects[key] = SharedObject(key, (), file.pages)
        for index, block in enumerate(file.blocks):
            t.pages[PageId(key, index)] = PageRecord(image=block, file=True)
    return key


def munmap(t: Tables, port: Port, pid: int) -> None:
    """The MUNMAP system call of running ``pid``: unmap the r2 pages from virtual address r1,
    every one a page an MMAP mapped, and return 0; or MUNMAP_FAILED with nothing changed.

    A page still the file's is unmapped as at exit: the file keeps it (a dirty page whose
    last mapping this was is written back to its block, the frame busy meanwhile); a
    private copy is released with its frame and slot. A file none of the process's pages
    shows any more is detached from it."""
    proc = t.process(pid)
    context = port.context()
    vpns = map_range(
        context.regs[1], context.regs[2], t.config.page_words, frozenset(proc.map_area)
    )
    gone = [entry for vpn in vpns or () if (entry := proc.mapping(vpn)) is not None]
    if vpns is None or len(gone) < len(vpns):
        t.emit("munmap", pid, detail="failed: not mapped pages")
        port.resume(dataclasses.replace(context, regs=(MUNMAP_FAILED, *context.regs[1:])))
        return
    for entry in gone:
        rec = t.record(entry.page)
        user = (pid, entry.vpn)
        if entry.page.shared and rec.frame is not None and user in t.users(rec.frame):
            drop_mapping(t, port, rec.frame, user, entry.page, True)
    release_private(t, port, pid, [entry for entry in gone if not entry.page.shared])
    dropped = {entry.vpn for entry in gone}
    mappings = tuple(entry for entry in proc.mappings if entry.vpn not in dropped)
    shown = {entry.page.owner for entry in mappings}
    for key in [key for key in proc.attached if is_file(key) and key not in shown]:
        obj = t.objects[key]
        t.objects[key] = SharedObject(key, tuple(u for u in obj.users if u != pid), obj.pages)
    attached = tuple(key for key in proc.attached if not is_file(key) or key in shown)
    t.update(t.process(pid), mappings=mappings, attached=attached)
    faults.settle_transfers(t, port)
    t.emit("munmap", pid, vpns.start, detail=f"{len(gone)} pages")
    port.resume(dataclasses.replace(context, regs=(0, *context.regs[1:])))


# -- exec and wait ------------------------------------------------------------------------------


def exec_program(t: Tables, port: Port, pid: int) -> None:
    """The EXEC system call of running ``pid``: start the workload's program number r1
    afresh in place of its image, keeping its pid, asid and family; or, when r1 names no
    program or the new image cannot be built, return EXEC_FAILED with nothing changed.

    The new image is planned as creation plans one (:func:`plan_creation`, for this pid)
    while the old one still stands, so a refusal changes nothing; its page table is
    written first, then the old image is released as at exit (its TLB entries dropped,
    the shared objects the new image joins kept), and the process goes on at the new
    program's entry in the new table."""
    proc = t.process(pid)
    context = port.context()
    image = port.image(context.regs[1])
    plan = SpawnRefused("no such program") if image is None else plan_creation(t, port, image, pid)
    if isinstance(plan, SpawnRefused):
        t.emit("exec", pid, detail=f"failed: {plan.reason}")
        port.resume(dataclasses.replace(context, regs=(EXEC_FAILED, *context.regs[1:])))
        return
    plan.table.commit()
    t.kalloc = plan.table_kalloc
    release_image(t, port, proc, staying=frozenset(plan.sizing.joined))
    take_image(t, plan)
    entry = new_entry(t, plan)
    t.processes[pid] = dataclasses.replace(
        entry, parent=proc.parent, state="running", context=None, started=True
    )
    port.register_space(entry.asid, entry.root)
    port.load_context(entry.root, entry.asid)
    t.loaded = (entry.root, entry.asid)
    t.emit("exec", pid, detail=plan.image.program.name)
    assert entry.context is not None
    port.resume(entry.context)


def wait(t: Tables, port: Port, pid: int) -> None:
    """The WAIT system call of running ``pid``: return the lowest exited child not yet
    waited for (r0 its pid, r1 its status), which is then forgotten; or, while every child
    is alive, sleep with the PC back at the SYS, to run the call again when one exits
    (:func:`wake_parent`); or, with no children, return WAIT_FAILED."""
    context = port.context()
    children = [c for c in t.processes.values() if c.parent == pid and not c.reaped]
    exited = sorted((c.pid, c.status) for c in children if c.state == "exited")
    if exited:
        child, status = exited[0]
        assert status is not None
        t.update(t.processes[child], reaped=True)
        t.emit("wait", pid, detail=f"child {child} status {status:#x}")
        port.resume(dataclasses.replace(context, regs=(child, status, *context.regs[2:])))
    elif children:
        asleep = dataclasses.replace(context, pc=context.pc - 1)
        t.update(t.process(pid), state="blocked", context=asleep, waits_child=True)
        t.current = None
        t.emit("wait", pid, detail="asleep")
    else:
        t.emit("wait", pid, detail="failed: no children")
        port.resume(dataclasses.replace(context, regs=(WAIT_FAILED, *context.regs[1:])))


def wake_parent(t: Tables, child: Process) -> None:
    """``child`` has exited: its parent, asleep in a WAIT, is ready to run the call again."""
    parent = t.processes.get(child.parent) if child.parent is not None else None
    if parent is not None and parent.state == "blocked" and parent.waits_child:
        t.update(parent, state="ready", waits_child=False)
        t.emit("ready", parent.pid, detail=f"child {child.pid} exited")
