"""A trace as a page to look at: one self-contained HTML file per trace.

The trace is replayed, and the state after each step (the boot state first) is
taken as a plain record: the processes and their page tables (the PTE word read
from memory, the frame it maps, where the kernel says the page is), the user
frames with their status, users and transfer, the TLB, the disk's queue, the
CPU and the console. The page holds those records as JSON and a small script
that draws one step at a time, marks what changed since the step before, and
moves with the keyboard. Nothing is fetched from the network, and every string
from the trace reaches the page as text, never as markup.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from pagingcheck.checks import traces
from pagingcheck.checks.observe import Observed, printed
from pagingcheck.checks.runner import KernelFactory, RunResult
from pagingcheck.model.errors import UserError


def snapshot(observed: Observed) -> dict[str, Any]:
    """The state ``observed`` as plain data for the page."""
    machine, view = observed.machine, observed.view
    cpu = machine.cpu.state
    return {
        "current": view.current,
        "cpu": {"pc": cpu.pc, "flags": cpu.flags, "regs": list(cpu.regs)},
        "processes": [_process(observed, proc.pid) for proc in view.processes],
        "frames": [
            {
                "pfn": frame.pfn,
                "status": str(frame.status),
                "refcount": frame.refcount,
                "users": [f"{pid}:{vpn}" for pid, vpn in frame.users],
                "mapped": [f"{p}:{v}" for p, v in sorted(observed.mappers.get(frame.pfn, ()))],
                "transfer": frame.transfer or "",
            }
            for frame in view.frames
        ],
        "free_frames": list(view.free_frames),
        "free_slots": list(view.free_slots),
        "tlb": [
            {"asid": e.asid, "vpn": e.vpn, "pte": f"{e.pte:#x}", "from": e.pte_addr}
            for e in machine.mmu.tlb.entries()
        ],
        "disk": [
            {"id": r.id, "op": r.op, "block": r.block, "pfn": r.pfn} for r in observed.requests
        ],
        "console": printed(machine.console) if machine.console else "",
    }


def _process(observed: Observed, pid: int) -> dict[str, Any]:
    proc = observed.view.process(pid)
    assert proc is not None
    pages = []
    for page in proc.pages:
        word = observed.pte(pid, page.vpn)
        home = page.home
        pages.append(
            {
                "vpn": page.vpn,
                "pte": "" if word is None else f"{word:#x}",
                "frame": observed.resident(pid, page.vpn),
                "home": "zeros" if home.where == "zero" else f"{home.where} {home.index}",
            }
        )
    return {
        "pid": pid,
        "state": str(proc.state),
        "asid": proc.asid,
        "root": proc.root,
        "pages": pages,
    }


def page(trace: traces.Trace, result: RunResult, states: list[dict[str, Any]], name: str) -> str:
    """The HTML page of ``trace`` replayed as ``result``, the state after each step in
    ``states`` (the boot state first), titled ``name``."""
    steps = [
        {"choice": traces.spell(record.choice), "what": traces.happened(record)}
        for record in result.records
    ]
    violation = result.violation
    data = {
        "name": name,
        "implementation": trace.implementation,
        "steps": steps,
        "states": states,
        "failing": result.failing_step,
        "violation": None
        if violation is None
        else {"property": violation.property, "why": violation.explain()},
        "fair_from": trace.fair_from,
    }
    # Inside a script element only "</" can end it early: escaped, the JSON is unchanged.
    payload = json.dumps(data).replace("</", "<\\/")
    template = files("pagingcheck.checks").joinpath("viewer.html").read_text()
    return template.replace("{{title}}", html.escape(name)).replace("{{data}}", payload)


def render(trace: traces.Trace, factory: KernelFactory, name: str) -> tuple[str, RunResult]:
    """Replay ``trace`` on ``factory``'s kernel and draw it: the page and the replay."""
    result, states = replayed(trace, factory)
    return page(trace, result, states, name), result


def replayed(trace: traces.Trace, factory: KernelFactory) -> tuple[RunResult, list[dict[str, Any]]]:
    """Replay ``trace`` on ``factory``'s kernel: the result, and each state on the way."""
    states: list[dict[str, Any]] = []

    def watch(observed: Observed) -> None:
        states.append(snapshot(observed))

    return traces.replay(trace, factory, watch), states


def write(text: str, path: Path) -> Path:
    """Write the page ``text`` to ``path`` (a clear error when it cannot be written)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot write the page: {error.strerror}") from None
    return path


def beside(trace_path: Path) -> Path:
    """Where a trace's page goes by default: the trace's own name, ending ``.html``."""
    return trace_path.with_suffix(".html")


def write_trace(trace: traces.Trace, directory: Path, stem: str, factory: KernelFactory) -> Path:
    """Write ``trace`` as :func:`~pagingcheck.checks.traces.write` does, and its page beside
    it (the trace replayed on ``factory``'s kernel); return the trace's path. The replay
    comes first: once the trace is there (a run interrupted then reports it), only a
    file write is left."""
    result, states = replayed(trace, factory)
    path = traces.write(trace, directory, stem)
    write(page(trace, result, states, path.name), beside(path))
    return path
