"""Process creation, execution (dispatch) and termination: three of the four times the
kernel does paging work (the fourth, the page fault, is :mod:`pagingcheck.impl.fault`).

Creation (:func:`spawn`), decide then perform:

1. :func:`size_program` - how large text, data, heap and stack are, and which
   shared objects the program joins or creates;
2. :func:`plan_swap` - the swap slots every private page and every new shared
   page needs, and the image blocks a first-time program's text needs;
3. :func:`build_page_table` - allocate and initialise the page table, on
   trial copies of kernel memory and the allocator, so a refusal leaves
   nothing behind;
4. :func:`perform_creation` (cannot fail) - take the slots, initialise swap
   with text and data (or load the image), record the page table root, the
   page map and the swap map in the process table.

Execution (:func:`dispatch`): save the running process's context, reset the
MMU to the new page table, flush the TLB unless it is tagged, load the new
context, and on the first dispatch start the configured prepaging.

Termination (:func:`terminate`): drop every mapping (a shared page stays
resident for its other users; a dirty shared page whose last mapping goes
is written back), release private pages, slots and frames, shared ones at
the last user only, leave a frame with a transfer in flight busy until the
transfer ends (it is orphaned, then freed at completion), then free the
page table.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagingcheck.impl import fault as faults
from pagingcheck.impl import vm
from pagingcheck.impl.fault import save_registers
from pagingcheck.impl.interface import SpawnRefused
from pagingcheck.impl.tables import (
    Mapping,
    PageId,
    PageRecord,
    Process,
    SharedObject,
    Tables,
    User,
)
from pagingcheck.model import bits
from pagingcheck.model.errors import InternalError, UserError
from pagingcheck.model.isa import ArchState
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.machine import Machine
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.program import STACK_POINTER, LayoutPage, Program

REGISTERS = 8

# -- creation ------------------------------------------------------------------------


@dataclass(frozen=True)
class NewPage:
    """A page record creation makes: whether it needs a slot, its first contents."""

    page: PageId
    needs_slot: bool
    zero: bool  # heap, stack, segment: all zeros, nothing stored yet
    initial: tuple[int, ...] | None  # words to write to its slot at creation
    image: int | None = None  # image block (text paged from the image)


@dataclass(frozen=True)
class Sizing:
    """Step 1: the program's pages, and the shared objects it creates or joins."""

    layout: tuple[LayoutPage, ...]
    mappings: tuple[Mapping, ...]
    new_objects: tuple[SharedObject, ...]
    joined: tuple[str, ...]
    new_pages: tuple[NewPage, ...]
    joined_pages: tuple[PageId, ...]  # pages of joined objects: their slots gain a user
    image: tuple[int, tuple[tuple[int, ...], ...]] | None  # first image block, text to load


@dataclass(frozen=True)
class CreationPlan:
    """Everything process creation will do, decided with every check made."""

    pid: int
    program: Program
    sizing: Sizing
    slots: tuple[int, ...]  # the free slots the new pages take, in order
    root: int
    table_memory: PhysicalMemory
    table_kalloc: KernelAllocator


def copies_text(machine: Machine) -> bool:
    """Whether each process gets its own copy of program text.

    An inverted table has one entry per frame, so a frame is mapped by one
    address space at a time. Sharing text that way would make processes
    steal the mapping from each other on every instruction fetch, so on
    that format each process pages in its own copy of the text (its own
    slots, or the shared image blocks). Writable segments stay shared, one
    mapping at a time.
    """
    return machine.format.kind == "inverted"


def _text_page(t: Tables, page: LayoutPage, image_start: int, own: PageId) -> NewPage:
    if t.kconfig.text_from_image:
        return NewPage(own, False, False, None, image_start + page.index)
    return NewPage(own, True, False, page.initial)


