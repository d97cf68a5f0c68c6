"""The page fault, in the ten steps of the seeds, plus disk completion and wake-up.

The steps and the functions that do them:

1. the hardware traps, saving the PC and the instruction's state
   (``model.cpu``: the trap frame, with the state register);
2. the interrupt routine saves the registers: :func:`save_registers`;
3. find the faulting virtual address: :func:`read_trap` (the decode
   variant parses the instruction, :func:`pagingcheck.impl.lib.restart.locate`);
4. check validity and protection (:func:`check_access`; a bad access is a
   signal), then find a frame: a free one or the policy's victim
   (:func:`choose_frame`). :func:`plan_fault` makes every decision of steps
   3-6 and returns a :data:`FaultPlan`; :func:`perform_fault` applies it and
   cannot fail;
5. a dirty victim is unmapped everywhere and written back while the faulting
   process blocks (:func:`evict`, :func:`start_writeback`); the frame is
   BUSY from the moment it is chosen;
6. once the frame is clean, read the page in (:func:`start_pagein`;
   a page never written is zero-filled without I/O);
7. on the disk interrupt, map the page and put the frame back in normal
   use (:func:`complete_transfer`, :func:`install_page`);
8. back up the faulting instruction (:func:`backup`);
9. make the process ready (:func:`wake`);
10. reload the registers and return to user mode: :func:`return_to_user`
    when the fault needed no waiting, else the dispatcher when the process
    is next chosen (:func:`pagingcheck.impl.reference.process.dispatch`).

Every fault goes through the same path: the registers are saved and the
process is blocked; a fault resolved at once (TLB refill, minor fault,
zero fill) wakes it again in the same handler, backed up, and returns to
it, so it keeps the CPU. Waiting on a transfer that someone else started
ends the same way: when that transfer ends the waiter is woken and, if its
page is not mapped by then, simply faults again.

Progress when frames are short. An instruction is *unfinished* from its
first fault until it retires; the pages it has faulted in so far are
*pinned* for it, and it holds a *ticket* handed out in fault order. A
fault never evicts a page pinned by an instruction holding an older
ticket, nor one its own instruction needs; when every frame it could take
is pinned so, the process waits for memory (it is woken when a frame is
freed, a transfer ends, or an instruction finishes) instead of robbing
another. So the oldest unfinished instruction never loses its pages, it
always completes, and each instruction in turn becomes the oldest: every
process makes progress however few frames there are (as long as there are
enough for one instruction, which the configuration checks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pagingcheck.impl.interface import Location
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib import identity, restart
from pagingcheck.impl.reference.tables import (
    FaultRecord,
    Mapping,
    PageId,
    PageRecord,
    Process,
    Tables,
    Transfer,
    User,
)
from pagingcheck.model import bits
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import InternalError
from pagingcheck.model.isa import MAX_PAGES_PER_INSTRUCTION, ArchState
from pagingcheck.model.mmu import NEEDED
from pagingcheck.model.pagetable import Entry
from pagingcheck.model.port import Port
from pagingcheck.model.program import STACK_POINTER, stack_growth
from pagingcheck.model.traps import Access, TrapFrame, TrapKind

#: The protection of the pages a stack or heap grows by (as the layout's stack and heap).
GROWN_PROT = bits.READ | bits.WRITE | bits.USER

#: Local allocation lets a process grow to as many frames as one instruction can need.
LOCAL_FLOOR = MAX_PAGES_PER_INSTRUCTION

# -- steps 2 and 3: save registers, find the faulting address -----------------------------


def save_registers(port: Port) -> ArchState:
    """Step 2: the registers as the trap left them (side effects included)."""
    return port.context()


def read_trap(port: Port, trap: TrapFrame) -> FaultRecord | None:
    """Step 3: which access faulted, and what to undo at backup.

    Precise hardware has already undone the instruction; the state-register
    variant records the side effects it left; the decode variant records
    only the instruction's address, so the kernel parses the instruction
    (:func:`pagingcheck.impl.lib.restart.locate`). Returns None when the
    decoder finds no faulting access (a hardware/kernel disagreement the
    caller reports).
    """
    if trap.va is None or trap.access is None:
        located = restart.locate(port, trap.pc, port.context())
        if located is None:
            return None
        fault = located.fault
        return FaultRecord(
            fault.kind, fault.va, fault.access, trap.pc, located.side_effects, located.fault_point
        )
    return FaultRecord(trap.kind, trap.va, trap.access, trap.pc, trap.state_register)


# -- step 4: validity and protection -------------------------------------------------------


def check_access(t: Tables, proc: Process, record: FaultRecord) -> str | None:
    """Step 4a: None when the access is valid and allowed, else the signal's reason.

    ``"invalid"``: the address is outside every segment of the process;
    ``"protection"``: the page exists but its protection forbids the access.
    """
    if not 0 <= record.va < t.config.va_words:
        return "invalid"
    entry = proc.mapping(record.va // t.config.page_words)
    if entry is None:
        return "invalid"
    needed = NEEDED[record.access] | bits.USER
    if entry.prot & needed != needed:
        return "protection"
    return None


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """Step 4: the access is invalid or forbidden; the default action kills the process."""

    reason: str


@dataclass(frozen=True)
class Refill:
    """Software-managed TLB miss on a present page: load the walked entry and resume."""

    entry: Entry


@dataclass(frozen=True)
class Resume:
    """The page is already mapped as the access needs: just back up and resume."""


@dataclass(frozen=True)
class Minor:
    """The page is resident in ``pfn`` for other users: map it (``steal`` moves the one
    mapping an inverted table allows)."""

    page: PageId
    pfn: int
    steal: tuple[User, ...]


@dataclass(frozen=True)
class Wait:
    """The page is in transit in ``pfn``: wait for that frame's transfer to end."""

    pfn: int
    page: PageId
    why: str


