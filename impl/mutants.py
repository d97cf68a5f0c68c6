"""Seeded-bug kernels: the reference kernel with one classic paging bug each.

They live beside the correct kernel so the checks can show they catch each
bug: ``pagingcheck mutants`` runs the checker on every one and expects
every one to be killed, by the property named in :attr:`Mutant.expected`.

A mutant is the reference kernel plus a few **patches**: replacements for
functions of the kernel's modules (or methods of its classes) that are in
force only while one of the mutant's hooks runs. Hooks run atomically, one
at a time, so a patch never leaks into another kernel. Each patch is a
small wrapper around the correct function, so the bug is visible in a few
lines.

Every mutant runs with the reference kernel's internal guards off (its
protocol operations apply whatever they are asked to, as a kernel written
without such checks would), so what catches a bug is the checker, never the
kernel's own assertions. Three kinds:

* the classic bugs, each caught by the invariant or step property it breaks;
* **laundered** twins of the bookkeeping bugs: the same bug, with a view
  made self-consistent (:func:`launder`), as a kernel that reports what it
  believes would give; what catches them is the hardware (page tables, TLB,
  the disk's queue), progress, or leaks;
* **refinement-only** bugs that keep every record consistent and corrupt
  only data, which nothing but refinement can see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import FrameView, Kernel, KernelView, SlotView
from pagingcheck.impl.lib import framestate, restart, vm
from pagingcheck.impl.lib.restart import back_up
from pagingcheck.impl.reference import fault, process
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.impl.reference.tables import FaultRecord, PageId, Tables
from pagingcheck.model import bits, isa
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import SBRK_FAILED, WORD_MASK, WRITE_FAILED, ArchState
from pagingcheck.model.port import Port
from pagingcheck.model.program import signed
from pagingcheck.model.traps import Access, Fault

Patch = tuple[object, str, Callable[[Callable[..., Any]], Callable[..., Any]]]


@dataclass(frozen=True)
class Mutant:
    """One seeded bug: what is wrong, what must catch it, and where it needs to run."""

    name: str
    bug: str
    expected: str
    patches: tuple[Patch, ...]
    hardware: dict[str, Any] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)
    laundered: bool = False  # the view is made self-consistent (see launder)
    # Programs (by name) to boot instead of the configuration's initial processes, where
    # the configuration has them all: the workload that reaches the buggy code soonest.
    boots: tuple[str, ...] = ()
    # Programs (by name) left out of the workload: neither booted nor spawned.
    leaves_out: tuple[str, ...] = ()


@contextmanager
def patched(patches: tuple[Patch, ...]) -> Iterator[None]:
    """Install each patch (a wrapper of the original) for the duration of the block."""
    saved = []
    try:
        for owner, name, wrap in patches:
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, wrap(original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


_HOOKS = ("boot", "spawn", "dispatch", "on_trap", "on_disk", "on_timer", "kill")


class MutantKernel(ReferenceKernel):
    """The reference kernel, guards off, with a mutant's patches in force during every hook."""

    mutant: Mutant

    def __init__(self, hardware: HardwareConfig, kernel: KernelConfig, mutant: Mutant) -> None:
        super().__init__(hardware, kernel)
        self.t.guarded = False
        self.mutant = mutant

    def view(self) -> KernelView:
        """The reference kernel's view, laundered for a laundered mutant."""
        seen = super().view()
        return launder(seen) if self.mutant.laundered else seen

    def __getstate__(self) -> dict[str, Any]:
        # The mutant by name: its patches hold modules, which do not pickle.
        return {**self.__dict__, "mutant": self.mutant.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "mutant": BY_NAME[state["mutant"]]})


def _hooked(name: str) -> Callable[..., Any]:
    def hook(self: MutantKernel, *args: Any) -> Any:
        with patched(self.mutant.patches):
            return getattr(ReferenceKernel, name)(self, *args)

    hook.__name__ = name
    hook.__doc__ = f"The reference kernel's {name}, with the mutant's bug in force."
    return hook


for _name in _HOOKS:
    setattr(MutantKernel, _name, _hooked(_name))


