"""A state in words, for a person reading a failure: the CPU, the TLB, the console, the
user frames and one process's page-table entries, as ``replay`` prints them at the failing step.

What the hardware holds (registers, TLB entries, PTE words read from memory) is shown
beside what the kernel says (its frame table, the pages of its process table), since a
failure is often exactly where the two part.
"""

from __future__ import annotations

from pagingcheck.checks.observe import Observed, printed
from pagingcheck.model.isa import ArchState


def describe_state(observed: Observed, pid: int | None) -> list[str]:
    """The state ``observed`` in lines of text; ``pid``'s page-table entries when given
    (the process the failing step ran, or the one on the CPU)."""
    lines = [f"cpu: {_registers(observed.machine.cpu.state)}", *_tlb(observed)]
    if observed.machine.console:
        lines.append(f"console: {printed(observed.machine.console)}")
    lines += _frames(observed)
    if pid is not None:
        lines += _ptes(observed, pid)
    return lines


def _registers(state: ArchState) -> str:
    regs = " ".join(f"r{index}={value:#x}" for index, value in enumerate(state.regs))
    return f"pc={state.pc:#x} flags={state.flags:#x} {regs}"


def _tlb(observed: Observed) -> list[str]:
    entries = observed.machine.mmu.tlb.entries()
    if not entries:
        return ["tlb: empty"]
    return [
        f"tlb: asid {entry.asid} vpn {entry.vpn} -> pte {entry.pte:#x} (read from {entry.pte_addr})"
        for entry in entries
    ]


def _frames(observed: Observed) -> list[str]:
    """Each user frame as the kernel's frame table has it, and who maps it in the tables."""
    view = observed.view
    lines = [f"free frames: {list(view.free_frames)}; free slots: {list(view.free_slots)}"]
    for frame in view.frames:
        users = ", ".join(f"{pid}:{vpn}" for pid, vpn in frame.users) or "none"
        mapped = ", ".join(
            f"{pid}:{vpn}" for pid, vpn in sorted(observed.mappers.get(frame.pfn, ()))
        )
        transfer = f", {frame.transfer} in flight" if frame.transfer else ""
        lines.append(
            f"frame {frame.pfn}: {frame.status}, refcount {frame.refcount}, users {users}"
            f"{transfer}; mapped by PTEs of {mapped or 'none'}"
        )
    return lines


def _ptes(observed: Observed, pid: int) -> list[str]:
    """``pid``'s valid pages: the PTE word in its table, the frame it maps, and where the
    kernel says the page's contents are."""
    process = next((p for p in observed.view.processes if p.pid == pid), None)
    if process is None:
        return [f"process {pid}: not in the kernel's process table"]
    lines = [f"process {pid} ({process.state}, asid {process.asid}, table root {process.root}):"]
    for page in process.pages:
        word = observed.pte(pid, page.vpn)
        frame = observed.resident(pid, page.vpn)
        pte = "no entry" if word is None else f"pte {word:#x}"
        maps = f"-> frame {frame}" if frame is not None else "not present"
        home = "zeros" if page.home.where == "zero" else f"{page.home.where} {page.home.index}"
        lines.append(f"  vpn {page.vpn}: {pte} {maps}; the kernel says it is in {home}")
    return lines
