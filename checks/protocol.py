"""The values that cross the kernel interface, as JSON, and the checks of what a kernel returns.

A kernel that runs in another process (a contained Python kernel, and in
time a kernel in any language) exchanges these values as JSON objects, one
per line. Each value has an ``encode_*`` giving plain JSON data and a
``decode_*`` building the value back; a decoder checks every field and
raises :class:`InterfaceError` naming the field and what was wrong, so a
kernel that answers nonsense is reported (``interface_error``), never
trusted and never a crash of pagingcheck.

The same checks apply to a kernel running in pagingcheck's own process:
:func:`check_view`, :func:`check_runnable`, :func:`check_events` and
:func:`check_spawned` look at what its methods returned.

Shapes (all numbers are JSON integers):

============  ===============================================================
ArchState     ``{"regs": [8 words], "pc": word, "flags": 0..3}``
TrapFrame     ``{"kind", "pc", "va", "access", "state_register": [[r, d]], "number"}``
Request       ``{"id", "op": "read"|"write", "block", "pfn"}``
Image         ``{"program": {...}, "first", "page_words"}``
KernelEvent   ``{"kind", "pid", "vpn", "pfn", "detail"}``
KernelView    the fields of :class:`~pagingcheck.impl.interface.KernelView`, nested
============  ===============================================================
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast, get_args

from pagingcheck.impl.interface import (
    FileView,
    FrameView,
    KernelEvent,
    KernelView,
    Location,
    PageView,
    ProcessView,
    SlotView,
    SpawnRefused,
)
from pagingcheck.model.disk import DiskFile, Request
from pagingcheck.model.errors import quote
from pagingcheck.model.isa import REGISTERS, ArchState
from pagingcheck.model.program import (
    DEFAULT_STACK_REACH,
    Image,
    PageKind,
    Program,
    SharedSegment,
)
from pagingcheck.model.traps import Access, Fault, TrapFrame, TrapKind

WORD_MAX = 0xFFFF_FFFF
#: The version of the public process protocol (docs/protocol.md) that kernels run by
#: ``--exec`` speak, and the stdio host serves.
PROTOCOL_VERSION = 1
T = TypeVar("T")


class InterfaceError(Exception):
    """A kernel returned something the interface does not allow; the message says what."""


# -- small field checks -------------------------------------------------------------------


def _int(value: object, where: str, low: int = 0, high: int = WORD_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InterfaceError(f"{where}: {quote(value)} is not an integer in {low}..{high}")
    return value


def decode_int(value: object, where: str, low: int = 0, high: int = WORD_MAX) -> int:
    """``value`` if it is an integer in ``low..high`` (InterfaceError otherwise)."""
    return _int(value, where, low, high)


def _opt_int(value: object, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _str(value: object, where: str, limit: int = 10_000) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise InterfaceError(f"{where}: {quote(value)} is not a string of at most {limit}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InterfaceError(f"{where}: {quote(value)} is not true or false")
    return value


def _seq(value: object, where: str, limit: int = 1_000_000) -> Sequence[Any]:
    if not isinstance(value, list | tuple) or len(value) > limit:
        raise InterfaceError(f"{where}: {quote(value)} is not a list")
    return value


def _map(value: object, where: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InterfaceError(f"{where}: {quote(value)} is not an object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise InterfaceError(f"{where}: missing field {missing[0]!r}")
    return value


def _choice(value: object, where: str, allowed: Sequence[T]) -> T:
    if value not in allowed:
        raise InterfaceError(f"{where}: {quote(value)} is not one of {list(allowed)}")
    return cast(T, value)


def _is(value: object, kind: type[T], where: str) -> T:
    if not isinstance(value, kind):
        raise InterfaceError(f"{where}: {quote(value)} is not a {kind.__name__}")
    return value


# -- architectural values -------------------------------------------------------------------


def encode_state(state: ArchState) -> dict[str, Any]:
    """An ArchState as JSON data."""
    return {"regs": list(state.regs), "pc": state.pc, "flags": state.flags}


def decode_state(data: object, where: str = "state") -> ArchState:
    """An ArchState from JSON data (registers and pc 32-bit words, flags 0..3)."""
    fields = _map(data, where, ("regs", "pc", "flags"))
    regs = _seq(fields["regs"], f"{where}.regs", REGISTERS)
    if len(regs) != REGISTERS:
        raise InterfaceError(f"{where}.regs: {len(regs)} registers, not {REGISTERS}")
    return ArchState(
        tuple(_int(r, f"{where}.regs") for r in regs),
        _int(fields["pc"], f"{where}.pc"),
        _int(fields["flags"], f"{where}.flags", 0, 3),
    )


def check_state(state: object, where: str) -> ArchState:
    """``state`` if it is a well-formed ArchState (32-bit registers and pc, flags 0..3)."""
    state = _is(state, ArchState, where)
    return decode_state(encode_state(state), where)


def encode_trap(trap: TrapFrame) -> dict[str, Any]:
    """A TrapFrame as JSON data."""
    return {
        "kind": trap.kind.value,
        "pc": trap.pc,
        "va": trap.va,
        "access": None if trap.access is None else trap.access.value,
        "state_register": [list(pair) for pair in trap.state_register],
        "number": trap.number,
    }


def decode_trap(data: object) -> TrapFrame:
    """A TrapFrame from JSON data."""
    fields = _map(data, "trap", ("kind", "pc"))
    kind = TrapKind(_choice(fields["kind"], "trap.kind", [k.value for k in TrapKind]))
    access = fields.get("access")
    pairs = _seq(fields.get("state_register", []), "trap.state_register", 8)
    return TrapFrame(
        kind,
        _int(fields["pc"], "trap.pc"),
        _opt_int(fields.get("va"), "trap.va"),
        None
        if access is None
        else Access(_choice(access, "trap.access", [a.value for a in Access])),
        tuple(
            (_int(pair[0], "trap.state_register"), int(pair[1]))
            for pair in (_seq(p, "trap.state_register", 2) for p in pairs)
        ),
        _opt_int(fields.get("number"), "trap.number"),
    )


def encode_request(request: Request) -> dict[str, Any]:
    """A completed disk Request as JSON data."""
    return dataclasses.asdict(request)


def decode_request(data: object) -> Request:
    """A Request from JSON data."""
    fields = _map(data, "request", ("id", "op", "block", "pfn"))
    op: Literal["read", "write"] = _choice(fields["op"], "request.op", ["read", "write"])
    return Request(
        _int(fields["id"], "request.id"),
        op,
        _int(fields["block"], "request.block"),
        _int(fields["pfn"], "request.pfn"),
    )


def encode_fault(answer: int | Fault) -> dict[str, Any]:
    """A PROBE answer as JSON data: ``{"pa": n}`` or ``{"fault": {kind, va, access}}``."""
    if isinstance(answer, Fault):
        kind, va, access = answer.kind.value, answer.va, answer.access.value
        return {"fault": {"kind": kind, "va": va, "access": access}}
    return {"pa": answer}


def decode_fault(data: object) -> int | Fault:
    """A PROBE answer from JSON data."""
    fields = _is(data, dict, "probe")
    if "pa" in fields:
        return _int(fields["pa"], "probe.pa")
    fault = _map(fields.get("fault"), "probe.fault", ("kind", "va", "access"))
    return Fault(
        TrapKind(fault["kind"]), _int(fault["va"], "probe.fault.va"), Access(fault["access"])
    )


# -- programs and images ---------------------------------------------------------------------


def encode_program(program: Program) -> dict[str, Any]:
    """A Program as JSON data (its words, not its assembly)."""
    return {
        "name": program.name,
        "text": list(program.text),
        "data": list(program.data),
        "heap_pages": program.heap_pages,
        "stack_pages": program.stack_pages,
        "max_heap_pages": program.max_heap_pages,
        "max_stack_pages": program.max_stack_pages,
        "stack_reach": program.stack_reach,
        "entry": program.entry,
        "shared": [dataclasses.asdict(segment) for segment in program.shared],
    }


def decode_program(data: object, where: str = "program") -> Program:
    """A Program from JSON data."""
    fields = _map(data, where, ("name", "text"))
    shared = tuple(
        SharedSegment(
            _str(seg["name"], f"{where}.shared.name"),
            _int(seg["vpn"], f"{where}.shared.vpn"),
            _int(seg["pages"], f"{where}.shared.pages"),
            _bool(seg.get("writable", True), f"{where}.shared.writable"),
        )
        for seg in (
            _map(s, f"{where}.shared", ("name", "vpn", "pages"))
            for s in _seq(fields.get("shared", []), f"{where}.shared")
        )
    )
    return Program(
        _str(fields["name"], f"{where}.name"),
        tuple(_int(w, f"{where}.text") for w in _seq(fields["text"], f"{where}.text")),
        tuple(_int(w, f"{where}.data") for w in _seq(fields.get("data", []), f"{where}.data")),
        heap_pages=_int(fields.get("heap_pages", 0), f"{where}.heap_pages"),
        stack_pages=_int(fields.get("stack_pages", 1), f"{where}.stack_pages"),
        entry=_int(fields.get("entry", 0), f"{where}.entry"),
        shared=shared,
        max_heap_pages=_optional_int(fields, "max_heap_pages", where),
        max_stack_pages=_optional_int(fields, "max_stack_pages", where),
        stack_reach=_int(fields.get("stack_reach", DEFAULT_STACK_REACH), f"{where}.stack_reach"),
    )


def _optional_int(fields: Mapping[str, Any], key: str, where: str) -> int | None:
    """``fields[key]`` as an integer, or None when missing or null."""
    value = fields.get(key)
    return None if value is None else _int(value, f"{where}.{key}")


def encode_image(image: Image) -> dict[str, Any]:
    """An installed Image as JSON data."""
    return {
        "program": encode_program(image.program),
        "first": image.first,
        "page_words": image.page_words,
    }


def decode_image(data: object) -> Image:
    """An Image from JSON data."""
    fields = _map(data, "image", ("program", "first", "page_words"))
    return Image(
        decode_program(fields["program"], "image.program"),
        _int(fields["first"], "image.first"),
        _int(fields["page_words"], "image.page_words"),
    )


def encode_file(file: DiskFile) -> dict[str, Any]:
    """A file of the disk's directory as JSON data."""
    return {"name": file.name, "first": file.first, "pages": file.pages}