def launder(view: KernelView) -> KernelView:
    """``view`` made consistent with itself, hiding what its own parts would betray.

    The free lists lose duplicates; a frame on the free list is shown free,
    one with users in use, and every reference count is the number of users
    listed (each once); a slot on the free list is not listed as allocated.
    What is left to catch a bug is what the hardware shows and what the
    kernel goes on to do.
    """
    free_frames = tuple(sorted(set(view.free_frames)))
    free_slots = tuple(sorted(set(view.free_slots)))
    frames = []
    for frame in view.frames:
        users = tuple(dict.fromkeys(frame.users))
        if frame.pfn in free_frames:
            frames.append(FrameView(frame.pfn, "free", 0, (), frame.transfer))
            continue
        status = "in_use" if users else frame.status
        frames.append(FrameView(frame.pfn, status, len(users), users, frame.transfer))
    slots = tuple(
        SlotView(slot.slot, len(set(slot.users)), tuple(dict.fromkeys(slot.users)), slot.transfer)
        for slot in view.slots
        if slot.slot not in free_slots
    )
    return dataclasses.replace(
        view, frames=tuple(frames), free_frames=free_frames, slots=slots, free_slots=free_slots
    )


# -- the bugs ------------------------------------------------------------------------------


def _free_list_add(t: Tables, pfn: int) -> None:
    t.fs = dataclasses.replace(t.fs, free={**t.fs.free, pfn: True})


def _release_frame_at_pagein(original: Callable[..., None]) -> Callable[..., None]:
    def start_pagein(t: Tables, port: Port, pfn: int, *args: Any, **kw: Any) -> None:
        original(t, port, pfn, *args, **kw)
        if pfn in t.transfers:  # BUG: the frame goes back on the free list mid-transfer
            _free_list_add(t, pfn)

    return start_pagein


def _free_shared_frame_early(original: Callable[..., None]) -> Callable[..., None]:
    def drop_mapping(t: Tables, port: Port, pfn: int, *args: Any) -> None:
        original(t, port, pfn, *args)
        if t.users(pfn):  # BUG: freed at the first exit though others still map it
            _free_list_add(t, pfn)

    return drop_mapping


def _leak_frame_at_exit(original: Callable[..., None]) -> Callable[..., None]:
    def drop_mapping(
        t: Tables, port: Port, pfn: int, user: tuple[int, int], page: PageId, survives: bool
    ) -> None:
        if survives or len(t.users(pfn)) > 1:
            original(t, port, pfn, user, page, survives)
            return
        # BUG: the last mapping goes, but the frame is never given back to the free list
        t.unmap_user(port, pfn, user, "evict_user")
        t.set_record(page, frame=None, dirty=False)
        t.policy.removed(pfn)

    return drop_mapping