@dataclass(frozen=True)
class WaitMemory:
    """No frame may be taken now (every candidate is pinned by an older unfinished
    instruction or by this one, or busy): wait until memory frees up."""


@dataclass(frozen=True)
class Victim:
    """The page the replacement policy evicts from ``pfn``: its users, dirty or clean."""

    pfn: int
    page: PageId
    users: tuple[User, ...]
    dirty: bool


@dataclass(frozen=True)
class Major:
    """Bring ``page`` into ``pfn`` from ``source``, evicting ``victim`` first if any."""

    page: PageId
    pfn: int
    source: Location
    victim: Victim | None


@dataclass(frozen=True)
class TakeOver:
    """A write to a copy-on-write page that no other process shares any more: the page
    is the writer's alone, so its PTE gets write back (no copy)."""

    page: PageId


@dataclass(frozen=True)
class Copy:
    """A write to a copy-on-write page others still share: copy it from ``source`` into
    ``pfn`` as the writer's own page (evicting ``victim`` first, if any)."""

    page: PageId
    source: int
    pfn: int
    victim: Victim | None


FaultPlan = Signal | Refill | Resume | Minor | Wait | WaitMemory | Major | TakeOver | Copy

#: Ranks of a candidate frame in :func:`least_needed`.
UNPINNED, YOUNGER_NEEDS, OWN_NEEDS, OLDER_NEEDS = 0, 1, 2, 3


def ticket_of(t: Tables, proc: Process) -> int:
    """The faulting instruction's ticket: its own if it is already unfinished, else the next."""
    return proc.ticket if proc.ticket is not None else _next_ticket(t)


def _next_ticket(t: Tables) -> int:
    """A ticket later than every unfinished instruction's."""
    return 1 + max((p.ticket for p in t.live() if p.ticket is not None), default=-1)


def take_ticket(t: Tables, proc: Process) -> Process:
    """Give ``proc``'s faulting instruction the next ticket.

    Only the order of tickets matters, so the unfinished ones are renumbered
    0, 1, ... first, keeping their order: tickets stay below the number of
    processes instead of counting faults for ever, and two states that differ
    only in how many faults came before are one state to the explorer.
    """
    unfinished = {p.pid: p.ticket for p in t.live() if p.ticket is not None and p.pid != proc.pid}
    for rank, pid in enumerate(identity.first_served(unfinished)):
        if unfinished[pid] != rank:
            t.update(t.processes[pid], ticket=rank)
    return t.update(proc, ticket=len(unfinished))


def least_needed(
    t: Tables, candidates: list[int], proc: Process, own: tuple[PageId, ...]
) -> tuple[int, list[int]]:
    """The candidates whose loss hurts an unfinished instruction least, and their rank.

    Ranks: :data:`UNPINNED`, no unfinished instruction needs the page;
    :data:`YOUNGER_NEEDS`, only instructions served after this one (a
    later ticket, :mod:`~pagingcheck.impl.lib.identity`) need it;
    :data:`OWN_NEEDS`, the faulting instruction itself does; and
    :data:`OLDER_NEEDS`, an instruction served before this one does.
    """
    mine = ticket_of(t, proc)
    tickets = {p.pid: p.ticket for p in t.live() if p.pid != proc.pid and p.ticket is not None}
    order = identity.first_served({**tickets, proc.pid: mine})
    place = {pid: index for index, pid in enumerate(order)}
    pinned = {p.pid: p.pinned for p in t.live() if p.pid in tickets}

    def rank(pfn: int) -> int:
        page = t.frame_page[pfn]
        holders = [pid for pid, pages in pinned.items() if page in pages]
        if any(place[pid] < place[proc.pid] for pid in holders):
            return OLDER_NEEDS
        if page in own:
            return OWN_NEEDS
        return YOUNGER_NEEDS if holders else UNPINNED

    ranks = {pfn: rank(pfn) for pfn in candidates}
    best = min(ranks.values(), default=OLDER_NEEDS)
    return best, [pfn for pfn in candidates if ranks[pfn] == best]