def decode_file(data: object) -> DiskFile:
    """A DiskFile from JSON data."""
    fields = _map(data, "file", ("name", "first", "pages"))
    return DiskFile(
        _str(fields["name"], "file.name"),
        _int(fields["first"], "file.first"),
        _int(fields["pages"], "file.pages"),
    )


# -- what a kernel returns ---------------------------------------------------------------------


_EVENT_FIELDS = tuple(field.name for field in dataclasses.fields(KernelEvent))


def encode_events(events: Sequence[KernelEvent]) -> list[dict[str, Any]]:
    """Events as JSON data (their fields are plain values: no deep copy is needed)."""
    return [{name: getattr(event, name) for name in _EVENT_FIELDS} for event in events]


def decode_events(data: object, where: str = "events") -> tuple[KernelEvent, ...]:
    """Events from JSON data (at most 10,000 of them)."""
    return tuple(
        KernelEvent(
            _str(e["kind"], f"{where}.kind", 100),
            _opt_int(e.get("pid"), f"{where}.pid"),
            _opt_int(e.get("vpn"), f"{where}.vpn"),
            _opt_int(e.get("pfn"), f"{where}.pfn"),
            _str(e.get("detail", ""), f"{where}.detail", 1000),
        )
        for e in (_map(item, where, ("kind",)) for item in _seq(data, where, 10_000))
    )


