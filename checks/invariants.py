"""The invariant catalog: each invariant a named predicate, its English statement the docstring.

A predicate takes an :class:`~pagingcheck.checks.observe.Observed` state and
returns the first :class:`~pagingcheck.checks.observe.Violation` it finds,
with a witness, or None. :data:`INVARIANTS` maps each name to its predicate;
the Hypothesis machines, replay and every other checker check exactly these.
Properties of a *step* (refinement, restart exactness, no dirty page
dropped, progress) live in :mod:`pagingcheck.checks.refinement` and
:mod:`pagingcheck.checks.progress`.

Each predicate reads the hardware wherever it can (the tables walked from
declared roots, the TLB, the disk's queue) and treats the kernel's view as
a claim: what the view says about frames, slots and pages is compared with
what the hardware shows, and where only the view can tell (free lists,
where a page that is not resident lives), the view is checked against
itself and against what it implies for the hardware. docs/invariants.md
says, for each, what it reads and what a lying view can and cannot hide.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from pagingcheck.checks.observe import Observed, User, Violation
from pagingcheck.impl.interface import Location, PageView
from pagingcheck.model import bits

Predicate = Callable[[Observed], Violation | None]


@dataclass(frozen=True)
class Invariant:
    """A named state predicate and its statement in English."""

    name: str
    statement: str
    check: Predicate


def spaces_agree(s: Observed) -> Violation | None:
    """Every live process's address space is declared to the hardware with the table root the
    kernel gives it, no two live processes share an address-space id, and no declared
    address space belongs to a process that is gone."""
    name = "spaces_agree"
    seen: dict[int, int] = {}
    for proc in s.live_processes:
        if proc.asid in seen:
            return Violation(
                name, "two live processes share an asid", (("pids", (seen[proc.asid], proc.pid)),)
            )
        seen[proc.asid] = proc.pid
        root = s.spaces.get(proc.asid)
        if root is None:
            return Violation(
                name,
                "a live process's address space is not declared to the hardware",
                (("pid", proc.pid), ("asid", proc.asid)),
            )
        if root != proc.root:
            return Violation(
                name,
                "the declared table root differs from the one the kernel's view gives",
                (("pid", proc.pid), ("declared", root), ("view", proc.root)),
            )
    for asid in sorted(set(s.spaces) - set(seen)):
        return Violation(
            name,
            "a declared address space belongs to no live process (never released)",
            (("asid", asid), ("root", s.spaces[asid])),
        )
    return None


def page_tables_well_formed(s: Observed) -> Violation | None:
    """Page tables lie in the kernel region, no two address spaces share table memory (each
    table page has one parent), every entry is for a page of the address space, and no PTE
    maps a kernel frame or a frame outside memory."""
    # It reads the memory, the declared spaces and the configuration only: the verdict is
    # the same for every state with that memory, and worked out once for them all.
    return s.facts.derived("page_tables_well_formed", lambda: _tables_verdict(s))


def _tables_verdict(s: Observed) -> Violation | None:
    name = "page_tables_well_formed"
    config = s.machine.config
    kernel_words = config.kernel_frames * config.page_words
    owner: dict[int, int] = {}
    shared_root = config.page_table == "inverted"
    for asid in sorted(s.spaces):
        for start, length in s.table_words(asid):
            if start < 0 or start + length > kernel_words:
                return Violation(
                    name, "table outside the kernel region", (("asid", asid), ("address", start))
                )
            if shared_root:
                continue
            for word in range(start, start + length):
                if word in owner:
                    why = (
                        "a table is reached twice within one address space (two parents)"
                        if owner[word] == asid
                        else "two address spaces share page-table memory"
                    )
                    return Violation(name, why, (("asids", (owner[word], asid)), ("address", word)))
                owner[word] = asid
        for entry in s.tables[asid]:
            if not 0 <= entry.vpn < config.va_pages:
                return Violation(
                    name,
                    "table entry for a page outside the address space",
                    (("asid", asid), ("vpn", entry.vpn), ("pte_addr", entry.pte_addr)),
                )
    for (asid, vpn), pfn in sorted(s.present.items()):
        if pfn not in config.user_pfns:
            return Violation(
                name,
                "PTE maps a frame outside the user pool",
                (("asid", asid), ("vpn", vpn), ("pfn", pfn)),
            )
    return None


def busy_frame_exclusive(s: Observed) -> Violation | None:
    """A frame with a transfer in flight is on no free list, mapped by no present PTE,
    in no TLB entry, marked busy in the frame table, and the target of one transfer only."""
    name = "busy_frame_exclusive"
    free = set(s.view.free_frames)
    status = {f.pfn: f.status for f in s.view.frames}
    mapped = {pfn: key for key, pfn in sorted(s.present.items(), reverse=True)}
    for pfn, ops in sorted(s.transfers.items()):
        if len(ops) > 1:
            return Violation(
                name, "two transfers in flight on one frame", (("pfn", pfn), ("ops", ops))
            )
        if pfn in free:
            return Violation(
                name, "frame with a transfer in flight is on the free list", (("pfn", pfn),)
            )
        if pfn in mapped:
            asid, vpn = mapped[pfn]
            return Violation(
                name,
                "frame with a transfer in flight is mapped by a present PTE",
                (("pfn", pfn), ("asid", asid), ("vpn", vpn)),
            )
        for entry in s.machine.mmu.tlb.entries():
            if bits.is_present(entry.pte) and bits.pfn(entry.pte) == pfn:
                return Violation(
                    name,
                    "frame with a transfer in flight is in a TLB entry",
                    (("pfn", pfn), ("asid", entry.asid), ("vpn", entry.vpn)),
                )
        if status.get(pfn) != "busy":
            return Violation(
                name,
                "frame with a transfer in flight is not marked busy",
                (("pfn", pfn), ("status", status.get(pfn))),
            )
    return None


def freed_at_last_reference(s: Observed) -> Violation | None:
    """A frame or swap slot is free only when no mapping uses it and no transfer is in
    flight: no present PTE maps a free frame, no free slot has a transfer, and no live
    page has its contents in a free frame or a free slot."""
    name = "freed_at_last_reference"
    free_frames = set(s.view.free_frames)
    free_slots = set(s.view.free_slots)
    for (asid, vpn), pfn in sorted(s.present.items()):
        if pfn in free_frames:
            return Violation(
                name,
                "free frame still mapped by a present PTE",
                (("pfn", pfn), ("asid", asid), ("vpn", vpn)),
            )
    for frame in s.view.frames:
        if frame.pfn in free_frames and frame.refcount:
            return Violation(name, "free frame still referenced", (("pfn", frame.pfn),))
    for slot in sorted(free_slots):
        if s.slot_transfers.get(slot):
            return Violation(name, "free swap slot with a transfer in flight", (("slot", slot),))
    for view in s.view.slots:
        if view.slot in free_slots and view.refcount:
            return Violation(name, "free swap slot still referenced", (("slot", view.slot),))
    for page, home in sorted(s.file_homes.items()):
        if home.where == "frame" and home.index in free_frames:
            return Violation(
                name, "a file page's contents are in a free frame", (("file_page", page),)
            )
    for (pid, vpn), home in sorted(s.homes.items()):
        if home.where == "frame" and home.index in free_frames:
            return Violation(
                name,
                "live page's contents are in a free frame",
                (("pid", pid), ("vpn", vpn), ("pfn", home.index)),
            )
        if home.where == "slot" and home.index in free_slots:
            return Violation(
                name,
                "live page's contents are in a free swap slot",
                (("pid", pid), ("vpn", vpn), ("slot", home.index)),
            )
    return None


def frame_table_agrees(s: Observed) -> Violation | None:
    """The frame table lists every user frame once; every present PTE maps an in-use frame
    that lists it, every in-use frame's users have present PTEs mapping it, and each frame's
    transfer is the one the disk has in flight on it: frame table and hardware agree."""
    name = "frame_table_agrees"
    listed = Counter(f.pfn for f in s.view.frames)
    for pfn in s.machine.config.user_pfns:
        if listed[pfn] != 1:
            return Violation(
                name,
                "the frame table does not list this user frame exactly once",
                (("pfn", pfn), ("times", listed[pfn])),
            )
    frames = {f.pfn: f for f in s.view.frames}
    for (asid, vpn), pfn in sorted(s.present.items()):
        pid = s.pid_of.get(asid)
        frame = frames.get(pfn)
        if pid is None:
            continue
        if frame is None or frame.status != "in_use" or (pid, vpn) not in frame.users:
            return Violation(
                name,
                "present PTE maps a frame the frame table does not give it",
                (
                    ("pid", pid),
                    ("vpn", vpn),
                    ("pfn", pfn),
                    ("status", None if frame is None else frame.status),
                ),
            )
    for frame in s.view.frames:
        ops = s.transfers.get(frame.pfn, [])
        actual = ops[0] if len(ops) == 1 else None
        if frame.transfer != actual and len(ops) <= 1:
            return Violation(
                name,
                "the frame table's transfer differs from the disk's",
                (("pfn", frame.pfn), ("claimed", frame.transfer), ("disk", actual)),
            )
        if frame.status != "in_use":
            continue
        for user in frame.users:
            if s.resident(*user) != frame.pfn:
                return Violation(
                    name,
                    "frame table lists a user whose PTE does not map the frame",
                    (("pfn", frame.pfn), ("pid", user[0]), ("vpn", user[1])),
                )
    return None


def refcounts_exact(s: Observed) -> Violation | None:
    """Each frame's reference count equals the present PTEs that map it and the users its
    reverse map lists (no user twice); each slot's reference count equals the pages using it."""
    name = "refcounts_exact"
    for frame in s.view.frames:
        mapped = s.mappers.get(frame.pfn, set())
        if frame.refcount != len(mapped):
            return Violation(
                name,
                "frame reference count differs from the present PTEs that map it",
                (("pfn", frame.pfn), ("refcount", frame.refcount), ("ptes", sorted(mapped))),
            )
        if frame.refcount != len(frame.users) or len(set(frame.users)) != len(frame.users):
            return Violation(
                name,
                "frame reference count differs from its reverse map",
                (("pfn", frame.pfn), ("refcount", frame.refcount), ("users", frame.users)),
            )
    for slot in s.view.slots:
        if slot.refcount != len(slot.users) or len(set(slot.users)) != len(slot.users):
            return Violation(
                name,
                "slot reference count differs from its users",
                (("slot", slot.slot), ("refcount", slot.refcount), ("users", slot.users)),
            )
    return None