def size_program(t: Tables, machine: Machine, program: Program, pid: int) -> Sizing:
    """Step 1: how large text, data, heap and stack are; which shared objects exist.

    Private pages (data, heap, stack; text on an inverted table) get a page
    record each. A shared object (text, segment) that no live process uses
    yet is created with a record per page; one that exists is joined.
    """
    config = machine.config
    layout = program.layout(config.page_words, config.va_pages)
    mappings: list[Mapping] = []
    new_objects: dict[str, int] = {}
    new_pages: list[NewPage] = []
    joined_pages: list[PageId] = []
    image = None
    image_start = t.next_image
    if program.name in t.images:
        image_start = t.images[program.name][0]
    elif t.kconfig.text_from_image:
        image = (image_start, tuple(p.initial for p in layout if p.kind == "text"))
    for page in layout:
        key = page.shared_key
        own = PageId.private(pid, page.vpn)
        if key is None or (page.kind == "text" and copies_text(machine)):
            if page.kind == "text":
                new_pages.append(_text_page(t, page, image_start, own))
            else:
                data = page.kind == "data"
                new_pages.append(NewPage(own, True, not data, page.initial if data else None))
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
            if page.kind == "text":
                new_pages.append(_text_page(t, page, image_start, shared))
            else:
                new_pages.append(NewPage(shared, True, True, None))
        mappings.append(Mapping(page.vpn, page.kind, page.prot, shared, key, page.index))
    joined = tuple(sorted({p.owner for p in joined_pages}))
    objects = tuple(SharedObject(key, (pid,), size) for key, size in sorted(new_objects.items()))
    return Sizing(
        layout, tuple(mappings), objects, joined, tuple(new_pages), tuple(joined_pages), image
    )


def plan_swap(t: Tables, program: Program, sizing: Sizing) -> tuple[int, ...] | SpawnRefused:
    """Step 2: the free slots the new pages take, or a refusal when swap or image space is short."""
    needed = sum(1 for page in sizing.new_pages if page.needs_slot)
    if needed > len(t.free_slots):
        return SpawnRefused(f"out of swap: {needed} slots needed, {len(t.free_slots)} free")
    if sizing.image is not None:
        first, pages = sizing.image
        if first + len(pages) > t.config.image_blocks:
            return SpawnRefused(
                f"out of image blocks: program {program.name!r} needs {len(pages)}, "
                f"{t.config.image_blocks - first} left"
            )
    return t.free_slots[:needed]


def build_page_table(
    t: Tables, machine: Machine, pid: int, mappings: tuple[Mapping, ...]
) -> tuple[int, PhysicalMemory, KernelAllocator] | SpawnRefused:
    """Step 3: allocate and initialise the page table on trial copies of memory and allocator.

    Returns the root and the trial memory and allocator holding the new
    table, or a refusal (nothing real has changed either way).
    """
    memory, kalloc = machine.memory.copy(), t.kalloc.copy()
    root = machine.format.create(memory, kalloc, pid, t.system_root)
    if root is None:
        return SpawnRefused("out of kernel memory for the page table")
    space = vm.Space(root, pid)
    for entry in mappings:
        if not vm.prepare(machine.format, memory, kalloc, space, entry.vpn, entry.prot):
            return SpawnRefused(f"out of kernel memory for the page table entry of vpn {entry.vpn}")
    return root, memory, kalloc


def plan_creation(t: Tables, machine: Machine, program: Program) -> CreationPlan | SpawnRefused:
    """Decide process creation: steps 1-3, every check made, nothing changed."""
    pid = t.next_pid
    sizing = size_program(t, machine, program, pid)
    slots = plan_swap(t, program, sizing)
    if isinstance(slots, SpawnRefused):
        return slots
    table = build_page_table(t, machine, pid, sizing.mappings)
    if isinstance(table, SpawnRefused):
        return table
    root, memory, kalloc = table
    return CreationPlan(pid, program, sizing, slots, root, memory, kalloc)


