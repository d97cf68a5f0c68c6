"""The minimal kernel's records: processes, pages and frames, as plain dataclasses.

Everything else the kernel knows is derived from these on demand (free lists,
a page's frame, the users of a slot), so there is nothing to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pagingcheck.impl.interface import Location, ProcessState
from pagingcheck.model.isa import ArchState
from pagingcheck.model.program import PageKind

#: A page of contents: ``("private", pid, vpn)`` or ``("shared", shared_key, index)``.
PageKey = tuple[str, str | int, int]
#: A mapping of a page: ``(pid, vpn)``.
User = tuple[int, int]


@dataclass
class Page:
    """One page of contents, private to a process or shared by every process attaching it.

    ``source`` is where the contents are whenever no frame holds them (an
    image block, the page's swap slot, or zeros). ``slot`` is the swap slot
    reserved at creation for a writable page. ``dirty``: a mapping that went
    away had M set, so the copy in the frame is newer than ``source``.
    """

    prot: int
    kind: PageKind
    shared_key: str | None
    index: int
    source: Location
    slot: int | None = None
    dirty: bool = False


@dataclass(frozen=True)
class Transfer:
    """A disk request in flight on a frame: its op, the id ``submit`` gave, its block."""

    op: Literal["read", "write"]
    id: int
    block: int


@dataclass
class Frame:
    """One user frame.

    ``holds``: the page whose contents are here (mapped or not, or being
    written back); ``incoming``: the page reserved to come in next (read, or
    zero-filled); ``users``: the present PTEs mapping it; ``transfer``: the
    request in flight; ``loaded``: when its page came in (FIFO order).
    Free when it holds nothing, expects nothing and moves nothing.
    """

    holds: PageKey | None = None
    incoming: PageKey | None = None
    users: list[User] = field(default_factory=list)
    transfer: Transfer | None = None
    loaded: int = 0


@dataclass
class Proc:
    """One process; its asid is its pid (pids are never reused).

    ``space`` maps each valid vpn to its page (empty once exited).
    ``context`` holds the registers while the process is off the CPU.
    ``fault_vpn`` is the page a blocked process waits for. ``ticket`` and
    ``pinned`` belong to its unfinished instruction (see the kernel's
    progress rule); ``ran``: dispatched, and no trap since. ``stack``: the
    program's stack rule (``model.program.stack_growth``); ``heap``: its heap's
    room (``model.program.heap_break``).
    """

    pid: int
    root: int
    space: dict[int, PageKey]
    context: ArchState | None
    state: ProcessState = "ready"
    fault_vpn: int | None = None
    ticket: int | None = None
    pinned: set[PageKey] = field(default_factory=set)
    ran: bool = False
    stack: tuple[int, int] = (0, 0)  # the stack's lowest possible vpn, and its reach
    heap: tuple[int, int] = (0, 0)  # the heap's first vpn, and its most pages