def _keep_side_effects(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(t: Tables, context: ArchState, record: FaultRecord) -> ArchState:
        if t.config.restart == "precise":
            return original(t, context, record)
        # BUG: the PC goes back, but the auto-increment/decrement is not undone
        return dataclasses.replace(context, pc=record.fault_pc)

    return backup


def _undo_first_effect_only(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(t: Tables, context: ArchState, record: FaultRecord) -> ArchState:
        if t.config.restart != "decode":
            return original(t, context, record)
        # BUG: the decoder stops at the source operand and misses the destination's change
        return back_up(context, record.fault_pc, record.undo[:1])

    return backup


def locate_blames_first_push(original: Callable[..., Any]) -> Callable[..., Any]:
    """``restart.locate_fault`` taking a PUSHM's first write for the one that faulted, as a
    decoder written for instructions that write once would. The kernel mutant
    ``decode_blames_first_push`` and the backup proofs' mutant of the same bug share it."""

    def locate_fault(fault_pc: int, state: ArchState, probe: restart.Probe) -> Any:
        found = original(fault_pc, state, probe)
        if found is None or found.fault_point != "push" or found.instruction is None:
            return found
        # BUG: a decoder written for one write per instruction blames the first write
        start = back_up(state, fault_pc, ())
        writes = isa.accesses(found.instruction, start)
        first = next(va for point, va, _ in writes if point == "push")
        return dataclasses.replace(found, fault=Fault(found.fault.kind, first, Access.WRITE))

    return locate_fault


def _precise_pc_minus_one(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(t: Tables, context: ArchState, record: FaultRecord) -> ArchState:
        restored = original(t, context, record)
        if t.config.restart != "precise":
            return restored
        # BUG: treats the saved PC as pointing past the instruction and steps it back
        return dataclasses.replace(restored, pc=(restored.pc - 1) & WORD_MASK)

    return backup


def _no_flush(original: Callable[..., None]) -> Callable[..., None]:
    def flush(port: Port) -> None:
        """BUG: the kernel's TLB flush does nothing."""

    return flush


def _no_invalidate(original: Callable[..., None]) -> Callable[..., None]:
    def invalidate(port: Port, space: vm.Space, vpn: int) -> None:
        """BUG: PTE edits leave the old TLB entry in place."""

    return invalidate


def _dirty_as_clean(original: Callable[..., Any]) -> Callable[..., Any]:
    def choose_frame(*args: Any) -> Any:
        chosen = original(*args)
        if chosen is not None and chosen[1] is not None:
            # BUG: the victim's modified bit is ignored: no write-back
            return chosen[0], dataclasses.replace(chosen[1], dirty=False)
        return chosen

    return choose_frame


def _free_shared_slot_early(original: Callable[..., None]) -> Callable[..., None]:
    def drop_slot_user(self: Tables, slot: int, user: tuple[int, int]) -> None:
        original(self, slot, user)
        if self.ss.refcount[slot]:  # BUG: the slot is freed at the first user's exit
            self.ss = dataclasses.replace(self.ss, free={**self.ss.free, slot: True})

    return drop_slot_user


def _evict_first_mapping_only(original: Callable[..., None]) -> Callable[..., None]:
    def evict(t: Tables, port: Port, victim: fault.Victim) -> None:
        if len(victim.users) > 1:
            # BUG: only the first process's PTE is invalidated; the others keep theirs
            for user in victim.users[1:]:
                _, t.fs = framestate.evict_user(t.fs, victim.pfn, user)
            victim = dataclasses.replace(victim, users=victim.users[:1])
        original(t, port, victim)

    return evict


def _map_kernel_frame(original: Callable[..., None]) -> Callable[..., None]:
    def map_user(self: Tables, port: Port, pfn: int, user: tuple[int, int], **kw: Any) -> None:
        original(self, port, pfn, user, **kw)
        pid, vpn = user
        proc = self.process(pid)
        # BUG: the frame number is written relative to the user pool, not absolute
        entry = self.editor.walk(port, proc.root, proc.asid, vpn)
        if entry is not None:
            port.write(entry.pte_addr, bits.with_pfn(entry.pte, pfn - self.config.kernel_frames))
            vm.invalidate(port, proc.space, vpn)

    return map_user


def _double_count_sharer(original: Callable[..., Any]) -> Callable[..., Any]:
    def frame_step(self: Tables, port: Port, pfn: int, name: str, *args: Any) -> Any:
        result = original(self, port, pfn, name, *args)
        if name == "map_user":  # BUG: a second sharer is counted twice
            again = self.fs.counted(pfn, self.fs.refcount[pfn], args[0])
            refcount = {**again.refcount, pfn: again.refcount[pfn] + 1}
            self.fs = dataclasses.replace(again, refcount=refcount)
        return result

    return frame_step


def _skip_install(original: Callable[..., Any]) -> Callable[..., Any]:
    def frame_step(self: Tables, port: Port, pfn: int, name: str, *args: Any) -> Any:
        if name == "install":  # BUG: the page is mapped but the frame stays marked busy
            return self.fs.frame(pfn)
        return original(self, port, pfn, name, *args)

    return frame_step


def _record_left_behind(original: Callable[..., None]) -> Callable[..., None]:
    def install_page(t: Tables, port: Port, pfn: int, page: PageId, users: Any) -> None:
        before = t.record(page)
        original(t, port, pfn, page, users)
        # BUG: the page is mapped, but its record still says where it came from
        t.pages[page] = dataclasses.replace(before, incoming=None)

    return install_page


def _release_slot_left_taken(original: Callable[..., Any]) -> Callable[..., Any]:
    def slot_op(self: Tables, slot: int, name: str, *args: Any) -> Any:
        result = original(self, slot, name, *args)
        if name == "release":  # BUG: the slot goes on the free list but stays marked taken
            self.ss = dataclasses.replace(self.ss, allocated={**self.ss.allocated, slot: True})
        return result

    return slot_op


def _one_slot_for_all(original: Callable[..., Any]) -> Callable[..., Any]:
    def plan_swap(t: Tables, sizing: Any) -> Any:
        planned = original(t, sizing)
        if isinstance(planned, tuple) and planned:  # BUG: the allocator never advances
            return (planned[0],) * len(planned)
        return planned

    return plan_swap


def _zero_fill_swapped_page(original: Callable[..., None]) -> Callable[..., None]:
    def start_pagein(t: Tables, port: Port, pfn: int, page: PageId, *args: Any) -> None:
        if t.record(page).written:
            # BUG: forgets that the page was written out, and zero-fills it
            t.set_record(page, written=False, image=None)
        original(t, port, pfn, page, *args)

    return start_pagein


def _pagein_from_image(original: Callable[..., None]) -> Callable[..., None]:
    def start_pagein(t: Tables, port: Port, pfn: int, page: PageId, *args: Any) -> None:
        if t.record(page).written and t.record(page).image is not None:
            # BUG: reads the page from the program image, not from its swap slot
            t.set_record(page, written=False)
        original(t, port, pfn, page, *args)

    return start_pagein


def _writeback_wrong_slot(original: Callable[..., None]) -> Callable[..., None]:
    def start_writeback(
        t: Tables, port: Port, pfn: int, page: PageId, *args: Any, **kw: Any
    ) -> None:
        own = t.record(page).slot
        others = [slot for slot, _ in t.taken_slots()]
        wrong = next((slot for slot in others if slot != own), own)
        # BUG: the write goes to the first allocated slot, not the page's own
        t.set_record(page, slot=wrong)
        original(t, port, pfn, page, *args, **kw)
        t.set_record(page, slot=own)

    return start_writeback


def _writeback_to_image(original: Callable[..., None]) -> Callable[..., None]:
    def start_writeback(
        t: Tables, port: Port, pfn: int, page: PageId, *args: Any, **kw: Any
    ) -> None:
        image = t.record(page).image
        if image is None:
            original(t, port, pfn, page, *args, **kw)
            return
        # BUG: a modified page is written back to the program image it came from
        t.frame_step(port, pfn, "start_writeback")
        port.submit("write", image, pfn)

    return start_writeback


def _small_asid_counter(original: Callable[..., int]) -> Callable[..., int]:
    def asid_for(t: Tables, pid: int) -> int:
        return pid % 2  # BUG: a one-bit asid counter wraps, and asids are reused

    return asid_for


def _keep_first_space(original: Callable[..., bool]) -> Callable[..., bool]:
    def switch_space(t: Tables, port: Port, proc: Any) -> bool:
        if t.loaded is None:
            return original(t, port, proc)
        return False  # BUG: the MMU is loaded once, and keeps the first process's table

    return switch_space


def _rob_unfinished(original: Callable[..., Any]) -> Callable[..., Any]:
    def least_needed(t: Tables, candidates: list[int], *args: Any) -> Any:
        # BUG: replacement ignores which pages unfinished instructions still need
        return fault.UNPINNED, candidates

    return least_needed


def _laundered(mutant: Mutant, expected: str, boots: tuple[str, ...] | None = None) -> Mutant:
    """The twin of ``mutant`` whose view is made self-consistent (booting ``boots``, if
    given, instead of the programs ``mutant`` boots)."""
    return dataclasses.replace(
        mutant,
        name=f"{mutant.name}_laundered",
        bug=f"{mutant.bug}, with the evidence hidden from the view",
        expected=expected,
        laundered=True,
        boots=mutant.boots if boots is None else boots,
    )


REUSE_BUSY_FRAME = Mutant(
    "reuse_busy_frame",
    "a frame goes back on the free list while its page-in runs",
    "busy_frame_exclusive",
    ((fault, "start_pagein", _release_frame_at_pagein),),
)
FREE_SHARED_FRAME = Mutant(
    "free_shared_frame_at_first_exit",
    "a shared frame is freed when the first of its users exits",
    "freed_at_last_reference",
    ((process, "drop_mapping", _free_shared_frame_early),),
)
FREE_SHARED_SLOT = Mutant(
    "free_shared_slot_early",
    "a shared page's swap slot is freed at the first exit",
    "freed_at_last_reference",
    ((Tables, "drop_slot_user", _free_shared_slot_early),),
    boots=("straddle", "sharer", "sharer"),
)
INSTALL_LEAVES_BUSY = Mutant(
    "install_leaves_frame_busy",
    "a paged-in frame is mapped but stays marked busy",
    "frame_table_agrees",
    ((Tables, "frame_step", _skip_install),),
)
SHARER_COUNTED_TWICE = Mutant(
    "sharer_counted_twice",
    "mapping a resident shared page counts the sharer twice",
    "refcounts_exact",
    ((Tables, "frame_step", _double_count_sharer),),
)
RELEASED_SLOT_LEFT_TAKEN = Mutant(
    "released_slot_left_taken",
    "a released swap slot goes on the free list but stays marked taken",
    "free_lists_clean",
    ((Tables, "slot_op", _release_slot_left_taken),),
)
SLOT_GIVEN_TWICE = Mutant(
    "slot_given_twice",
    "process creation gives every new page the same free swap slot",
    "refcounts_exact",
    ((process, "plan_swap", _one_slot_for_all),),
)


def _grow_past_limit(original: Callable[..., range]) -> Callable[..., range]:
    def stack_growth(
        va: int, sp: int, lowest: int, floor: int, reach: int, page_words: int
    ) -> range:
        # BUG: the stack's size limit is never checked, so it grows down without end
        return original(va, sp, lowest, 0, reach, page_words)

    return stack_growth


def _grow_far_below_sp(original: Callable[..., range]) -> Callable[..., range]:
    def stack_growth(
        va: int, sp: int, lowest: int, floor: int, reach: int, page_words: int
    ) -> range:
        # BUG: any access below the stack grows it, however far below the stack pointer
        return original(va, sp, lowest, floor, WORD_MASK, page_words)

    return stack_growth


def _sbrk_returns_new_break(original: Callable[..., None]) -> Callable[..., None]:
    def sbrk(t: Tables, port: Port, pid: int) -> None:
        original(t, port, pid)
        context = port.context()
        if context.regs[0] != SBRK_FAILED:
            # BUG: r0 gets the new break, not the old one
            moved = context.regs[0] + signed(context.regs[1]) * t.config.page_words
            port.resume(dataclasses.replace(context, regs=(moved, *context.regs[1:])))

    return sbrk


def _putc_prints_r0(original: Callable[..., None]) -> Callable[..., None]:
    def putc(t: Tables, port: Port, pid: int) -> None:
        context = port.context()
        # BUG: the byte is taken from r0, where system calls return results, not from
        # r1, where they take their argument
        port.console_write(context.regs[0] & 0xFF)
        port.resume(context)

    return putc


def _kernel_fault_ignored(original: Callable[..., object]) -> Callable[..., object]:
    def kernel_fault(
        t: Tables, port: Port, pid: int, read: FaultRecord, context: ArchState
    ) -> None:
        # BUG: the call is set to run again, but nothing brings its page in
        port.resume(dataclasses.replace(context, pc=read.fault_pc))

    return kernel_fault


def _write_of_invalid_buffer_succeeds(original: Callable[..., None]) -> Callable[..., None]:
    def write(t: Tables, port: Port, pid: int) -> None:
        original(t, port, pid)
        context = port.context()
        if context.regs[0] == WRITE_FAILED:
            # BUG: a buffer the process cannot read is reported written
            port.resume(dataclasses.replace(context, regs=(context.regs[2], *context.regs[1:])))

    return write


def _read_into_shared_frame(original: Callable[..., int | None]) -> Callable[..., int | None]:
    def own_frame(t: Tables, port: Port, user: tuple[int, int]) -> int | None:
        pte = t.pte_of(port, user)
        # BUG: any resident frame will do, even one a fork still shares copy-on-write (its
        # PTE lacks write): the kernel writes it by its physical address, so no fault says no
        return bits.pfn(pte) if bits.is_present(pte) else None

    return own_frame


def _read_leaves_page_clean(original: Callable[..., int]) -> Callable[..., int]:
    def fill_buffer(t: Tables, port: Port, page: PageId, base: int, count: int) -> int:
        filled = 0
        while filled < count and (byte := port.console_read()) is not None:
            port.write(base + filled, byte)
            filled += 1
        return filled  # BUG: the page is not marked dirty; its PTE's modified bit is clear

    return fill_buffer


def _shrink_keeps_slots(original: Callable[..., None]) -> Callable[..., None]:
    def release_private(t: Tables, port: Port, pid: int, entries: list[Any]) -> None:
        for entry in entries:
            rec = t.record(entry.page)
            user = (pid, entry.vpn)
            if rec.frame is not None and user in t.users(rec.frame):
                fault.drop_mapping(t, port, rec.frame, user, entry.page, False)
        for entry in entries:
            del t.pages[entry.page]  # BUG: the page's swap slot is never released

    return release_private


def _shrink_without_invalidation(original: Callable[..., None]) -> Callable[..., None]:
    def shrink_heap(t: Tables, port: Port, *args: Any) -> None:
        with patched(((vm, "invalidate", _no_invalidate),)):
            # BUG: the pages' PTEs go, but their TLB entries stay
            original(t, port, *args)

    return shrink_heap


def _break_keeps_tlb_entry(original: Callable[..., None]) -> Callable[..., None]:
    def copy_on_write(t: Tables, port: Port, *args: Any) -> None:
        with patched(((vm, "invalidate", _no_invalidate),)):
            # BUG: the writer's PTE moves to its copy, but the TLB keeps the shared frame
            original(t, port, *args)

    return copy_on_write


def _exec_keeps_tlb_entries(original: Callable[..., None]) -> Callable[..., None]:
    def exec_program(t: Tables, port: Port, pid: int) -> None:
        # BUG: the old image's PTEs go, but the TLB keeps their entries, under the asid
        # the new image keeps
        with patched(((vm, "invalidate", _no_invalidate), (vm, "forget", _forget_nothing))):
            original(t, port, pid)

    return exec_program


def _file_page_dropped_unwritten(original: Callable[..., None]) -> Callable[..., None]:
    def drop_mapping(
        t: Tables, port: Port, pfn: int, user: Any, page: PageId, survives: bool
    ) -> None:
        # BUG: a file's page is let go with its last mapping (MUNMAP, exit) as a private
        # page would be: its frame is freed, dirty or not, and the file never gets the writes
        original(t, port, pfn, user, page, survives and not page.owner.startswith("file:"))

    return drop_mapping


def _private_file_writable(original: Callable[..., bool]) -> Callable[..., bool]:
    def copied_on_write(self: Tables, entry: Any) -> bool:
        if entry.kind == "private_file":
            return False  # BUG: a private mapping of a file is mapped writable at once
        return original(self, entry)

    return copied_on_write


def _munmap_keeps_tlb_entry(original: Callable[..., None]) -> Callable[..., None]:
    def munmap(t: Tables, port: Port, pid: int) -> None:
        with patched(((vm, "invalidate", _no_invalidate),)):
            # BUG: the unmapped pages' PTEs go, but the TLB keeps their entries
            original(t, port, pid)

    return munmap


def _forget_nothing(original: Callable[..., None]) -> Callable[..., None]:
    def forget(port: Port, space: Any) -> None:
        pass

    return forget


def _wait_reaps_live_child(original: Callable[..., None]) -> Callable[..., None]:
    def wait(t: Tables, port: Port, pid: int) -> None:
        living = [c.pid for c in t.live() if c.parent == pid]
        children = [c for c in t.processes.values() if c.parent == pid]
        if living and all(c.state != "exited" or c.reaped for c in children):
            # BUG: with no child exited yet, a live one is returned as if it had exited
            context = port.context()
            port.resume(dataclasses.replace(context, regs=(living[0], 0, *context.regs[2:])))
            return
        original(t, port, pid)

    return wait


def _parent_left_asleep(original: Callable[..., None]) -> Callable[..., None]:
    def wake_parent(t: Tables, child: Any) -> None:
        pass  # BUG: a child's exit does not wake its parent asleep in a WAIT

    return wake_parent


def _always_last_sharer(original: Callable[..., bool]) -> Callable[..., bool]:
    def last_sharer(t: Tables, page: Any) -> bool:
        return True  # BUG: the sharers are not counted: every write takes the page over

    return last_sharer


def _break_drops_twice(original: Callable[..., None]) -> Callable[..., None]:
    def unmap_twice(unmap: Callable[..., int]) -> Callable[..., int]:
        def unmap_user(
            self: Tables, port: Port, pfn: int, user: Any, how: str = "unmap_user"
        ) -> int:
            word = unmap(self, port, pfn, user, how)
            self.frame_step(port, pfn, how, user)  # BUG: the frame's count drops again
            return word

        return unmap_user

    def copy_on_write(t: Tables, port: Port, *args: Any) -> None:
        with patched(((Tables, "unmap_user", unmap_twice),)):
            original(t, port, *args)

    return copy_on_write


SHRINK_KEEPS_SLOTS = Mutant(
    "shrink_keeps_slots",
    "shrinking the heap drops its pages but never frees their swap slots",
    "refcounts_exact",
    ((process, "release_private", _shrink_keeps_slots),),
    boots=("grower",),
)

MUTANTS: tuple[Mutant, ...] = (
    REUSE_BUSY_FRAME,
    FREE_SHARED_FRAME,
    FREE_SHARED_SLOT,
    Mutant(
        "skip_autoincrement_undo",
        "state-register hardware: the kernel resets the PC but not the auto-increment",
        "restart_exact",
        ((fault, "backup", _keep_side_effects),),
        hardware={"restart": "state_register"},
    ),
    Mutant(
        "decode_misses_destination",
        "decode hardware: the kernel's parser undoes only the source operand's change",
        "restart_exact",
        ((fault, "backup", _undo_first_effect_only),),
        hardware={"restart": "decode"},
    ),
    Mutant(
        "decode_blames_first_push",
        "decode hardware: the kernel's parser takes a PUSHM's first write for the faulting one",
        "progress",
        ((restart, "locate_fault", locate_blames_first_push),),
        hardware={"restart": "decode"},
        boots=("straddle",),
    ),
    Mutant(
        "precise_pc_stepped_back",
        "precise hardware: the kernel steps the already-restored PC back a word",
        "restart_exact",
        ((fault, "backup", _precise_pc_minus_one),),
        hardware={"restart": "precise"},
    ),
    Mutant(
        "no_flush_on_untagged_switch",
        "the TLB is not flushed when switching processes",
        "tlb_agrees",
        ((vm, "flush", _no_flush),),
        hardware={"tlb_tagged": False},
    ),
    Mutant(
        "stale_tlb_after_pte_edit",
        "PTE edits do not invalidate the TLB entry",
        "busy_frame_exclusive",
        ((vm, "invalidate", _no_invalidate),),
        # Without the forker, whose write-protected pages show the bug as tlb_agrees.
        boots=("straddle", "sharer", "sharer"),
    ),
    Mutant(
        "drop_dirty_page",
        "a modified victim is evicted without write-back",
        "no_dirty_dropped",
        ((fault, "choose_frame", _dirty_as_clean),),
    ),
    Mutant(
        "evict_shared_keeps_other_ptes",
        "evicting a shared page invalidates only one process's PTE",
        "busy_frame_exclusive",
        ((fault, "evict", _evict_first_mapping_only),),
    ),
    Mutant(
        "pte_maps_kernel_frame",
        "PTEs get the frame number relative to the user pool",
        "page_tables_well_formed",
        ((Tables, "map_user", _map_kernel_frame),),
    ),
    Mutant(
        "leak_frame_at_exit",
        "an exiting process's last mapping of a private page goes, but its frame is never freed",
        "no_leaks",
        ((process, "drop_mapping", _leak_frame_at_exit),),
    ),
    INSTALL_LEAVES_BUSY,
    SHARER_COUNTED_TWICE,
    RELEASED_SLOT_LEFT_TAKEN,
    _laundered(REUSE_BUSY_FRAME, "busy_frame_exclusive"),
    _laundered(FREE_SHARED_FRAME, "freed_at_last_reference"),
    _laundered(FREE_SHARED_SLOT, "freed_at_last_reference"),
    _laundered(INSTALL_LEAVES_BUSY, "frame_table_agrees"),
    _laundered(SHARER_COUNTED_TWICE, "frame_table_agrees"),
    SLOT_GIVEN_TWICE,
    _laundered(
        # Private pages only: two of them may share a slot (a fork's copies), so what
        # shows the bug is the contents one of them then reads.
        SLOT_GIVEN_TWICE,
        "refinement",
        boots=("straddle", "straddle"),
    ),
    Mutant(
        "writeback_to_image",
        "a modified data page is written back to the program image instead of swap",
        "port_rules",
        ((fault, "start_writeback", _writeback_to_image),),
    ),
    Mutant(
        "asid_reused",
        "address-space ids come from a counter that wraps, so two processes share one",
        "spaces_agree",
        ((process, "asid_for", _small_asid_counter),),
    ),
    Mutant(
        "mmu_not_reloaded_on_switch",
        "a context switch leaves the previous process's page table loaded in the MMU",
        "dispatch_correct",
        ((process, "switch_space", _keep_first_space),),
    ),
    Mutant(
        "rob_unfinished_instruction",
        "replacement takes pages an unfinished instruction still needs (livelock)",
        "progress",
        ((fault, "least_needed", _rob_unfinished),),
        # Without the forker, booted or spawned: robbing the page a copy-on-write fault
        # copies from shows sooner, as refinement, than the livelock this bug is here to show.
        boots=("straddle", "sharer", "sharer"),
        leaves_out=("forker",),
    ),
    Mutant(
        "zero_fill_swapped_page",
        "a page that was written out is zero-filled instead of read back",
        "refinement",
        ((fault, "start_pagein", _zero_fill_swapped_page),),
    ),
    Mutant(
        "pagein_from_image",
        "a written-out data page is read back from the program image, not its swap slot",
        "refinement",
        ((fault, "start_pagein", _pagein_from_image),),
    ),
    Mutant(
        "writeback_to_wrong_slot",
        "a dirty page is written to another page's swap slot",
        "refinement",
        ((fault, "start_writeback", _writeback_wrong_slot),),
    ),
    Mutant(
        "stack_grows_past_limit",
        "the stack grows past its maximum size instead of the overflow being signalled",
        "refinement",
        ((fault, "stack_growth", _grow_past_limit),),
        boots=("climber",),
    ),
    Mutant(
        "sbrk_returns_new_break",
        "SBRK returns the new break instead of the old one",
        "refinement",
        ((process, "sbrk", _sbrk_returns_new_break),),
        boots=("grower",),
    ),
    SHRINK_KEEPS_SLOTS,
    _laundered(SHRINK_KEEPS_SLOTS, "no_leaks"),
    Mutant(
        "shrink_keeps_tlb_entries",
        "shrinking the heap unmaps its pages but leaves their TLB entries",
        "tlb_agrees",
        ((process, "shrink_heap", _shrink_without_invalidation),),
        boots=("grower",),
    ),
    Mutant(
        "putc_prints_r0",
        "PUTC prints r0, the result register, instead of its argument r1",
        "refinement",
        ((process, "putc", _putc_prints_r0),),
        boots=("wanderer",),
    ),
    Mutant(
        "kernel_fault_ignored",
        "WRITE runs again after a fault in kernel mode, but its page is never brought in",
        "progress",
        ((fault, "kernel_fault", _kernel_fault_ignored),),
        boots=("wanderer",),
    ),
    Mutant(
        "write_of_invalid_buffer_succeeds",
        "WRITE from a buffer the process cannot read returns success",
        "refinement",
        ((process, "write", _write_of_invalid_buffer_succeeds),),
        boots=("wanderer",),
    ),
    Mutant(
        "read_skips_cow_break",
        "READ writes its input into a page a fork still shares copy-on-write, without "
        "copying it first: the other process sees the input too",
        "refinement",
        ((process, "own_frame", _read_into_shared_frame),),
        boots=("forker",),
    ),
    Mutant(
        "read_leaves_page_clean",
        "READ writes its input into the buffer's frame but does not mark the page dirty, so "
        "evicting it drops the input",
        "refinement",
        ((process, "fill_buffer", _read_leaves_page_clean),),
        boots=("wanderer", "straddle"),
    ),
    Mutant(
        "cow_break_keeps_tlb_entry",
        "breaking copy-on-write remaps the writer to its copy but leaves the TLB entry of "
        "the shared frame",
        "tlb_agrees",
        ((fault, "copy_on_write", _break_keeps_tlb_entry),),
        boots=("forker",),
    ),
    Mutant(
        "cow_takeover_while_shared",
        "a write to a copy-on-write page takes it over (makes it writable) while another "
        "process still shares it",
        "copies_read_only",
        ((fault, "last_sharer", _always_last_sharer),),
        boots=("forker",),
    ),
    Mutant(
        "cow_break_drops_count_twice",
        "breaking copy-on-write drops the shared frame's reference count twice",
        "frame_table_agrees",
        ((fault, "copy_on_write", _break_drops_twice),),
        boots=("forker",),
    ),
    Mutant(
        "pagein_record_not_updated",
        "a paged-in page is mapped, but its record still puts it where it came from",
        "homes_agree",
        ((fault, "install_page", _record_left_behind),),
    ),
    Mutant(
        "exec_keeps_tlb_entries",
        "EXEC drops the old image's page-table entries but not their TLB entries, under "
        "the asid the new image keeps",
        "tlb_agrees",
        ((process, "exec_program", _exec_keeps_tlb_entries),),
        boots=("forker",),
    ),
    Mutant(
        "wait_reaps_live_child",
        "WAIT returns a child that is still alive, as if it had exited with status 0",
        "refinement",
        ((process, "wait", _wait_reaps_live_child),),
        boots=("forker",),
    ),
    Mutant(
        "exit_leaves_parent_asleep",
        "a child's exit does not wake its parent asleep in a WAIT",
        "progress",
        ((process, "wake_parent", _parent_left_asleep),),
        boots=("forker",),
    ),
    Mutant(
        "file_page_dropped_unwritten",
        "the last mapping of a file's page goes (MUNMAP, exit) without the page being "
        "written back: a dirty page's writes never reach the file",
        "refinement",
        ((process, "drop_mapping", _file_page_dropped_unwritten),),
        boots=("mapper",),
    ),
    Mutant(
        "private_file_writable",
        "a private mapping of a file is mapped writable at once, so the process writes the "
        "file's page instead of a copy",
        "copies_read_only",
        ((Tables, "copied_on_write", _private_file_writable),),
        boots=("mapper",),
    ),
    Mutant(
        "munmap_keeps_tlb_entry",
        "MUNMAP unmaps the pages' PTEs but leaves their TLB entries",
        "tlb_agrees",
        ((process, "munmap", _munmap_keeps_tlb_entry),),
        boots=("mapper",),
    ),
    Mutant(
        "stack_grows_far_below_sp",
        "an access far below the stack pointer grows the stack instead of being signalled",
        "refinement",
        ((fault, "stack_growth", _grow_far_below_sp),),
        boots=("diver",),
    ),
)

BY_NAME: dict[str, Mutant] = {m.name: m for m in MUTANTS}


def factory(mutant: Mutant) -> Callable[[HardwareConfig, KernelConfig], Kernel]:
    """A kernel factory building the mutant."""

    def build(hardware: HardwareConfig, kernel: KernelConfig) -> Kernel:
        return MutantKernel(hardware, kernel, mutant)

    build.__name__ = mutant.name
    return build


# Each mutant's factory is a module attribute, so a trace names it as
# ``pagingcheck.impl.mutants:<name>`` and replays it like any kernel.
for _mutant in MUTANTS:
    globals()[_mutant.name] = factory(_mutant)