def check_events(events: object, where: str = "events") -> tuple[KernelEvent, ...]:
    """The events a kernel call returned, if they are a sequence of well-formed KernelEvents."""
    items = _seq(events, where, 10_000)
    for item in items:
        _is(item, KernelEvent, where)
    if all(_plain_event(item) for item in items):
        # What decoding their encoding gives, built without the round trip: new events
        # (the kernel keeps no hold on what was checked) of the same fields.
        return tuple(KernelEvent(e.kind, e.pid, e.vpn, e.pfn, e.detail) for e in items)
    return decode_events(encode_events(items), where)


def _plain_event(event: KernelEvent) -> bool:
    """Whether ``event`` is a KernelEvent of plain, in-range fields: a subset of what
    decoding accepts, and decoded unchanged."""
    return (
        type(event) is KernelEvent
        and type(event.kind) is str
        and len(event.kind) <= 100
        and (event.pid is None or _word(event.pid))
        and (event.vpn is None or _word(event.vpn))
        and (event.pfn is None or _word(event.pfn))
        and type(event.detail) is str
        and len(event.detail) <= 1000
    )


def encode_spawned(outcome: int | SpawnRefused) -> dict[str, Any]:
    """A spawn outcome as JSON data: ``{"pid": n}`` or ``{"refused": reason}``."""
    if isinstance(outcome, SpawnRefused):
        return {"refused": outcome.reason}
    return {"pid": outcome}


