"""The kernel's tables: process table, page records, frame table, swap slots, transfers.

Everything the reference kernel knows is in one :class:`Tables` value built
from dicts of frozen records, so copying is a few dict copies and the
fingerprint is stable. Frames, the free list, reference counts and the
reverse map are one :class:`~pagingcheck.impl.lib.framestate.FrameState`,
changed only by its transitions (:meth:`Tables.frame_step`), the same
functions z3 proves things about (:mod:`pagingcheck.checks.proofs`); each
mapping change pairs its PTE edit (through :mod:`pagingcheck.impl.lib.vm`)
with the transition that records it. Swap slots, their free list and the
pages whose home each is are one :class:`~pagingcheck.impl.lib.slotstate.SlotState`,
changed only by its transitions (:meth:`Tables.slot_op`), proved the same way.

Words used throughout:

page     one page of contents, named by a :class:`PageId`: a private page
         ``("pid:<pid>", vpn)`` or page ``index`` of a shared object
         (``"text:<program>"``, ``"segment:<name>"``)
mapping  one valid vpn of one process (:class:`Mapping`), naming its page
record   where a page's contents are (:class:`PageRecord`)
frame    a user frame (pfn); its protocol state, the page it holds, the
         reverse map of (pid, vpn) PTEs mapping it
slot     a swap slot (= its disk block number)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal, TypeVar

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import KernelEvent, Location, ProcessState
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib import framestate, identity, slotstate, vm
from pagingcheck.impl.lib import swap as sw
from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.logic import concrete
from pagingcheck.impl.lib.memory import FREED_PATTERN
from pagingcheck.impl.lib.pagetable import TableEditor, make_editor
from pagingcheck.impl.lib.replacement import Policy, abstract_snapshot, make_policy
from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.isa import ArchState
from pagingcheck.model.port import Port
from pagingcheck.model.program import PageKind
from pagingcheck.model.traps import Access, TrapKind

User = tuple[int, int]  # (pid, vpn)

#: Replacement policies whose decisions depend on the value of ``now``.
TIMED_POLICIES = frozenset({"lru", "working-set", "wsclock"})


@dataclass(frozen=True, order=True)
class PageId:
    """A page of contents: ``owner`` is ``"pid:<pid>"`` (then ``index`` is the vpn) or a
    shared object key (then ``index`` is the page's position in the object)."""

    owner: str
    index: int

    @staticmethod
    def private(pid: int, vpn: int) -> PageId:
        """The private page ``vpn`` of process ``pid``."""
        return PageId(f"pid:{pid}", vpn)

    @property
    def shared(self) -> bool:
        """Whether the page belongs to a shared object."""
        return not self.owner.startswith("pid:")


@dataclass(frozen=True)
class PageRecord:
    """Where one page's contents are.

    ``frame`` holds them when the page is resident, or while its frame is
    being written out (then the frame still holds the only current copy);
    ``incoming`` is the frame a page-in is filling. Otherwise the contents
    are in swap ``slot`` once a write-back has filled it (``written``), else
    in the program-image block ``image`` they started from, else all zeros.
    ``dirty`` keeps the M bits of mappings removed while others still map
    the page. A page of a file (``file``) has no slot: ``image`` is its own
    block, where its contents are read from and written back to.
    """

    slot: int | None = None
    image: int | None = None
    written: bool = False
    frame: int | None = None
    incoming: int | None = None
    dirty: bool = False
    file: bool = False

    def stored(self) -> Location:
        """Where the page's contents are when no frame holds them (blocks are disk blocks)."""
        if self.file and self.image is not None:
            return Location("image", self.image)
        if self.written:
            if self.slot is None:
                raise InternalError(f"PageRecord.stored: written page has no swap slot: {self}")
            return Location("slot", self.slot)
        if self.image is not None:
            return Location("image", self.image)
        return Location("zero")

    def home(self) -> Location:
        """Where the page's current contents are (the view's ``PageView.home``)."""
        return Location("frame", self.frame) if self.frame is not None else self.stored()


@dataclass(frozen=True)
class Mapping:
    """One valid vpn of a process: its protection, kind and the page it shows."""

    vpn: int
    kind: PageKind
    prot: int
    page: PageId
    shared_key: str | None
    index: int


@dataclass(frozen=True)
class FaultRecord:
    """A fault being handled: what the hardware registers said, and how to back up.

    ``undo`` is the list of register side effects (register, amount added) the
    faulting instruction made before it faulted, as found from the state
    register or by decoding; ``fault_pc`` is the instruction's address.
    """

    kind: TrapKind
    va: int
    access: Access
    fault_pc: int
    undo: tuple[tuple[int, int], ...]
    point: str = ""  # the fault point (isa.FAULT_POINTS) when the kernel knows it
    by_kernel: bool = False  # a system call's own read of user memory (kernel mode)


@dataclass(frozen=True)
class Process:
    """One process-table entry."""

    pid: int
    asid: int
    program: str
    root: int
    mappings: tuple[Mapping, ...]
    state: ProcessState
    context: ArchState | None
    fault: FaultRecord | None = None
    wait: int | None = None  # the frame whose transfer the process waits for
    wait_page: PageId | None = None  # the page it waits to see in that frame
    waits_memory: bool = False  # blocked until a frame may be taken for it
    started: bool = False  # dispatched at least once (prepaging happens on the first)
    attached: tuple[str, ...] = ()  # shared object keys
    image: int = 0  # the first disk block of the program's image
    # The unfinished instruction: from its first fault until it retires.
    ticket: int | None = None  # fault order (who is served first); None: none unfinished
    pinned: tuple[PageId, ...] = ()  # the pages it has faulted in so far
    waiting_to_rerun: bool = False  # a fault was handled; it has not run again yet
    rerunning: bool = False  # it is running that instruction again now
    # The stack's growth rule (model.program.stack_growth): its lowest possible page and
    # how far below the stack pointer an access may be.
    stack_floor: int = 0
    stack_reach: int = 0
    # The heap's room (model.program.heap_break): its first page and most pages.
    heap_start: int = 0
    heap_limit: int = 0
    # The pages MMAP may map (model.program.Program.map_area).
    map_area: tuple[int, ...] = ()
    # The family: who forked it, whether it sleeps in a WAIT, and once exited its status
    # and whether its parent has waited for it.
    parent: int | None = None
    waits_child: bool = False
    status: int | None = None
    reaped: bool = False

    def mapping(self, vpn: int) -> Mapping | None:
        """The mapping of ``vpn``, or None when the page is not valid."""
        for entry in self.mappings:
            if entry.vpn == vpn:
                return entry
        return None

    @property
    def space(self) -> vm.Space:
        """The address space (table root, asid) for the page-table helpers."""
        return vm.Space(self.root, self.asid)


@dataclass(frozen=True)
class SharedObject:
    """A shared object (program text or named segment): its users and its size."""

    key: str
    users: tuple[int, ...]
    pages: int


Purpose = Literal["pagein", "evict", "clean"]


@dataclass(frozen=True)
class Transfer:
    """The disk request in flight on a frame, and why.

    * ``pagein``: ``page`` is being read into the frame; afterwards it is mapped
      for the processes waiting on it and for ``parked`` (prepaging);
    * ``evict``: victim ``page`` is being written to its slot; afterwards the
      frame receives ``next_page`` for the process(es) waiting on it;
    * ``clean``: ``page`` is being written back ahead of need; afterwards it
      is mapped again for ``parked`` (the mappings removed to clean it).
    """

    id: int
    op: Literal["read", "write"]
    block: int
    purpose: Purpose
    page: PageId
    next_page: PageId | None = None
    parked: tuple[User, ...] = ()


R = TypeVar("R")

#: The fields of each record class :func:`evolve` may build directly; () for a class it
#: leaves to ``dataclasses.replace``.
_PLAIN_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain_fields(kind: type) -> tuple[str, ...]:
    """``kind``'s fields if its instances are exactly their fields' values (a frozen
    dataclass whose ``__init__`` only stores each field), else ()."""
    declared = getattr(kind, "__dataclass_fields__", {})
    listed = fields(kind) if declared else ()
    plain = (
        len(listed) == len(declared)  # no class or init-only pseudo-fields
        and all(f.init for f in listed)
        and not hasattr(kind, "__post_init__")
        and "__slots__" not in vars(kind)
        and kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
    )
    return tuple(f.name for f in listed) if plain else ()


def evolve(record: R, changes: dict[str, object]) -> R:
    """``dataclasses.replace(record, **changes)``, built directly for the kernel's plain
    records (a process-table entry, a page record): the kernel replaces records several
    times in every call, and ``replace`` checks and calls far more than such a record
    needs. What is built is what ``replace`` builds: the fields, in order, and nothing
    else the old record kept (a fingerprint's saved encoding stays behind)."""
    kind = type(record)
    names = _PLAIN_FIELDS.get(kind)
    if names is None:
        names = _PLAIN_FIELDS[kind] = _plain_fields(kind)
    if not names or not changes.keys() <= set(names):
        return replace(record, **changes)  # type: ignore[type-var]
    old = record.__dict__
    new = object.__new__(kind)
    new.__dict__.update({n: changes[n] if n in changes else old[n] for n in names})
    return new


@dataclass
class Tables:
    """All state of the reference kernel."""

    config: HardwareConfig
    kconfig: KernelConfig
    kalloc: KernelAllocator
    policy: Policy
    editor: TableEditor
    guarded: bool = True  # refuse a protocol operation whose guard fails
    system_root: int = 0
    booted: bool = False
    processes: dict[int, Process] = field(default_factory=dict)
    next_pid: int = 1
    current: int | None = None
    fs: framestate.FrameState = field(default_factory=lambda: framestate.empty(range(0)))
    frame_page: dict[int, PageId] = field(default_factory=dict)
    ss: slotstate.SlotState = field(default_factory=lambda: slotstate.empty(range(0)))
    pages: dict[PageId, PageRecord] = field(default_factory=dict)
    objects: dict[str, SharedObject] = field(default_factory=dict)
    loaded: tuple[int, int] | None = None  # the (root, asid) last loaded into the MMU
    memory_changed: bool = False  # a frame may be takeable now: wake memory waiters
    transfers: dict[int, Transfer] = field(default_factory=dict)
    clock: int = 0  # the kernel's time, kept only for policies that read it
    events: list[KernelEvent] = field(default_factory=list)

    @classmethod
    def fresh(cls, config: HardwareConfig, kconfig: KernelConfig) -> Tables:
        """Tables before boot: every frame and slot free."""
        tables = cls(
            config,
            kconfig,
            KernelAllocator(config),
            make_policy(kconfig.policy, seed=kconfig.seed, tau=kconfig.tau),
            make_editor(config),
        )
        tables.fs = framestate.empty(config.user_pfns)
        tables.ss = slotstate.empty(range(config.swap_slots))
        return tables

    def copy(self) -> Tables:
        """An independent copy (records are frozen, so dict copies suffice)."""
        return replace(
            self,
            kalloc=self.kalloc.copy(),
            policy=self.policy.copy(),
            processes=dict(self.processes),
            frame_page=dict(self.frame_page),
            pages=dict(self.pages),
            objects=dict(self.objects),
            transfers=dict(self.transfers),
            events=[],
        )

    def snapshot(self) -> tuple[object, ...]:
        """Every field that decides future behaviour, as a fingerprintable value.

        Reference counts are taken without their ghost positions (which user is
        counted at which index of a holding): they exist for the proofs, and no
        decision reads them (the kernel visits a frame's users in sorted order),
        so two states that differ only there behave alike. Each state the
        explorer reaches is still checked whole, positions included.
        """
        return (
            self.kalloc.free_extents,
            abstract_snapshot(self.policy, self.clock),
            self.system_root,
            self.booted,
            self.processes,
            self.next_pid,
            self.current,
            self.fs.behaviour_digest,
            self.frame_page,
            self.ss.behaviour_digest,
            self.pages,
            self.objects,
            self.loaded,
            self.transfers,
        )

    def advance_clock(self) -> None:
        """One unit of kernel time passes (a trap or a timer tick).

        Only policies that compare times (:data:`TIMED_POLICIES`) are given a
        running clock; for the others time stays 0, so two states that differ
        only in how long ago they started are the same state.
        """
        if self.policy.name in TIMED_POLICIES:
            self.clock += 1

    # -- events ------------------------------------------------------------------------

    def emit(
        self,
        kind: str,
        pid: int | None = None,
        vpn: int | None = None,
        pfn: int | None = None,
        detail: str = "",
    ) -> None:
        """Record an observable event of the hook being run."""
        self.events.append(KernelEvent(kind, pid, vpn, pfn, detail))

    def take_events(self) -> tuple[KernelEvent, ...]:
        """The events recorded since the last call, and forget them."""
        events = tuple(self.events)
        self.events.clear()
        return events

    # -- processes ---------------------------------------------------------------------

    def process(self, pid: int) -> Process:
        """The live entry of ``pid``; InternalError if there is none."""
        proc = self.processes.get(pid)
        if proc is None or proc.state == "exited":
            raise InternalError(f"Tables.process: no live process {pid}")
        return proc

    def update(self, proc: Process, **changes: object) -> Process:
        """Replace ``proc``'s entry with ``changes`` applied; return the new entry."""
        new = evolve(proc, changes)
        self.processes[proc.pid] = new
        return new

    def live(self) -> list[Process]:
        """Live processes in pid order."""
        return [p for _, p in sorted(self.processes.items()) if p.state != "exited"]

    # -- the frame and slot protocols --------------------------------------------------

    @property
    def frames(self) -> dict[int, fr.Frame]:
        """Each user frame's protocol record, by frame number."""
        return {pfn: self.fs.frame(pfn) for pfn in sorted(self.fs.status)}

    @property
    def free_frames(self) -> tuple[int, ...]:
        """The free list, in frame order."""
        return self.fs.free_frames()

    def users(self, pfn: int) -> tuple[User, ...]:
        """The (pid, vpn) mappings of ``pfn``, in order (its reverse map)."""
        return tuple(sorted(self.fs.users(pfn)))

    def frame_step(self, port: Port, pfn: int, name: str, *args: User) -> fr.Frame:
        """Apply transition ``name`` of :mod:`~pagingcheck.impl.lib.framestate` to frame
        ``pfn`` (and the users ``args``); return the frame's new record.

        A frame that becomes free is filled with ``FREED_PATTERN`` so a use
        after free shows in the data. Raises InternalError naming the
        transition, the frame and its state when the guard does not hold
        (unless ``guarded`` is off, as it is for the seeded-bug kernels: a
        kernel written without such checks).
        """
        op, _ = framestate.TRANSITIONS[name]
        old = self.fs.frame(pfn)
        guard, after = op(self.fs, pfn, *args)
        if self.guarded and not concrete(guard):
            raise InternalError(
                f"framestate.{name}{args}: not allowed on frame {pfn} in state {old}"
            )
        self.fs = after
        new = after.frame(pfn)
        if old.status != fr.FREE and new.status == fr.FREE:
            self.frame_page.pop(pfn, None)
            self.transfers.pop(pfn, None)
            self.memory_changed = True
            port.fill(pfn, FREED_PATTERN)
        return new

    def take_free_frame(self) -> int:
        """The free frame to take next (the free list is not empty)."""
        return identity.free_frame(self.free_frames)

    def taken_slots(self) -> list[tuple[int, sw.Slot]]:
        """The allocated slots and their records, in slot order (what a view lists)."""
        ss = self.ss
        return [
            (slot, sw.Slot(True, ss.refcount[slot], ss.transfer[slot], ss.orphan[slot]))
            for slot, taken in sorted(ss.allocated.items())
            if taken
        ]

    @property
    def free_slots(self) -> tuple[int, ...]:
        """The free swap slots, in slot order."""
        return self.ss.free_slots()

    def slot_op(self, slot: int, name: str, *args: User) -> sw.Slot:
        """Apply transition ``name`` of :mod:`~pagingcheck.impl.lib.slotstate` to swap slot
        ``slot`` (and the users ``args``); return the slot's new record.

        Raises InternalError naming the transition, the slot and its state when
        the guard does not hold (unless ``guarded`` is off, as for the seeded bugs).
        """
        op, _ = slotstate.TRANSITIONS[name]
        guard, after = op(self.ss, slot, *args)
        if self.guarded and not concrete(guard):
            raise InternalError(
                f"slotstate.{name}{args}: not allowed on slot {slot} in state {self.ss.slot(slot)}"
            )
        self.ss = after
        return after.slot(slot)

    def drop_slot_user(self, slot: int, user: User) -> None:
        """``user``'s page stops using ``slot``: drop, release at the last user, or orphan
        it mid-transfer."""
        state = self.ss.slot(slot)
        if state.refcount >= 2:
            self.slot_op(slot, "drop_user", user)
        elif state.transfer != sw.NONE:
            self.slot_op(slot, "orphan", user)
        else:
            self.slot_op(slot, "release", user)
            self.emit("free_slot", detail=f"slot {slot}")

    # -- page records ------------------------------------------------------------------

    def record(self, page: PageId) -> PageRecord:
        """The record of ``page``; InternalError if it does not exist."""
        rec = self.pages.get(page)
        if rec is None:
            raise InternalError(f"Tables.record: no page {page}")
        return rec

    def set_record(self, page: PageId, **changes: object) -> PageRecord:
        """Change fields of ``page``'s record."""
        new = evolve(self.record(page), changes)
        self.pages[page] = new
        return new

    # -- mappings (PTE edits go through vm, which does the TLB duty) -----------------------

    def map_user(self, port: Port, pfn: int, user: User, first: bool = False) -> None:
        """Map ``user`` present to ``pfn``: the PTE, and the transition that counts it
        (``install`` for a busy frame's first user, else ``map_user``)."""
        self._map_pte(port, pfn, user)
        self.frame_step(port, pfn, "install" if first else "map_user", user)

    def move(self, port: Port, pfn: int, old: User, new: User) -> int:
        """The single mapping of ``pfn`` passes from ``old`` to ``new``; returns the PTE
        word ``old`` had (for its R and M bits)."""
        word = self._unmap_pte(port, pfn, old)
        self._map_pte(port, pfn, new)
        self.frame_step(port, pfn, "move", old, new)
        return word

    def unmap_user(self, port: Port, pfn: int, user: User, how: str = "unmap_user") -> int:
        """Make ``user``'s PTE not present and record it with transition ``how``:
        ``unmap_user`` (others keep the frame), ``evict_user`` (the frame becomes the
        kernel's when the last goes) or ``release`` (the last goes; the frame is free).
        Returns the PTE word it replaced (for the R and M bits)."""
        word = self._unmap_pte(port, pfn, user)
        self.frame_step(port, pfn, how, user)
        return word

    def _map_pte(self, port: Port, pfn: int, user: User) -> None:
        pid, vpn = user
        proc = self.process(pid)
        entry = proc.mapping(vpn)
        if entry is None:
            raise InternalError(f"Tables.map_user: vpn {vpn} of {pid} is not valid")
        prot, copied = self.pte_rights(entry)
        vm.map_page(port, self.editor, self.kalloc, proc.space, vpn, pfn, prot, copied)

    # -- copy-on-write -----------------------------------------------------------------

    def sharers(self, page: PageId) -> list[User]:
        """The live mappings that show ``page``, in (pid, vpn) order."""
        return [
            (proc.pid, entry.vpn)
            for proc in self.live()
            for entry in proc.mappings
            if entry.page == page
        ]

    def copied_on_write(self, entry: Mapping) -> bool:
        """Whether ``entry`` is a writable private page that a fork left shared, or a private
        mapping's page still the file's: its PTE must not grant write until the page is
        copied (or, after a fork, taken over at the last sharer)."""
        if not entry.prot & bits.WRITE:
            return False
        if entry.page.shared:  # a private mapping's file page, until the first write copies it
            return entry.kind == "private_file"
        return len(self.sharers(entry.page)) > 1

    def pte_rights(self, entry: Mapping) -> tuple[int, bool]:
        """The rights ``entry``'s PTE grants (its protection, less write while the page is
        shared copy-on-write), and whether it is: the sharers are looked up once."""
        copied = self.copied_on_write(entry)
        return (entry.prot & ~bits.WRITE if copied else entry.prot), copied

    def protect(self, port: Port, user: User, prot: int) -> None:
        """Give ``user``'s present PTE the rights ``prot`` (its frame, R and M kept); the
        edit invalidates the TLB entry. The edit says whether the page is shared
        copy-on-write, which the proofs hold it to (no write granted then)."""
        pid, vpn = user
        proc = self.process(pid)
        entry = proc.mapping(vpn)
        copied = entry is not None and self.copied_on_write(entry)
        vm.protect(port, self.editor, self.kalloc, proc.space, vpn, prot, copied)

    def _unmap_pte(self, port: Port, pfn: int, user: User) -> int:
        pid, vpn = user
        proc = self.processes[pid]
        entry = proc.mapping(vpn)
        if entry is None or (self.guarded and self.fs.maps(user) != pfn):
            raise InternalError(f"Tables.unmap_user: {user} does not map frame {pfn}")
        old = vm.unmap(port, self.editor, self.kalloc, proc.space, vpn, entry.prot)
        if self.guarded and (not bits.is_present(old) or bits.pfn(old) != pfn):
            raise InternalError(
                f"Tables.unmap_user: PTE of vpn {vpn} (pid {pid}) is {old:#010x}, not frame {pfn}"
            )
        return old

    def pte_of(self, port: Port, user: User) -> int:
        """The PTE word of ``user``'s mapping."""
        pid, vpn = user
        return vm.pte(port, self.editor, self.processes[pid].space, vpn)

    def user_ptes(self, port: Port, pfn: int) -> list[tuple[User, int]]:
        """Each user of ``pfn`` with its current PTE word."""
        result = []
        for user in self.users(pfn):
            result.append((user, self.pte_of(port, user)))
        return result

    def frame_dirty(self, port: Port, pfn: int) -> bool:
        """Whether the page in ``pfn`` differs from its stored copy: the M bit of any
        PTE mapping it, or an M bit carried in the page record from a mapping that went."""
        page = self.frame_page.get(pfn)
        carried = page is not None and self.record(page).dirty
        return carried or any(bits.is_modified(word) for _, word in self.user_ptes(port, pfn))

    def frame_referenced(self, port: Port, pfn: int) -> bool:
        """Whether any user's R bit is set for ``pfn``."""
        return any(bits.is_referenced(word) for _, word in self.user_ptes(port, pfn))

    def bits(self, port: Port) -> KernelBits:
        """The R/M bits the replacement policy reads, through ``port``."""
        return KernelBits(self, port)

    def clear_frame_referenced(self, port: Port, pfn: int) -> None:
        """Clear R in every PTE mapping ``pfn`` (each edit invalidates its TLB entry)."""
        for (pid, vpn), _ in self.user_ptes(port, pfn):
            space = self.processes[pid].space
            vm.clear_referenced(port, self.editor, self.kalloc, space, vpn)


class KernelBits:
    """The :class:`~pagingcheck.impl.lib.replacement.RefBits` the policy reads: a frame's
    R and M are the OR over every PTE mapping it; clearing R goes through vm."""

    def __init__(self, tables: Tables, port: Port) -> None:
        self.tables = tables
        self.port = port

    def referenced(self, frame: int) -> bool:
        """R of any PTE mapping ``frame``."""
        return self.tables.frame_referenced(self.port, frame)

    def modified(self, frame: int) -> bool:
        """Whether the page in ``frame`` is dirty."""
        return self.tables.frame_dirty(self.port, frame)

    def clear_referenced(self, frame: int) -> None:
        """Clear R of every PTE mapping ``frame``, invalidating the TLB entries."""
        self.tables.clear_frame_referenced(self.port, frame)