def choose_frame(
    t: Tables, port: Port, proc: Process, pins: tuple[PageId, ...] = ()
) -> tuple[int, Victim | None] | None:
    """Step 4b: a free frame, else the policy's victim among the candidates, else None.

    Local allocation offers the policy the faulting process's own in-use
    frames once it holds :data:`LOCAL_FLOOR` of them (below that, every
    in-use frame, so a process never stays stuck at a size too small to
    run); global allocation always offers every in-use frame. Busy frames
    are never candidates.

    Pages that unfinished instructions need are spared (:func:`least_needed`):
    the policy chooses among the lowest-ranked candidates, and when only
    pages of the faulting instruction or of an instruction served before it
    remain, there is no frame to take: None, and the process waits for
    memory. The oldest unfinished instruction therefore never loses a page,
    and contention for too few frames cannot go round in a circle.

    Returns the frame and the victim (None for a free frame). Choosing may
    clear R bits (second-chance policies do that while they look); it
    changes nothing else.
    """
    if t.free_frames:
        return t.take_free_frame(), None
    in_use = [pfn for pfn, f in sorted(t.frames.items()) if f.status == fr.IN_USE]
    candidates = in_use
    if t.kconfig.allocation == "local":
        own = [pfn for pfn in in_use if any(u[0] == proc.pid for u in t.users(pfn))]
        if len(own) >= LOCAL_FLOOR:
            candidates = own
    rank, candidates = least_needed(t, candidates, proc, pins)
    if rank >= OWN_NEEDS or not candidates:
        return None
    pfn = t.policy.victim(candidates, t.clock, t.bits(port))
    if pfn not in candidates:
        raise InternalError(f"fault.choose_frame: policy chose frame {pfn}, not a candidate")
    users = t.users(pfn)
    return pfn, Victim(pfn, t.frame_page[pfn], users, t.frame_dirty(port, pfn))


def plan_fault(t: Tables, port: Port, proc: Process, record: FaultRecord) -> FaultPlan:
    """Steps 4-6, decided: what handling this fault will do. Changes nothing except
    the R bits a second-chance policy clears while choosing."""
    reason = check_access(t, proc, record)
    if reason is not None:
        return Signal(reason)
    vpn = record.va // t.config.page_words
    entry = proc.mapping(vpn)
    assert entry is not None  # check_access found it
    page = entry.page
    walked = t.editor.walk(port, proc.root, proc.asid, vpn)
    if walked is not None and bits.is_present(walked.pte):
        if record.access is Access.WRITE and not walked.pte & bits.WRITE:
            return plan_copy(t, port, proc, record, bits.pfn(walked.pte))
        if record.kind is TrapKind.TLB_MISS:
            return Refill(walked)
        return Resume()
    rec = t.record(page)
    if rec.incoming is not None:
        return Wait(rec.incoming, page, "page-in in flight")
    if rec.frame is not None:
        frame = t.fs.frame(rec.frame)
        if frame.status == fr.BUSY:
            return Wait(rec.frame, page, "write-back in flight")
        mappers = t.users(rec.frame)
        steal = mappers if t.editor.layout.kind == "inverted" else ()
        return Minor(page, rec.frame, steal)
    chosen = choose_frame(t, port, proc, instruction_pins(t, proc, record))
    if chosen is None:
        return WaitMemory()
    pfn, victim = chosen
    return Major(page, pfn, rec.stored(), victim)