def page_identity(pid: int, page: PageView) -> tuple[object, ...]:
    """What makes two valid pages the same page: a shared object's page, or a private one."""
    if page.shared_key is not None:
        return ("shared", page.shared_key, page.index)
    return ("private", pid, page.vpn)


def _home_in_range(s: Observed, home: Location) -> bool:
    config = s.machine.config
    if home.where == "frame":
        return home.index in config.user_pfns
    if home.where == "slot":
        return 0 <= home.index < config.swap_slots
    if home.where == "image":
        return config.swap_slots <= home.index < config.disk_blocks
    return home.where == "zero"


def homes_agree(s: Observed) -> Violation | None:
    """Every page's contents are where the hardware finds them: a page a present PTE maps
    lives in that frame and the view says so; every process sharing a writable page sees it
    in the same place (a read-only page may be copied); and two different pages never share
    a frame or a swap slot (whether they are there now or the slot is reserved for them)."""
    name = "homes_agree"
    where: dict[tuple[object, ...], tuple[User, Location]] = {}
    holder: dict[tuple[str, int], tuple[object, ...]] = {}
    for proc in s.live_processes:
        for page in proc.pages:
            user = (proc.pid, page.vpn)
            home = s.homes[user]
            if not _home_in_range(s, page.home):
                return Violation(
                    name,
                    "the view puts a page's contents where no page can be",
                    (("pid", proc.pid), ("vpn", page.vpn), ("home", page.home)),
                )
            if home != page.home:
                return Violation(
                    name,
                    "a present PTE maps the page to a frame the view does not give as its home",
                    (("pid", proc.pid), ("vpn", page.vpn), ("pte_frame", home.index)),
                )
            filed = _file_page(page)
            if filed is not None and s.file_homes.get(filed) != home:
                return Violation(
                    name,
                    "a process maps a file's page somewhere the file's page is not",
                    (("pid", proc.pid), ("vpn", page.vpn), ("file_page", filed), ("home", home)),
                )
            identity = page_identity(proc.pid, page)
            writable = bool(page.prot & bits.WRITE)
            if writable and identity in where and where[identity][1] != home:
                other, elsewhere = where[identity]
                return Violation(
                    name,
                    "processes sharing a page see it in different places",
                    (("page", identity), ("users", (other, user)), ("homes", (elsewhere, home))),
                )
            where[identity] = (user, home)
            if home.where in ("frame", "slot"):
                key = (home.where, home.index)
                held = holder.setdefault(key, identity)
                if held != identity and not copies(held, identity):
                    return Violation(
                        name,
                        f"two different pages are in one {home.where}",
                        ((home.where, home.index), ("pages", (holder[key], identity))),
                    )
    return _files_listed(s, holder) or _slots_hold_one_page(s)