def decode_spawned(data: object) -> int | SpawnRefused:
    """A spawn outcome from JSON data."""
    fields = _is(data, dict, "spawn()")
    if "refused" in fields:
        return SpawnRefused(_str(fields["refused"], "spawn().refused", 1000))
    return _int(fields.get("pid"), "spawn().pid", 0, 1 << 31)


def check_spawned(outcome: object) -> int | SpawnRefused:
    """What ``spawn`` returned, if it is a pid or a SpawnRefused."""
    if isinstance(outcome, SpawnRefused):
        return SpawnRefused(_str(outcome.reason, "spawn() refusal", 1000))
    return _int(outcome, "spawn() result (a pid or SpawnRefused)", 0, 1 << 31)


def check_fingerprint(digest: object) -> bytes:
    """What ``fingerprint`` returned, if it is bytes (at most 1 MB)."""
    if not isinstance(digest, bytes) or len(digest) > 1 << 20:
        raise InterfaceError(f"fingerprint(): expected bytes, got {quote(digest)}")
    return digest


def copy_check(original: object) -> Callable[[object], Any]:
    """A check of what ``original.copy()`` returned: another object with the same hooks.
    A kernel returning itself would let two explored states share one kernel."""

    def check(clone: object) -> Any:
        if clone is original:
            raise InterfaceError("copy(): returned the kernel itself, not an independent copy")
        if type(clone) is not type(original):
            raise InterfaceError(
                f"copy(): returned a {type(clone).__name__}, not a {type(original).__name__}: "
                "a copy of a subclass must keep its class, or it loses the overrides"
            )
        missing = [
            name for name in ("dispatch", "on_trap", "view", "copy") if not hasattr(clone, name)
        ]
        if missing:
            raise InterfaceError(f"copy(): returned {quote(clone)}, which has no {missing[0]}()")
        return clone

    return check


def check_runnable(pids: object) -> tuple[int, ...]:
    """What ``runnable`` returned, if it is a sequence of distinct pids."""
    items = tuple(_int(pid, "runnable()", 0, 1 << 31) for pid in _seq(pids, "runnable()", 10_000))
    if len(set(items)) != len(items):
        raise InterfaceError(f"runnable(): {quote(items)} names a pid twice")
    return items


def _location(data: object, where: str) -> Location:
    fields = _map(data, where, ("where",))
    kind: Literal["frame", "slot", "image", "zero"] = _choice(
        fields["where"], f"{where}.where", ["frame", "slot", "image", "zero"]
    )
    return Location(kind, _int(fields.get("index", 0), f"{where}.index"))


def _users(data: object, where: str) -> tuple[tuple[int, int], ...]:
    pairs = (_seq(p, where, 2) for p in _seq(data, where))
    return tuple((_int(p[0], where), _int(p[1], where)) for p in pairs if len(p) == 2)


def _transfer(data: object, where: str) -> Any:
    return None if data is None else _choice(data, where, ["read", "write"])


def _page(data: object, where: str) -> PageView:
    fields = _map(data, where, ("vpn", "prot", "kind", "home"))
    key = fields.get("shared_key")
    return PageView(
        _int(fields["vpn"], f"{where}.vpn"),
        _int(fields["prot"], f"{where}.prot"),
        _choice(fields["kind"], f"{where}.kind", sorted(_KINDS)),
        _location(fields["home"], f"{where}.home"),
        None if key is None else _str(key, f"{where}.shared_key", 200),
        _int(fields.get("index", 0), f"{where}.index"),
    )


def _process(data: object, where: str) -> ProcessView:
    fields = _map(data, where, ("pid", "asid", "state", "root", "pages", "context", "faulting"))
    context = fields["context"]
    return ProcessView(
        _int(fields["pid"], f"{where}.pid", 0, 1 << 31),
        _int(fields["asid"], f"{where}.asid", 0, 1 << 31),
        _choice(fields["state"], f"{where}.state", ["ready", "running", "blocked", "exited"]),
        _int(fields["root"], f"{where}.root"),
        tuple(_page(p, f"{where}.pages") for p in _seq(fields["pages"], f"{where}.pages")),
        None if context is None else decode_state(context, f"{where}.context"),
        _bool(fields["faulting"], f"{where}.faulting"),
    )