def perform_creation(t: Tables, machine: Machine, plan: CreationPlan) -> int:
    """Step 4 (cannot fail): take slots, initialise swap, record the process. Returns the pid."""
    sizing = plan.sizing
    kernel_words = machine.config.kernel_frames * machine.config.page_words
    machine.memory.words[:kernel_words] = plan.table_memory.words[:kernel_words]
    t.kalloc = plan.table_kalloc
    if sizing.image is not None:
        first, pages = sizing.image
        for offset, words in enumerate(pages):
            machine.disk.write_block(machine.disk.first_image_block + first + offset, words)
        t.images[plan.program.name] = (first, len(pages))
        t.next_image = first + len(pages)
    free = iter(plan.slots)
    for new in sizing.new_pages:
        slot = None
        if new.needs_slot:
            slot = next(free)
            t.slot_op(slot, "allocate", 1)
            if new.initial is not None:
                machine.disk.write_block(slot, new.initial)
        t.pages[new.page] = PageRecord(slot=slot, image=new.image, zero=new.zero)
    for page in sizing.joined_pages:
        slot = t.record(page).slot
        if slot is not None:
            t.slot_op(slot, "add_user")
    for obj in sizing.new_objects:
        t.objects[obj.key] = obj
    for key in sizing.joined:
        obj = t.objects[key]
        t.objects[key] = SharedObject(key, (*obj.users, plan.pid), obj.pages)
    regs = [0] * REGISTERS
    regs[STACK_POINTER] = plan.program.initial_stack_pointer(
        machine.config.page_words, machine.config.va_pages
    )
    attached = tuple(sorted({o.key for o in sizing.new_objects} | set(sizing.joined)))
    t.processes[plan.pid] = Process(
        plan.pid,
        plan.pid,
        plan.program.name,
        plan.root,
        sizing.mappings,
        "ready",
        ArchState(tuple(regs), plan.program.entry, 0),
        attached=attached,
    )
    t.next_pid = plan.pid + 1
    t.emit("spawn", plan.pid, detail=plan.program.name)
    return plan.pid


def spawn(t: Tables, machine: Machine, program: Program) -> int | SpawnRefused:
    """Create a process running ``program``: its pid, or a refusal with nothing changed."""
    plan = plan_creation(t, machine, program)
    if isinstance(plan, SpawnRefused):
        return plan
    return perform_creation(t, machine, plan)


# -- execution -----------------------------------------------------------------------------


def dispatch(t: Tables, machine: Machine, pid: int) -> None:
    """Put ready ``pid`` on the CPU (steps 9-10 of a fault end here too).

    Saves the running process's registers, resets the MMU to ``pid``'s page
    table (flushing an untagged TLB when the address space changes), loads
    ``pid``'s registers in user mode, and on its first dispatch starts the
    configured prepaging. Dispatching the running process changes nothing
    but noting that it now re-runs an instruction whose fault was handled.
    """
    proc = t.process(pid)
    if t.current == pid and proc.state == "running":
        if proc.waiting_to_rerun:  # it runs the instruction its fault interrupted now
            t.update(proc, waiting_to_rerun=False)
        return
    if proc.state != "ready" or proc.context is None:
        raise InternalError(f"process.dispatch: process {pid} is {proc.state}, not ready")
    if t.current is not None:
        save_context(t, machine)
    switching = (machine.mmu.ptbr, machine.mmu.asid) != (proc.root, proc.asid)
    machine.mmu.load_context(proc.root, proc.asid)
    if switching and not machine.config.tlb_tagged:
        machine.mmu.tlb.flush()
    machine.cpu.resume(proc.context)
    first = not proc.started
    proc = t.update(proc, state="running", context=None, started=True, waiting_to_rerun=False)
    t.current = pid
    t.emit("dispatch", pid, detail="switch" if switching else "")
    if first:
        prepage(t, machine, proc)


def save_context(t: Tables, machine: Machine) -> None:
    """Save the running process's registers in its table entry; it becomes ready."""
    if t.current is None:
        return
    running = t.process(t.current)
    t.update(running, state="ready", context=save_registers(machine))
    t.current = None