def _file_page(page: PageView) -> tuple[str, int] | None:
    """The (file name, page) a process's ``page`` shows, if it shows a file's page."""
    key = page.shared_key
    if key is None or not key.startswith("file:"):
        return None
    return (key[len("file:") :], page.index)


def _files_listed(
    s: Observed, holder: dict[tuple[str, int], tuple[object, ...]]
) -> Violation | None:
    """The view lists pages of the disk's files only, each once, each in a user frame that
    holds no other page."""
    listed: set[tuple[str, int]] = set()
    for file in s.view.files:
        page = (file.name, file.index)
        if page not in s.file_homes or page in listed or not _home_in_range(s, file.home):
            return Violation(
                "homes_agree",
                "the view lists a file page that is no page of a file on the disk, twice, "
                "or where no page can be",
                (("file_page", page), ("home", file.home)),
            )
        listed.add(page)
        if file.home.where != "frame":
            continue
        identity = ("shared", f"file:{file.name}", file.index)
        held = holder.setdefault(("frame", file.home.index), identity)
        if held != identity:
            return Violation(
                "homes_agree",
                "two different pages are in one frame",
                (("frame", file.home.index), ("pages", (held, identity))),
            )
    return None


def copies(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Whether pages ``a`` and ``b`` (:func:`page_identity`) may share a frame or a slot: two
    private pages (of a fork's parent and child, copy-on-write until one writes; that
    they are read-only meanwhile is ``copies_read_only``, that neither sees the other's
    writes is refinement)."""
    return a[0] == "private" and b[0] == "private"


def _slots_hold_one_page(s: Observed) -> Violation | None:
    """The users the view lists for a swap slot are all one page (a shared page's users)."""
    pages = {
        (proc.pid, page.vpn): page_identity(proc.pid, page)
        for proc in s.live_processes
        for page in proc.pages
    }
    for slot in s.view.slots:
        held = {pages[user] for user in slot.users if user in pages}
        if len(held) > 1 and not all(page[0] == "private" for page in held):
            return Violation(
                "homes_agree",
                "two different pages are in one slot",
                (("slot", slot.slot), ("pages", tuple(sorted(map(str, held))))),
            )
    return None


def copies_read_only(s: Observed) -> Violation | None:
    """A frame that holds one copy for two private pages (a fork's, shared copy-on-write)
    is written through no mapping: no present PTE and no TLB entry maps it with write, so
    a write by one process must first make it a copy of its own. Nor is a private
    mapping's page that still shows its file's page writable in its PTE or TLB entry."""
    name = "copies_read_only"
    found = _file_copies_read_only(s)
    if found is not None:
        return found
    holders: dict[int, set[User]] = defaultdict(set)
    for proc in s.live_processes:
        for page in proc.pages:
            home = s.homes[(proc.pid, page.vpn)]
            if page.shared_key is None and home.where == "frame":
                holders[home.index].add((proc.pid, page.vpn))
    shared = {pfn: users for pfn, users in holders.items() if len(users) > 1}
    if not shared:
        return None
    for (asid, vpn), pfn in sorted(s.present.items()):
        pte = s.walk(s.spaces[asid], asid, vpn) if asid in s.spaces else None
        if pfn in shared and pte is not None and pte.pte & bits.WRITE:
            return Violation(
                name,
                "a PTE grants write to a frame two private pages share (copy-on-write)",
                (("asid", asid), ("vpn", vpn), ("pfn", pfn), ("pages", tuple(sorted(shared[pfn])))),
            )
    for entry in s.machine.mmu.tlb.entries():
        pfn = bits.pfn(entry.pte)
        if bits.is_present(entry.pte) and pfn in shared and entry.pte & bits.WRITE:
            return Violation(
                name,
                "a TLB entry grants write to a frame two private pages share (copy-on-write)",
                (("asid", entry.asid), ("vpn", entry.vpn), ("pfn", pfn)),
            )
    return None


def _file_copies_read_only(s: Observed) -> Violation | None:
    """No PTE or TLB entry grants write to a private mapping's page still its file's."""
    mmu = s.machine.mmu
    for proc in s.live_processes:
        asid = s.asid_of.get(proc.pid)
        for page in proc.pages:
            if not page.copy_on_write:
                continue
            pte = s.pte(proc.pid, page.vpn)
            cached = [
                e.pte
                for e in mmu.tlb.entries()
                if e.vpn == page.vpn and (e.asid if mmu.tlb.tagged else mmu.asid) == asid
            ]
            for word, where in ((pte, "PTE"), *((word, "TLB entry") for word in cached)):
                if word is not None and bits.is_present(word) and word & bits.WRITE:
                    return Violation(
                        "copies_read_only",
                        f"a {where} grants write to a private mapping's page that is still "
                        "its file's (a write must copy it first)",
                        (("pid", proc.pid), ("vpn", page.vpn), ("file_page", page.shared_key)),
                    )
    return None


def tlb_agrees(s: Observed) -> Violation | None:
    """Every TLB entry matches a walk of the page table it stands for, in memory: a tagged
    entry its own address space's declared table, an untagged one the table loaded in the
    MMU; same frame, no more rights. Checked after every step and as the CPU enters user mode."""
    name = "tlb_agrees"
    mmu = s.machine.mmu
    for entry in mmu.tlb.entries():
        asid = entry.asid if mmu.tlb.tagged else mmu.asid
        root = s.spaces.get(asid) if mmu.tlb.tagged else mmu.ptbr
        if root is None:
            return Violation(
                name,
                "TLB entry of an address space that no longer exists",
                (("asid", asid), ("vpn", entry.vpn)),
            )
        walked = s.walk(root, asid, entry.vpn)
        table = walked.pte if walked is not None else 0
        table_pfn = bits.pfn(table) if bits.is_present(table) else None
        if table_pfn is None or table_pfn != bits.pfn(entry.pte):
            return Violation(
                name,
                "TLB entry does not match the page table",
                (
                    ("asid", asid),
                    ("vpn", entry.vpn),
                    ("tlb_pfn", bits.pfn(entry.pte)),
                    ("table_pfn", table_pfn),
                ),
            )
        if bits.prot(entry.pte) & ~bits.prot(table):
            return Violation(
                name,
                "TLB entry grants rights the page table does not",
                (("asid", asid), ("vpn", entry.vpn)),
            )
    return None


def free_lists_clean(s: Observed) -> Violation | None:
    """Free lists of frames and slots hold no duplicates, and nothing in use or busy."""
    name = "free_lists_clean"
    for label, items in (("frame", s.view.free_frames), ("slot", s.view.free_slots)):
        repeated = [item for item, count in Counter(items).items() if count > 1]
        if repeated:
            return Violation(name, f"{label} twice on the free list", ((label, repeated[0]),))
    status = {f.pfn: f for f in s.view.frames}
    for pfn in s.view.free_frames:
        frame = status.get(pfn)
        if frame is None or frame.status != "free" or frame.users or frame.transfer:
            return Violation(name, "free list holds a frame in use or busy", (("pfn", pfn),))
        if s.transfers.get(pfn):
            return Violation(name, "free list holds a frame with a transfer", (("pfn", pfn),))
    allocated = {slot.slot for slot in s.view.slots}
    for slot in s.view.free_slots:
        if s.slot_transfers.get(slot):
            return Violation(name, "free list holds a slot with a transfer", (("slot", slot),))
        if slot in allocated:
            return Violation(name, "free list holds an allocated slot", (("slot", slot),))
    return None


def no_leaks(s: Observed) -> Violation | None:
    """Nothing is held for ever: a frame that is not free is mapped by a present PTE, has a
    transfer in flight, or holds a live page's or a file page's contents; a busy frame has
    a transfer in flight; an allocated swap slot is used by a live page or has a transfer in
    flight; and no page holds two swap slots."""
    name = "no_leaks"
    free = set(s.view.free_frames)
    mapped = set(s.present.values())
    homes = (*s.homes.values(), *s.file_homes.values())
    holding = {home.index for home in homes if home.where == "frame"}
    for frame in s.view.frames:
        moving = bool(s.transfers.get(frame.pfn))
        if frame.status == "busy" and not moving:
            return Violation(
                name, "frame held busy with no transfer in flight", (("pfn", frame.pfn),)
            )
        if frame.pfn in free or moving or frame.pfn in mapped or frame.pfn in holding:
            continue
        return Violation(
            name,
            "frame is neither free, mapped, moving nor holding a live page",
            (("pfn", frame.pfn), ("status", frame.status)),
        )
    pages = {(p.pid, page.vpn) for p in s.live_processes for page in p.pages}
    owner: dict[User, int] = {}
    for slot in s.view.slots:
        live_users = [user for user in slot.users if user in pages]
        if not live_users and not s.slot_transfers.get(slot.slot):
            return Violation(
                name,
                "allocated swap slot used by no live page and no transfer",
                (("slot", slot.slot),),
            )
        for user in slot.users:
            if user in owner:
                return Violation(
                    name,
                    "a page holds two swap slots",
                    (("pid", user[0]), ("vpn", user[1]), ("slots", (owner[user], slot.slot))),
                )
            owner[user] = slot.slot
    return None


INVARIANTS: dict[str, Invariant] = {
    inv.__name__: Invariant(inv.__name__, " ".join((inv.__doc__ or "").split()), inv)
    # The order is the order of checking, structural facts first, so that the
    # property reported for a broken state is the most basic one it breaks.
    for inv in (
        spaces_agree,
        page_tables_well_formed,
        busy_frame_exclusive,
        freed_at_last_reference,
        frame_table_agrees,
        refcounts_exact,
        homes_agree,
        tlb_agrees,
        copies_read_only,
        free_lists_clean,
        no_leaks,
    )
}


def check_all(s: Observed) -> Violation | None:
    """The first violated invariant, in catalog order, or None."""
    for invariant in INVARIANTS.values():
        violation = invariant.check(s)
        if violation is not None:
            return violation
    return None