def _frame(data: object, where: str) -> FrameView:
    fields = _map(data, where, ("pfn", "status", "refcount", "users", "transfer"))
    return FrameView(
        _int(fields["pfn"], f"{where}.pfn"),
        _choice(fields["status"], f"{where}.status", ["free", "in_use", "busy"]),
        _int(fields["refcount"], f"{where}.refcount"),
        _users(fields["users"], f"{where}.users"),
        _transfer(fields["transfer"], f"{where}.transfer"),
    )


def _slot(data: object, where: str) -> SlotView:
    fields = _map(data, where, ("slot", "refcount", "users", "transfer"))
    return SlotView(
        _int(fields["slot"], f"{where}.slot"),
        _int(fields["refcount"], f"{where}.refcount"),
        _users(fields["users"], f"{where}.users"),
        _transfer(fields["transfer"], f"{where}.transfer"),
    )


def _file(data: object, where: str) -> FileView:
    fields = _map(data, where, ("name", "index", "home"))
    return FileView(
        _str(fields["name"], f"{where}.name", 200),
        _int(fields["index"], f"{where}.index"),
        _location(fields["home"], f"{where}.home"),
    )


def _encode_location(home: Location) -> dict[str, Any]:
    return {"where": home.where, "index": home.index}


def encode_view(view: KernelView) -> dict[str, Any]:
    """A KernelView as JSON data."""
    return {
        "processes": [
            {
                "pid": p.pid,
                "asid": p.asid,
                "state": p.state,
                "root": p.root,
                "pages": [
                    {
                        "vpn": page.vpn,
                        "prot": page.prot,
                        "kind": page.kind,
                        "home": _encode_location(page.home),
                        "shared_key": page.shared_key,
                        "index": page.index,
                    }
                    for page in p.pages
                ],
                "context": None if p.context is None else encode_state(p.context),
                "faulting": p.faulting,
            }
            for p in view.processes
        ],
        "frames": [
            {
                "pfn": f.pfn,
                "status": f.status,
                "refcount": f.refcount,
                "users": [list(user) for user in f.users],
                "transfer": f.transfer,
            }
            for f in view.frames
        ],
        "free_frames": list(view.free_frames),
        "slots": [
            {
                "slot": s.slot,
                "refcount": s.refcount,
                "users": [list(user) for user in s.users],
                "transfer": s.transfer,
            }
            for s in view.slots
        ],
        "free_slots": list(view.free_slots),
        "current": view.current,
        "files": [
            {"name": f.name, "index": f.index, "home": _encode_location(f.home)} for f in view.files
        ],
    }


def decode_view(data: object) -> KernelView:
    """A KernelView from JSON data, every field checked."""
    fields = _map(
        data, "view()", ("processes", "frames", "free_frames", "slots", "free_slots", "current")
    )

    def each(key: str, decode: Callable[[object, str], T]) -> tuple[T, ...]:
        return tuple(decode(item, f"view().{key}") for item in _seq(fields[key], f"view().{key}"))

    return KernelView(
        each("processes", _process),
        each("frames", _frame),
        tuple(_int(p, "view().free_frames") for p in _seq(fields["free_frames"], "free_frames")),
        each("slots", _slot),
        tuple(_int(s, "view().free_slots") for s in _seq(fields["free_slots"], "free_slots")),
        _opt_int(fields["current"], "view().current"),
        tuple(_file(f, "view().files") for f in _seq(fields.get("files", []), "view().files")),
    )


_STATES = frozenset({"ready", "running", "blocked", "exited"})
_KINDS = frozenset(get_args(PageKind))
_WHERES = frozenset({"frame", "slot", "image", "zero"})
_STATUSES = frozenset({"free", "in_use", "busy"})
_TRANSFERS = frozenset({None, "read", "write"})


def _word(value: object) -> bool:
    return type(value) is int and 0 <= value <= WORD_MAX


def _tuple_of(value: object, test: Callable[[object], bool]) -> bool:
    return isinstance(value, tuple) and all(test(item) for item in value)