def prepage(t: Tables, machine: Machine, proc: Process) -> None:
    """Start page-ins for the configured pages, into free frames only.

    ``"pc"`` names the page the PC points at; a tuple names vpns (invalid
    ones are ignored). Nothing is evicted for prepaging, and the process is
    not blocked: if it touches a page still in transit it faults and waits.
    """
    setting = t.kconfig.prepage
    if setting == "none":
        return
    if setting == "pc":
        context = machine.cpu.state
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
        pfn = t.free_frames[0]
        t.frame_op(machine, pfn, "reserve")
        t.emit("prepage", proc.pid, vpn, pfn)
        faults.start_pagein(t, machine, pfn, entry.page, parked=((proc.pid, vpn),))


# -- termination ---------------------------------------------------------------------------


def terminate(t: Tables, machine: Machine, pid: int, how: str, reason: str = "") -> None:
    """Release everything ``pid`` holds: mappings, pages, frames, slots, page table.

    ``how`` is ``"exit"`` (the exit system call), ``"kill"`` (from outside)
    or ``"signal"`` (an invalid or forbidden access, an illegal instruction:
    the default action). Shared pages and their slots stay while another
    process uses them; a frame with a transfer in flight stays busy and is
    freed when the transfer ends.
    """
    proc = t.process(pid)
    if how == "signal":
        t.emit("signal", pid, detail=reason)
    survivors = {key for key in proc.attached if any(u != pid for u in t.objects[key].users)}
    for entry in proc.mappings:
        rec = t.record(entry.page)
        user = (pid, entry.vpn)
        if rec.frame is not None and user in t.rmap.get(rec.frame, ()):
            survives = entry.page.shared and entry.page.owner in survivors
            drop_mapping(t, machine, rec.frame, user, entry.page, survives)
    for entry in proc.mappings:
        rec = t.record(entry.page)
        if rec.slot is not None:
            t.drop_slot_user(rec.slot)
    for entry in proc.mappings:
        if not entry.page.shared:
            del t.pages[entry.page]
    for key in proc.attached:
        obj = t.objects[key]
        users = tuple(u for u in obj.users if u != pid)
        if users:
            t.objects[key] = SharedObject(key, users, obj.pages)
            continue
        del t.objects[key]
        for index in range(obj.pages):
            t.pages.pop(PageId(key, index), None)
        t.emit("shared_zero", pid, detail=key)
    machine.format.destroy(machine.memory, t.kalloc, proc.root, proc.asid)
    vm.forget(machine, proc.space)
    if t.current == pid:
        t.current = None
    t.update(proc, state="exited", context=None, fault=None, wait=None, wait_page=None)
    t.emit("exit", pid, detail=reason or how)
    faults.settle_transfers(t, machine)


def drop_mapping(
    t: Tables, machine: Machine, pfn: int, user: User, page: PageId, survives: bool
) -> None:
    """Remove one process's mapping of ``pfn`` at exit.

    Other mappings keep the frame (its M bit is carried in the page record).
    At the last mapping: a page that outlives the process (a shared page
    with other users) and is dirty is written back with the frame busy; any
    other page's frame is freed at once.
    """
    old = t.unmap_user(machine, pfn, user)
    if t.rmap.get(pfn):
        t.frame_op(machine, pfn, "unmap_user")
        if bits.is_modified(old):
            t.set_record(page, dirty=True)
        return
    dirty = bits.is_modified(old) or t.record(page).dirty
    t.policy.removed(pfn)
    if survives and dirty:
        t.frame_op(machine, pfn, "evict")
        faults.start_writeback(t, machine, pfn, page, "clean")
        return
    t.frame_op(machine, pfn, "release")
    t.set_record(page, frame=None, dirty=False)
    t.emit("free_frame", user[0], user[1], pfn)