def plan_copy(t: Tables, port: Port, proc: Process, record: FaultRecord, source: int) -> FaultPlan:
    """A write the page's protection allows, to a page mapped read-only: a copy-on-write
    page (:meth:`Tables.copied_on_write`). Taken over when the writer is its last sharer;
    else copied into a frame of its own, which needs a swap slot for the copy's
    write-backs (none free: the process dies, out of memory) and a frame (none to take
    now: it waits for memory)."""
    entry = proc.mapping(record.va // t.config.page_words)
    assert entry is not None  # check_access found it
    if not entry.page.shared and last_sharer(t, entry.page):  # a file's page is never taken
        return TakeOver(entry.page)
    if not t.free_slots:
        return Signal("out of memory")
    chosen = choose_frame(t, port, proc, instruction_pins(t, proc, record))
    if chosen is None:
        return WaitMemory()
    pfn, victim = chosen
    return Copy(entry.page, source, pfn, victim)


def last_sharer(t: Tables, page: PageId) -> bool:
    """Whether one mapping alone shows ``page`` (its writer's): the others copied it or left."""
    return len(t.sharers(page)) <= 1


# -- the handler ---------------------------------------------------------------------------


def handle_fault(t: Tables, port: Port, pid: int, trap: TrapFrame) -> Signal | None:
    """Steps 2-10 for the fault the running ``pid`` just took.

    Returns the :class:`Signal` when the access is invalid or forbidden (the
    caller terminates the process: the signal's default action); otherwise
    the fault is handled and None is returned.
    """
    proc = t.process(pid)
    saved = save_registers(port)
    record = read_trap(port, trap)
    if record is None:
        raise InternalError(
            f"fault.handle_fault: decoding the instruction at {trap.pc} of "
            f"process {pid} finds no faulting access"
        )
    vpn = record.va // t.config.page_words
    detail = f"{record.kind.value} {t.config.restart} {record.access.value} va={record.va}"
    t.emit("fault", pid, vpn, detail=detail + (f" point={record.point}" if record.point else ""))
    growth = plan_growth(t, proc, record, saved)
    if isinstance(growth, Signal):
        return growth
    if growth:
        proc = grow_stack(t, proc, growth)
    if not reserve_slot(t, proc, record):
        return Signal("out of memory")
    plan = plan_fault(t, port, proc, record)
    if isinstance(plan, Signal):
        return plan
    perform_fault(t, port, proc, saved, record, plan)
    return None


def kernel_access(va: int, access: Access, context: ArchState) -> FaultRecord:
    """A system call's own ``access`` (a READ, or a WRITE) of user address ``va``, as the
    fault it would be: an access by the SYS instruction, which is one word before
    ``context``'s PC (the registers the call trapped with), with nothing to undo."""
    return FaultRecord(TrapKind.PAGE_FAULT, va, access, context.pc - 1, (), by_kernel=True)


def kernel_fault(
    t: Tables, port: Port, pid: int, record: FaultRecord, context: ArchState
) -> Signal | None:
    """A system call's own access (``record``, from :func:`kernel_access`) of a user page
    that is not resident, or, for a write, is shared copy-on-write (a fault in kernel
    mode): bring the page in, or copy it, as the process's own access would, and have the
    process run the system call again, from its SYS, once that is done (the call has done
    nothing yet). Returns the out-of-memory signal when the page is a first touch that
    finds swap full, or a copy that finds no slot."""
    start = dataclasses.replace(context, pc=record.fault_pc)
    proc = t.process(pid)
    va = record.va
    detail = f"{record.access.value} va={va}"
    t.emit("kernel_fault", pid, va // t.config.page_words, detail=detail)
    if not reserve_slot(t, proc, record):
        return Signal("out of memory")
    plan = plan_fault(t, port, proc, record)
    if isinstance(plan, Signal):  # a copy short of swap; anything else the call ruled out
        if plan.reason != "out of memory":
            raise InternalError(f"fault.kernel_fault: the call checked va {va}, yet {plan}")
        return plan
    perform_fault(t, port, proc, start, record, plan)
    return None


# -- step 4a, before validity: a stack that grows, a first touch that needs swap ---------


def plan_growth(t: Tables, proc: Process, record: FaultRecord, saved: ArchState) -> range | Signal:
    """The pages a fault on no valid page grows the stack by (empty: none, the access is
    judged as any other), or an out-of-memory signal when swap cannot back them.

    The rule is the program's (:func:`pagingcheck.model.program.stack_growth`), with the
    stack pointer the instruction will run again with: the start state after backup."""
    vpn = record.va // t.config.page_words
    if record.kind is TrapKind.PROTECTION_FAULT or proc.mapping(vpn) is not None:
        return range(0)
    stack = [entry.vpn for entry in proc.mappings if entry.kind == "stack"]
    lowest = min(stack, default=t.config.va_pages)
    sp = backup(t, saved, record).regs[STACK_POINTER]
    pages = stack_growth(
        record.va, sp, lowest, proc.stack_floor, proc.stack_reach, t.config.page_words
    )
    if len(pages) > len(t.free_slots):
        return Signal("out of memory")
    return pages


def reserve_slot(t: Tables, proc: Process, record: FaultRecord) -> bool:
    """Give the faulting page a swap slot if it is a writable private page without one
    (a page the heap grew by, touched for the first time): False when it needs one and
    swap is full (the process must die, out of memory)."""
    if check_access(t, proc, record) is not None:
        return True
    entry = proc.mapping(record.va // t.config.page_words)
    assert entry is not None  # check_access found it
    if entry.page.shared or not entry.prot & bits.WRITE or t.record(entry.page).slot is not None:
        return True
    if not t.free_slots:
        return False
    (slot,) = identity.free_slots(t.free_slots, 1)
    t.slot_op(slot, "allocate", (proc.pid, entry.vpn))
    t.set_record(entry.page, slot=slot)
    t.emit("first_touch", proc.pid, entry.vpn, detail=f"slot {slot}")
    return True


def grow_stack(t: Tables, proc: Process, pages: range) -> Process:
    """Make ``pages`` valid zero-filled stack pages of ``proc``, each with a swap slot for
    its write-backs. Their page-table entries were prepared at creation, so nothing else
    changes until the fault brings the page in (as a zero fill, without I/O)."""
    slots = identity.free_slots(t.free_slots, len(pages))
    added = []
    for vpn, slot in zip(pages, slots, strict=True):
        page = fresh_page(t, proc.pid, vpn)
        t.slot_op(slot, "allocate", (proc.pid, vpn))
        t.pages[page] = PageRecord(slot=slot)
        added.append(Mapping(vpn, "stack", GROWN_PROT, page, None, 0))
    t.emit("stack_growth", proc.pid, pages.start, detail=f"{len(pages)} pages")
    mappings = tuple(sorted((*proc.mappings, *added), key=lambda entry: entry.vpn))
    return t.update(proc, mappings=mappings)


def instruction_pins(t: Tables, proc: Process, record: FaultRecord) -> tuple[PageId, ...]:
    """The pages the faulting instruction has needed so far, this one included.

    An instruction that is already unfinished (it faulted before and is
    running again) keeps the pages it faulted in; otherwise the list starts
    afresh. Replacement avoids evicting these pages, so an instruction that
    touches several pages is not robbed of the first while the second comes in.
    A system call's own read (a fault in kernel mode) needs the page holding its
    SYS as well: the call runs again from there once its buffer is in, and losing
    that page to the buffer and the buffer to it would go round for ever.
    """
    needed = (record.fault_pc, record.va) if record.by_kernel else (record.va,)
    pinned = list(proc.pinned if proc.ticket is not None else ())
    for va in needed:
        entry = proc.mapping(va // t.config.page_words)
        if entry is not None and entry.page not in pinned:
            pinned.append(entry.page)
    return tuple(pinned)


# -- performing (cannot fail) --------------------------------------------------------------


def block(t: Tables, proc: Process, saved: ArchState, record: FaultRecord) -> Process:
    """Take the faulting process off the CPU with its registers and fault saved."""
    if t.current == proc.pid:
        t.current = None
    return t.update(proc, state="blocked", context=saved, fault=record, waiting_to_rerun=True)


def perform_fault(
    t: Tables,
    port: Port,
    proc: Process,
    saved: ArchState,
    record: FaultRecord,
    plan: FaultPlan,
) -> None:
    """Apply ``plan`` (any plan but :class:`Signal`, which termination handles)."""
    vpn = record.va // t.config.page_words
    pins = instruction_pins(t, proc, record)
    if proc.ticket is None:
        proc = take_ticket(t, proc)
    proc = t.update(proc, pinned=pins, rerunning=False)
    proc = block(t, proc, saved, record)
    if isinstance(plan, Refill):
        port.tlb_insert(proc.asid, vpn, plan.entry.pte_addr, plan.entry.pte)
        t.emit("tlb_refill", proc.pid, vpn, bits.pfn(plan.entry.pte))
        wake(t, port, proc.pid)
    elif isinstance(plan, Resume):
        wake(t, port, proc.pid)
    elif isinstance(plan, Minor):
        map_resident(t, port, plan, (proc.pid, vpn))
        t.policy.accessed(plan.pfn, t.clock, record.access.value == "write")
        t.emit("minor_fault", proc.pid, vpn, plan.pfn)
        wake(t, port, proc.pid)
    elif isinstance(plan, Wait):
        t.update(proc, wait=plan.pfn, wait_page=plan.page)
        t.emit("wait_transfer", proc.pid, vpn, plan.pfn, plan.why)
    elif isinstance(plan, WaitMemory):
        t.update(proc, waits_memory=True)
        t.emit("wait_memory", proc.pid, vpn, detail="no frame to spare")
    elif isinstance(plan, Major):
        t.update(proc, wait=plan.pfn, wait_page=plan.page)
        bring_in(t, port, plan)
    elif isinstance(plan, TakeOver):
        entry = proc.mapping(vpn)
        assert entry is not None  # check_access found it
        t.protect(port, (proc.pid, vpn), entry.prot)  # the writer's alone: every right
        t.emit("cow_takeover", proc.pid, vpn, detail=str(plan.page))
        wake(t, port, proc.pid)
    elif isinstance(plan, Copy):
        copy_on_write(t, port, proc, plan, vpn)
    else:
        raise InternalError(f"fault.perform_fault: cannot perform {plan}")
    if t.processes[proc.pid].state == "ready":
        return_to_user(t, port, proc.pid)


def return_to_user(t: Tables, port: Port, pid: int) -> None:
    """Step 10 for a fault handled without waiting: the interrupt routine reloads the
    (backed-up) registers and returns to the same process, which keeps the CPU
    until it has run the instruction again (``waiting_to_rerun`` stays set
    until then; see :meth:`ReferenceKernel.runnable`)."""
    proc = t.processes[pid]
    if proc.context is None:
        raise InternalError(f"fault.return_to_user: process {pid} has no saved registers")
    port.resume(proc.context)
    t.update(proc, state="running", context=None)
    t.current = pid


def map_resident(t: Tables, port: Port, plan: Minor, user: User) -> None:
    """Map a resident page for one more user (moving the single mapping if ``steal``)."""
    if not plan.steal:
        t.map_user(port, plan.pfn, user)
        return
    *others, moved = plan.steal
    words = [t.unmap_user(port, plan.pfn, other) for other in others]
    words.append(t.move(port, plan.pfn, moved, user))
    if any(bits.is_modified(word) for word in words):
        t.set_record(plan.page, dirty=True)


def bring_in(t: Tables, port: Port, plan: Major) -> None:
    """Steps 5-6: free the chosen frame of its victim, then start reading the page in."""
    if plan.victim is None:
        t.frame_step(port, plan.pfn, "reserve")
    else:
        evict(t, port, plan.victim)
        if plan.victim.dirty:
            start_writeback(t, port, plan.pfn, plan.victim.page, "evict", next_page=plan.page)
            t.set_record(plan.page, incoming=plan.pfn)
            return
    start_pagein(t, port, plan.pfn, plan.page)


def copy_on_write(t: Tables, port: Port, proc: Process, plan: Copy, vpn: int) -> None:
    """Break the sharing of a copy-on-write page for its writer: copy it into a frame of
    its own (a new page with a swap slot of its own, dirty: its only copy is that frame),
    drop the writer's mapping of the shared frame, map the copy writable and resume.

    A dirty victim must be written back before its frame can take the copy: the write
    starts (the frame is freed when it ends) and the writer waits for memory, to fault
    again and find a frame then."""
    if plan.victim is None:
        t.frame_step(port, plan.pfn, "reserve")
    else:
        evict(t, port, plan.victim)
        if plan.victim.dirty:
            start_writeback(t, port, plan.pfn, plan.victim.page, "evict")
            t.update(proc, waits_memory=True)
            t.emit("wait_memory", proc.pid, vpn, detail="copy-on-write: a victim is written")
            return
    words = t.config.page_words
    for offset in range(words):
        port.write(plan.pfn * words + offset, port.read(plan.source * words + offset))
    user = (proc.pid, vpn)
    drop_mapping(t, port, plan.source, user, plan.page, True)
    shared_slot = t.record(plan.page).slot
    if shared_slot is not None:
        t.drop_slot_user(shared_slot, user)
    copy = fresh_page(t, proc.pid, vpn)
    (slot,) = identity.free_slots(t.free_slots, 1)
    t.slot_op(slot, "allocate", user)
    t.pages[copy] = PageRecord(slot=slot, dirty=True)
    own = {"page": copy, "shared_key": None, "index": 0}  # no longer the file's page, if it was
    mappings = tuple(
        dataclasses.replace(m, **own) if m.vpn == vpn else m  # type: ignore[arg-type]
        for m in proc.mappings
    )
    t.update(t.processes[proc.pid], mappings=mappings)
    install_page(t, port, plan.pfn, copy, (user,))
    t.emit("cow_copy", proc.pid, vpn, plan.pfn, detail=f"{plan.page} from frame {plan.source}")
    wake(t, port, proc.pid)


def fresh_page(t: Tables, pid: int, vpn: int) -> PageId:
    """A name for a new private page of ``pid`` at ``vpn`` that no page has now: the usual
    one, unless a page of that name lives on (a fork's sharers still use it, or it is the
    page of the image an EXEC is replacing)."""
    page = PageId.private(pid, vpn)
    suffix = 0
    while page in t.pages:
        suffix += 1
        page = PageId(f"pid:{pid}.{suffix}", vpn)
    return page


def drop_mapping(t: Tables, port: Port, pfn: int, user: User, page: PageId, survives: bool) -> None:
    """Remove one process's mapping of ``pfn`` (at exit, when a heap shrinks, when a
    copy-on-write page is copied).

    The frame's reference count decides: while other mappings count, they
    keep the frame (its M bit is carried in the page record). At the last
    mapping: a page that outlives the mapping (``survives``: a shared page
    with other users, or a page a fork shares) and is dirty is written back
    with the frame busy; any other page's frame is freed at once.
    """
    if len(t.users(pfn)) > 1:
        if bits.is_modified(t.unmap_user(port, pfn, user)):
            t.set_record(page, dirty=True)
        return
    dirty = bits.is_modified(t.pte_of(port, user)) or t.record(page).dirty
    t.policy.removed(pfn)
    if survives and dirty:
        t.unmap_user(port, pfn, user, "evict_user")
        start_writeback(t, port, pfn, page, "clean")
        return
    t.unmap_user(port, pfn, user, "release")
    t.set_record(page, frame=None, dirty=False)
    t.emit("free_frame", user[0], user[1], pfn)


def evict(t: Tables, port: Port, victim: Victim) -> None:
    """Step 5: unmap the victim from every address space (PTE + TLB) and mark the frame busy.

    A clean victim's contents are already in its slot, image block or zero,
    so its record forgets the frame; a dirty one keeps it until written back.
    """
    for user in victim.users:
        t.unmap_user(port, victim.pfn, user, "evict_user")
    t.policy.removed(victim.pfn)
    if victim.dirty:
        t.emit(
            "evict_dirty",
            victim.users[0][0] if victim.users else None,
            pfn=victim.pfn,
            detail=str(victim.page),
        )
    else:
        t.set_record(victim.page, frame=None)
        t.emit(
            "evict_clean",
            victim.users[0][0] if victim.users else None,
            pfn=victim.pfn,
            detail=str(victim.page),
        )


def start_writeback(
    t: Tables,
    port: Port,
    pfn: int,
    page: PageId,
    purpose: str,
    next_page: PageId | None = None,
    parked: tuple[User, ...] = (),
) -> None:
    """Step 5: write the (busy) frame's page to its swap slot, or a file's page to its
    block in the file."""
    rec = t.record(page)
    block = rec.image if rec.file else rec.slot
    if block is None:
        raise InternalError(f"fault.start_writeback: dirty page {page} has no swap slot")
    if not rec.file:
        t.slot_op(block, "start_write")
    t.frame_step(port, pfn, "start_writeback")
    request = port.submit("write", block, pfn)
    t.transfers[pfn] = Transfer(request, "write", block, purpose, page, next_page, parked)  # type: ignore[arg-type]
    t.set_record(page, frame=pfn, dirty=False)
    where = f"file block {block}" if rec.file else f"slot {block}"
    t.emit("writeback", pfn=pfn, detail=f"{purpose} {page} {where}")


def start_pagein(
    t: Tables, port: Port, pfn: int, page: PageId, parked: tuple[User, ...] = ()
) -> None:
    """Step 6: the frame is clean: read ``page`` in from its slot or image block.

    A page whose contents are all zeros is filled at once, mapped for the
    processes that want it, and those are woken.
    """
    source = t.record(page).stored()
    t.frame_page[pfn] = page
    if source.where == "zero":
        port.fill(pfn, 0)
        t.set_record(page, incoming=None)
        finish_pagein(t, port, pfn, page, parked, detail="zero fill")
        return
    block = source.index
    if source.where == "slot":
        t.slot_op(block, "start_read")
    t.frame_step(port, pfn, "start_pagein")
    request = port.submit("read", block, pfn)
    t.transfers[pfn] = Transfer(request, "read", block, "pagein", page, None, parked)
    t.set_record(page, incoming=pfn)


# -- step 7: the disk interrupt -----------------------------------------------------------------


def complete_transfer(t: Tables, port: Port, request: Request) -> None:
    """Step 7: the transfer on ``request.pfn`` ended (its DMA is done): carry on with it."""
    t.memory_changed = True
    pfn = request.pfn
    xfer = t.transfers.pop(pfn, None)
    if xfer is None or (xfer.id, xfer.op, xfer.block) != (request.id, request.op, request.block):
        raise InternalError(
            f"fault.complete_transfer: no transfer {request} recorded on frame {pfn} ({xfer})"
        )
    if request.block < t.config.swap_slots:
        slot = t.slot_op(request.block, "finish_transfer")
        if not slot.allocated:
            t.emit("free_slot", detail=f"slot {request.block}")
    frame = t.frame_step(port, pfn, "finish_transfer")
    freed = frame.status == fr.FREE
    if freed:
        t.emit("free_frame", pfn=pfn, detail="orphaned transfer ended")
    if xfer.purpose == "pagein":
        settle_record(t, xfer.page, pfn, incoming=None)
        if not freed:
            finish_pagein(t, port, pfn, xfer.page, xfer.parked)
        wake_waiters(t, port, pfn)
    elif xfer.purpose == "evict":
        settle_record(t, xfer.page, pfn, frame=None, written=True)
        wake_waiters(t, port, pfn, keep=xfer.next_page)
        if xfer.next_page is not None:  # None: written to free the frame (copy-on-write)
            settle_record(t, xfer.next_page, pfn, incoming=None)
            if not freed:
                start_pagein(t, port, pfn, xfer.next_page)
    else:
        settle_record(t, xfer.page, pfn, frame=None, written=True)
        if not freed:
            t.frame_page[pfn] = xfer.page
            finish_pagein(t, port, pfn, xfer.page, xfer.parked, detail="cleaned")
        wake_waiters(t, port, pfn)


def settle_record(t: Tables, page: PageId, pfn: int, **changes: object) -> None:
    """Record what a transfer on ``pfn`` did to ``page``, if the page still refers to that
    frame. A shared object whose last user left while its transfer was in flight may have
    been created anew since, with the same page names: the old transfer must not touch
    the new pages' records (it would make a second sharer read the page again)."""
    rec = t.pages.get(page)
    if rec is not None and pfn in (rec.frame, rec.incoming):
        t.set_record(page, **changes)


def wanting(t: Tables, pfn: int, page: PageId, parked: tuple[User, ...]) -> list[User]:
    """Live users that want ``page`` mapped once ``pfn`` holds it: the processes waiting
    for it on ``pfn``, then the ``parked`` mappings still alive and still showing it."""
    users: list[User] = []
    for proc in t.live():
        if proc.wait == pfn and proc.wait_page == page and proc.fault is not None:
            users.append((proc.pid, proc.fault.va // t.config.page_words))
    for pid, vpn in parked:
        owner = t.processes.get(pid)
        if owner is None or owner.state == "exited":
            continue
        entry = owner.mapping(vpn)
        if entry is not None and entry.page == page and (pid, vpn) not in users:
            users.append((pid, vpn))
    return users


def finish_pagein(
    t: Tables,
    port: Port,
    pfn: int,
    page: PageId,
    parked: tuple[User, ...],
    detail: str = "",
) -> None:
    """Step 7: ``pfn`` holds ``page``: map it for those who want it; frame back in use."""
    users = wanting(t, pfn, page, parked)
    if not users:
        raise InternalError(f"fault.finish_pagein: nobody wants {page} in frame {pfn}")
    if t.editor.layout.kind == "inverted":
        users = users[:1]  # one mapping per frame; the others fault again and move it
    install_page(t, port, pfn, page, tuple(users))
    t.emit("pagein", users[0][0], users[0][1], pfn, detail or str(page))
    wake_waiters(t, port, pfn)


def install_page(t: Tables, port: Port, pfn: int, page: PageId, users: tuple[User, ...]) -> None:
    """Map ``page`` in ``pfn`` for ``users`` (R and M clear) and put the frame in use."""
    for number, user in enumerate(users):
        t.map_user(port, pfn, user, first=number == 0)
    t.frame_page[pfn] = page
    t.set_record(page, frame=pfn, incoming=None)
    t.policy.loaded(pfn, page, t.clock)


# -- steps 8 and 9: back up, make ready ------------------------------------------------------


def backup(t: Tables, context: ArchState, record: FaultRecord) -> ArchState:
    """Step 8: the faulting instruction's start state.

    Precise hardware has already restored it. Otherwise undo the side
    effects recorded (state register) or decoded, and point the PC back at
    the instruction.
    """
    if t.config.restart == "precise":
        return context
    return restart.back_up(context, record.fault_pc, record.undo)


def wake(t: Tables, port: Port, pid: int) -> None:
    """Steps 8-9: back the faulting instruction up and make the process ready."""
    proc = t.processes[pid]
    context = proc.context
    if proc.fault is not None and context is not None:
        context = backup(t, context, proc.fault)
        t.emit("backup", pid, detail=f"pc={context.pc}")
    t.update(
        proc,
        state="ready",
        context=context,
        fault=None,
        wait=None,
        wait_page=None,
        waits_memory=False,
    )
    t.emit("ready", pid)


def wake_waiters(t: Tables, port: Port, pfn: int, keep: PageId | None = None) -> None:
    """Wake every live process waiting on ``pfn``'s transfer, except those waiting for ``keep``.

    A woken process whose page is mapped by now resumes; any other faults
    again and finds its page wherever it is now.
    """
    for proc in t.live():
        if (
            proc.state == "blocked"
            and proc.wait == pfn
            and (keep is None or proc.wait_page != keep)
        ):
            wake(t, port, proc.pid)


def wake_memory_waiters(t: Tables, port: Port) -> None:
    """Wake every process waiting for memory, if a frame may have become takeable
    since they went to sleep (they fault again and decide afresh)."""
    if not t.memory_changed:
        return
    t.memory_changed = False
    for proc in t.live():
        if proc.state == "blocked" and proc.waits_memory:
            wake(t, port, proc.pid)


# -- clean and dirty lists, the cleaner -----------------------------------------------------


def frame_lists(t: Tables, port: Port) -> tuple[list[int], list[int]]:
    """The clean and the dirty list: in-use frames whose page matches its stored copy,
    and those whose page must be written before the frame can be reused.

    Derived from the M bits each time rather than kept, so the lists can
    never disagree with the hardware.
    """
    clean: list[int] = []
    dirty: list[int] = []
    for pfn, frame in sorted(t.frames.items()):
        if frame.status == fr.IN_USE:
            (dirty if t.frame_dirty(port, pfn) else clean).append(pfn)
    return clean, dirty


def clean_ahead(t: Tables, port: Port) -> None:
    """The cleaner: write the first frame of the dirty list back ahead of need.

    The page is unmapped everywhere and its frame is busy while the write is
    in flight, so nobody can change the page meanwhile (a process touching
    it waits for the write). When the write ends the page is mapped again,
    clean, for the same users: a later fault can then take the frame
    without writing it.
    """
    _, dirty = frame_lists(t, port)
    if not dirty:
        return
    pfn = dirty[0]
    page = t.frame_page[pfn]
    users = t.users(pfn)
    for user in users:
        t.unmap_user(port, pfn, user, "evict_user")
    t.policy.removed(pfn)
    t.emit("clean", users[0][0] if users else None, pfn=pfn, detail=str(page))
    start_writeback(t, port, pfn, page, "clean", parked=users)


# -- orphans ---------------------------------------------------------------------------------


def transfer_needed(t: Tables, pfn: int, xfer: Transfer) -> bool:
    """Whether anyone still wants the frame after its transfer ends."""
    wanted = xfer.next_page if xfer.purpose == "evict" else xfer.page
    if wanted is None:
        return False
    parked = xfer.parked if xfer.purpose != "evict" else ()
    return bool(wanting(t, pfn, wanted, parked))


def settle_transfers(t: Tables, port: Port) -> None:
    """Orphan each transfer nobody waits for any more (its frame is freed when it ends),
    and adopt an orphaned one a process waits for again."""
    for pfn, xfer in sorted(t.transfers.items()):
        needed = transfer_needed(t, pfn, xfer)
        orphaned = bool(t.fs.frame(pfn).orphan)
        if not needed and not orphaned:
            t.frame_step(port, pfn, "orphan")
        elif needed and orphaned:
            t.frame_step(port, pfn, "adopt")