def _user(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and _word(value[0]) and _word(value[1])


def _page_ok(page: object) -> bool:
    return (
        isinstance(page, PageView)
        and _word(page.vpn)
        and _word(page.prot)
        and page.kind in _KINDS
        and isinstance(page.home, Location)
        and page.home.where in _WHERES
        and _word(page.home.index)
        and (page.shared_key is None or isinstance(page.shared_key, str))
        and _word(page.index)
    )


def _file_ok(f: object) -> bool:
    return (
        isinstance(f, FileView)
        and isinstance(f.name, str)
        and _word(f.index)
        and isinstance(f.home, Location)
        and f.home.where in _WHERES
        and _word(f.home.index)
    )


def _process_ok(p: object) -> bool:
    return (
        isinstance(p, ProcessView)
        and _word(p.pid)
        and _word(p.asid)
        and p.state in _STATES
        and _word(p.root)
        and _tuple_of(p.pages, _page_ok)
        and (p.context is None or isinstance(p.context, ArchState))
        and isinstance(p.faulting, bool)
    )


def _frame_ok(f: object) -> bool:
    return (
        isinstance(f, FrameView)
        and _word(f.pfn)
        and f.status in _STATUSES
        and _word(f.refcount)
        and _tuple_of(f.users, _user)
        and f.transfer in _TRANSFERS
    )


def _slot_ok(s: object) -> bool:
    return (
        isinstance(s, SlotView)
        and _word(s.slot)
        and _word(s.refcount)
        and _tuple_of(s.users, _user)
        and s.transfer in _TRANSFERS
    )


def _state_ok(state: object) -> bool:
    """Whether ``state`` is an ArchState made of plain ints in range: a subset of what
    :func:`check_state` accepts, tested without building a copy (anything else is
    left to check_state)."""
    return (
        type(state) is ArchState
        and type(state.regs) is tuple
        and len(state.regs) == REGISTERS
        and all(_word(r) for r in state.regs)
        and _word(state.pc)
        and type(state.flags) is int
        and 0 <= state.flags <= 3
    )


def check_view(view: object) -> KernelView:
    """What ``view`` returned, if it is a well-formed KernelView (checked field by field,
    quickly: a kernel's view is checked after every step)."""
    view = _is(view, KernelView, "view()")
    parts: tuple[tuple[str, object, Callable[[object], bool]], ...] = (
        ("processes", view.processes, _process_ok),
        ("frames", view.frames, _frame_ok),
        ("free_frames", view.free_frames, _word),
        ("slots", view.slots, _slot_ok),
        ("free_slots", view.free_slots, _word),
        ("files", view.files, _file_ok),
    )
    for name, value, test in parts:
        if not isinstance(value, tuple):
            raise InterfaceError(f"view().{name}: {quote(value)} is not a tuple")
        for item in value:
            if not test(item):
                raise InterfaceError(f"view().{name}: {quote(item)} is malformed")
    for process in view.processes:
        if process.context is not None and not _state_ok(process.context):
            check_state(process.context, f"view() process {process.pid} context")
    if view.current is not None and not _word(view.current):
        raise InterfaceError(f"view().current: {quote(view.current)} is not a pid")
    return view


# -- where a kernel failed ----------------------------------------------------------------

#: The most frames of a kernel's traceback kept (the innermost).
TRACEBACK_FRAMES = 20
#: Modules that are pagingcheck's, not the kernel's: the hardware and the checks.
_OWN = ("pagingcheck.model.", "pagingcheck.checks.")


def kernel_frames(error: BaseException, skip_file: str = "") -> list[traceback.FrameSummary]:
    """The frames of ``error``'s traceback in the kernel's own code (not the hardware
    model's, the checks' or the file ``skip_file``), outermost first."""
    kept = []
    for frame, line in traceback.walk_tb(error.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith(_OWN) or frame.f_code.co_filename == skip_file:
            continue
        kept.append(traceback.FrameSummary(frame.f_code.co_filename, line, frame.f_code.co_name))
    return kept


def kernel_site(error: BaseException, skip_file: str = "") -> str:
    """'file:line in function' of the innermost frame of the kernel's code, or ''."""
    frames = kernel_frames(error, skip_file)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def kernel_traceback(error: BaseException, skip_file: str = "") -> str:
    """The kernel's part of ``error``'s traceback, as Python prints one (its innermost
    :data:`TRACEBACK_FRAMES` frames, then the exception), or '' if none of it is the
    kernel's."""
    frames = kernel_frames(error, skip_file)[-TRACEBACK_FRAMES:]
    if not frames:
        return ""
    lines = traceback.format_list(frames)
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip("\n")
