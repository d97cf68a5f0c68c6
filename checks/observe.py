"""One reached system state as the checks see it, with derived facts computed once.

Two sources, kept apart:

* **the hardware**: page tables walked in memory from every root the
  kernel declared through the port (and the one loaded in the MMU), the
  TLB's slots, the disk's pending requests. These are facts.
* **the kernel's view**: what the kernel says about itself. It is used for
  what only the kernel knows (which process is which, where a page that is
  not resident lives, the free lists), and everywhere the hardware can
  confirm a part of it, the invariants compare the two.

Hardware facts are keyed by address-space id (asid), as the hardware knows
them; the view says which process owns which asid, and ``spaces_agree``
checks that the declared spaces and the view's processes match one to one
before any other invariant relies on that.

What the page tables say (their entries, the memory they use, the walks) is a
function of physical memory and the declared spaces alone, and an exploration
reaches the same memory in many states (``tiny``: about 1,300 memories in 8,000
transitions). So those facts are worked out once per distinct memory content
and set of spaces (:class:`TableFacts`), keyed by the content itself, and
shared by every state that has it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from pagingcheck.impl.interface import KernelView, Location, PageView, ProcessView
from pagingcheck.model import bits
from pagingcheck.model.disk import Request
from pagingcheck.model.machine import Machine
from pagingcheck.model.pagetable import Entry, PageTableFormat

User = tuple[int, int]  # (pid, vpn)
T = TypeVar("T")


class cached_property(Generic[T]):
    """``functools.cached_property`` without its lock: a fact is worked out on first use
    and kept in the instance. The checks derive a dozen facts per state, one thread
    each; the lock that Python 3.11's version takes on every first use was a measurable
    part of the checks' time."""

    def __init__(self, derive: Callable[[Any], T]) -> None:
        self.derive = derive
        self.name = derive.__name__
        self.__doc__ = derive.__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> cached_property[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object, owner: type) -> T | cached_property[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.derive(instance)
        return value


@dataclass(frozen=True)
class Violation:
    """A property failed: its name, why (in words), and the witness values."""

    property: str
    message: str
    witness: tuple[tuple[str, object], ...] = ()
    #: For a kernel's crash, its own frames of the traceback (not part of what it is).
    traceback: str = field(default="", compare=False)

    def explain(self) -> str:
        """One line: property, message and witness."""
        detail = ", ".join(f"{key}={value}" for key, value in self.witness)
        return f"{self.property}: {self.message}" + (f" ({detail})" if detail else "")

    def to_json(self, step: int | None, trace: object = None) -> dict[str, Any]:
        """The violation as every command's JSON gives it: the property, why, the
        witness, the step it shows at (None where there are no steps) and the trace file
        (None when none was written); the kernel's own traceback for a crash."""
        data: dict[str, Any] = {
            "property": self.property,
            "why": self.message,
            "witness": {key: plain(value) for key, value in self.witness},
            "step": step,
            "trace": None if trace is None else str(trace),
        }
        if self.traceback:
            data["traceback"] = self.traceback
        return data


def plain(value: object) -> Any:
    """``value`` as YAML or JSON can hold it: numbers, strings and lists of them."""
    if isinstance(value, bool | int | str | float) or value is None:
        return value
    if isinstance(value, tuple | list | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


class TableFacts:
    """What the page tables in one memory say, for one set of declared address spaces:
    read from a machine once and shared, read-only, by every state with the same memory
    words and spaces (and format). Each fact is worked out when first asked for."""

    def __init__(self, machine: Machine, spaces: dict[int, int]) -> None:
        # A copy of the memory and spaces as they are now: the facts are about this
        # content, whatever the machine they came from does next.
        self.format: PageTableFormat = machine.format
        self.memory = machine.memory.copy()
        self.spaces = dict(spaces)
        self._walks: dict[tuple[int, int, int], Entry | None] = {}
        self._words: dict[int, list[tuple[int, int]]] = {}
        self._derived: dict[str, Any] = {}

    @cached_property
    def tables(self) -> dict[int, list[Entry]]:
        """asid -> the non-empty leaf entries of its declared table, walked in memory."""
        fmt, memory = self.format, self.memory
        return {asid: fmt.entries(memory, root, asid) for asid, root in self.spaces.items()}

    @cached_property
    def present(self) -> dict[tuple[int, int], int]:
        """(asid, vpn) -> pfn for every present PTE of every declared space."""
        return {
            (asid, entry.vpn): bits.pfn(entry.pte)
            for asid, entries in self.tables.items()
            for entry in entries
            if bits.is_present(entry.pte)
        }

    def walk(self, root: int, asid: int, vpn: int) -> Entry | None:
        """The format's walk of ``vpn`` from ``root`` in this memory."""
        key = (root, asid, vpn)
        if key in self._walks:
            return self._walks[key]
        found = self._walks[key] = self.format.walk(self.memory, root, asid, vpn)
        return found

    def table_words(self, asid: int) -> list[tuple[int, int]]:
        """The (address, length) ranges of memory declared space ``asid``'s table uses."""
        found = self._words.get(asid)
        if found is None:
            root = self.spaces[asid]
            found = self._words[asid] = self.format.table_words(self.memory, root, asid)
        return found

    def derived(self, name: str, derive: Callable[[], T]) -> T:
        """``derive()``, worked out once for these facts and kept as ``name``. Only for a
        result that depends on nothing but this memory, these spaces and the format (and
        the configuration the format was made for)."""
        if name in self._derived:
            return self._derived[name]  # type: ignore[no-any-return]
        found = self._derived[name] = derive()
        return found


#: The facts of the memories seen lately, by format, memory digest and declared spaces (in
#: their order, so even the order the facts are listed in is the state's own).
_FACTS: dict[tuple[Any, ...], TableFacts] = {}
#: How many memories' facts are kept at most; past it the cache starts again (it only
#: saves time). Each entry keeps a copy of a memory, sharing the frames it did not
#: write, and...
FACTS_KEPT = 1 << 13
#: ... no more than this many bytes of memories in all, whatever the machine's size.
FACTS_BYTES = 32 << 20


def table_facts(machine: Machine) -> TableFacts:
    """The page-table facts of ``machine``'s memory and spaces as they are now."""
    spaces = machine.spaces
    key = (machine.format, machine.memory.digest(), tuple(spaces.items()))
    found = _FACTS.get(key)
    if found is None:
        if len(_FACTS) >= min(FACTS_KEPT, FACTS_BYTES // (4 * machine.config.memory_words)):
            _FACTS.clear()
        found = _FACTS[key] = TableFacts(machine, spaces)
    return found


class Observed:
    """A machine and kernel view, with facts derived lazily."""

    def __init__(self, machine: Machine, view: KernelView) -> None:
        self.machine = machine
        self.view = view

    def __getstate__(self) -> dict[str, object]:
        # The two sources only: every derived fact is worked out again when first asked
        # for, so a state spilled to disk or sent to another worker carries none of them.
        return {"machine": self.machine, "view": self.view}

    # -- the view's processes -------------------------------------------------------

    @cached_property
    def live_processes(self) -> tuple[ProcessView, ...]:
        """The view's processes that have not exited, by pid."""
        return tuple(
            sorted((p for p in self.view.processes if p.state != "exited"), key=lambda p: p.pid)
        )

    @cached_property
    def live(self) -> tuple[int, ...]:
        """Pids of live processes."""
        return tuple(p.pid for p in self.live_processes)

    @cached_property
    def pid_of(self) -> dict[int, int]:
        """asid -> pid of the live process the view gives it."""
        return {p.asid: p.pid for p in self.live_processes}

    @cached_property
    def asid_of(self) -> dict[int, int]:
        """pid -> asid, for live processes."""
        return {p.pid: p.asid for p in self.live_processes}

    # -- the hardware -----------------------------------------------------------------

    @cached_property
    def spaces(self) -> dict[int, int]:
        """asid -> table root of every address space the kernel declared (hardware)."""
        return dict(self.machine.spaces)

    @cached_property
    def facts(self) -> TableFacts:
        """What the page tables in memory say (shared with every state of this memory).
        The machine must not change after it is first asked for: an observed state's
        machine is a copy no step touches."""
        return table_facts(self.machine)

    @property
    def tables(self) -> dict[int, list[Entry]]:
        """asid -> the non-empty leaf entries of its declared table, walked in memory
        (shared: read only)."""
        return self.facts.tables

    @property
    def present(self) -> dict[tuple[int, int], int]:
        """(asid, vpn) -> pfn for every present PTE of every declared space (shared: read
        only)."""
        return self.facts.present

    def walk(self, root: int, asid: int, vpn: int) -> Entry | None:
        """The format's walk of ``vpn`` from ``root`` in this state's memory."""
        return self.facts.walk(root, asid, vpn)

    def table_words(self, asid: int) -> list[tuple[int, int]]:
        """The memory declared space ``asid``'s table uses, as (address, length) ranges."""
        return self.facts.table_words(asid)

    @cached_property
    def mappers(self) -> dict[int, set[User]]:
        """pfn -> the (pid, vpn) pairs whose present PTE maps it (asids of no live
        process are left out; ``spaces_agree`` reports them)."""
        result: dict[int, set[User]] = defaultdict(set)
        for (asid, vpn), frame in self.present.items():
            if asid in self.pid_of:
                result[frame].add((self.pid_of[asid], vpn))
        return result

    def pte(self, pid: int, vpn: int) -> int | None:
        """The PTE word of ``vpn`` in ``pid``'s declared table (None: no entry or no table)."""
        asid = self.asid_of.get(pid)
        if asid is None or asid not in self.spaces:
            return None
        if not 0 <= vpn < self.machine.config.va_pages:
            return None
        entry = self.walk(self.spaces[asid], asid, vpn)
        return None if entry is None else entry.pte

    def resident(self, pid: int, vpn: int) -> int | None:
        """The frame ``pid``'s page ``vpn`` is mapped present to, by the hardware, or None."""
        asid = self.asid_of.get(pid)
        return None if asid is None else self.present.get((asid, vpn))

    @cached_property
    def requests(self) -> tuple[Request, ...]:
        """The disk's pending requests (hardware)."""
        return self.machine.disk.pending

    @cached_property
    def transfers(self) -> dict[int, list[str]]:
        """pfn -> the operations of disk requests in flight on it (hardware)."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.requests:
            result[request.pfn].append(request.op)
        return result

    @cached_property
    def block_transfers(self) -> dict[int, list[str]]:
        """disk block -> the operations of disk requests in flight on it (hardware)."""
        result: dict[int, list[str]] = defaultdict(list)
        for request in self.requests:
            result[request.block].append(request.op)
        return result

    @cached_property
    def slot_transfers(self) -> dict[int, list[str]]:
        """swap slot -> the operations of disk requests in flight on it (hardware)."""
        slots = self.machine.config.swap_slots
        return {block: ops for block, ops in self.block_transfers.items() if block < slots}

    # -- pages: where their contents are ----------------------------------------------

    def home(self, pid: int, page: PageView) -> Location:
        """Where the contents of ``pid``'s ``page`` are: the frame a present PTE maps it
        to (hardware), else where the view says."""
        frame = self.resident(pid, page.vpn)
        return Location("frame", frame) if frame is not None else page.home

    @cached_property
    def homes(self) -> dict[User, Location]:
        """(pid, vpn) -> :meth:`home` of every valid page of every live process."""
        return {
            (proc.pid, page.vpn): self.home(proc.pid, page)
            for proc in self.live_processes
            for page in proc.pages
        }

    @cached_property
    def file_homes(self) -> dict[tuple[str, int], Location]:
        """(name, page) -> where the contents of each page of each workload file (the
        disk's directory) are: the frame the view lists it in, else its disk block."""
        listed = {(f.name, f.index): f.home for f in self.view.files}
        return {
            (file.name, index): listed.get((file.name, index), Location("image", block))
            for file in self.machine.files
            for index, block in enumerate(file.blocks)
        }

    @cached_property
    def slot_holders(self) -> set[User]:
        """Every (pid, vpn) the view lists as a user of some swap slot."""
        return {user for slot in self.view.slots for user in slot.users}

    def page(self, pid: int, vpn: int) -> PageView | None:
        """``pid``'s valid page ``vpn`` as the view gives it, or None."""
        process = self.view.process(pid)
        return next((p for p in process.pages if p.vpn == vpn), None) if process else None

    def unbacked(self, pid: int, vpn: int) -> bool:
        """Whether ``pid``'s page ``vpn`` is a valid, writable, private page that holds no
        swap slot yet (a heap page never touched): its first touch needs one."""
        page = self.page(pid, vpn)
        return (
            page is not None
            and page.shared_key is None
            and bool(page.prot & bits.WRITE)
            and (pid, vpn) not in self.slot_holders
        )

    def shares_copy(self, pid: int, vpn: int) -> bool:
        """Whether a write to ``pid``'s page ``vpn`` needs a copy: a private mapping's page
        still the file's, or a private page whose frame or slot another live process's
        private page shares (a fork's copy-on-write)."""
        page = self.page(pid, vpn)
        if page is not None and page.copy_on_write:
            return True
        home = self.homes.get((pid, vpn))
        if home is None or home.where not in ("frame", "slot") or self.shared_key(pid, vpn):
            return False
        return any(
            user[0] != pid and where == home and not self.shared_key(*user)
            for user, where in self.homes.items()
        )

    def shared_key(self, pid: int, vpn: int) -> str | None:
        """The shared object ``pid``'s valid page ``vpn`` belongs to (None: private, or no
        such page)."""
        page = self.page(pid, vpn)
        return None if page is None else page.shared_key

    def writable(self, pid: int, vpn: int) -> bool:
        """Whether ``pid``'s valid page ``vpn`` may be written (its protection, in the view)."""
        page = self.page(pid, vpn)
        return page is not None and bool(page.prot & bits.WRITE)

    def in_transit(self, home: Location) -> Request | None:
        """The pending request that moves the contents at ``home``, if any: a write of
        its frame, or a read of its block."""
        for request in self.requests:
            if home.where == "frame" and request.pfn == home.index:
                return request
            if home.where in ("slot", "image") and request.block == home.index:
                return request
        return None


def difference(before: Observed, after: Observed) -> list[str]:
    """What changed between two states, in words: processes, mappings, frames, free lists,
    transfers in flight, the CPU and the console. Traces show it for the failing step."""
    changes: list[str] = []
    states_before = {p.pid: p.state for p in before.view.processes}
    for proc in after.view.processes:
        old = states_before.get(proc.pid)
        if old != proc.state:
            changes.append(f"process {proc.pid}: {old or 'new'} -> {proc.state}")
    for key in sorted(set(before.present) | set(after.present)):
        old_pfn, new_pfn = before.present.get(key), after.present.get(key)
        if old_pfn != new_pfn:
            changes.append(f"asid {key[0]} vpn {key[1]}: frame {old_pfn} -> {new_pfn}")
    frames_before = {f.pfn: f for f in before.view.frames}
    for frame in after.view.frames:
        old_frame = frames_before.get(frame.pfn)
        if old_frame != frame:
            was = "-" if old_frame is None else f"{old_frame.status}/{old_frame.refcount}"
            changes.append(
                f"frame {frame.pfn}: {was} -> {frame.status}/{frame.refcount}"
                f"{' transfer ' + frame.transfer if frame.transfer else ''}"
            )
    for label, old_list, new_list in (
        ("free frames", before.view.free_frames, after.view.free_frames),
        ("free slots", before.view.free_slots, after.view.free_slots),
    ):
        if old_list != new_list:
            changes.append(f"{label}: {list(old_list)} -> {list(new_list)}")
    old_pending = [(r.op, r.block, r.pfn) for r in before.requests]
    new_pending = [(r.op, r.block, r.pfn) for r in after.requests]
    if old_pending != new_pending:
        changes.append(f"disk requests in flight: {old_pending} -> {new_pending}")
    if before.machine.cpu.state != after.machine.cpu.state:
        changes.append(f"cpu: {before.machine.cpu.state} -> {after.machine.cpu.state}")
    if before.machine.console != after.machine.console:
        changes.append(
            f"console: {printed(before.machine.console)} -> {printed(after.machine.console)}"
        )
    return changes


def printed(console: tuple[int, ...]) -> str:
    """What a console shows, quoted, with a byte that is not printable ASCII escaped."""
    return repr(bytes(console))[1:]
