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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pagingcheck.impl import fault, process
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import Kernel
from pagingcheck.impl.kernel import ReferenceKernel
from pagingcheck.impl.tables import FaultRecord, Tables
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import ArchState, back_up
from pagingcheck.model.machine import Machine
from pagingcheck.model.tlb import TLB

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
    """The reference kernel with a mutant's patches in force during every hook."""

    mutant: Mutant

    def __init__(self, hardware: HardwareConfig, kernel: KernelConfig, mutant: Mutant) -> None:
        super().__init__(hardware, kernel)
        self.mutant = mutant

    def copy(self) -> MutantKernel:
        """An independent copy that keeps the bug."""
        clone = MutantKernel.__new__(MutantKernel)
        base = super().copy()
        clone.__dict__.update(base.__dict__)
        clone.mutant = self.mutant
        return clone


def _hooked(name: str) -> Callable[..., Any]:
    def hook(self: MutantKernel, *args: Any) -> Any:
        with patched(self.mutant.patches):
            return getattr(ReferenceKernel, name)(self, *args)

    hook.__name__ = name
    hook.__doc__ = f"The reference kernel's {name}, with the mutant's bug in force."
    return hook


for _name in _HOOKS:
    setattr(MutantKernel, _name, _hooked(_name))


# -- the bugs ------------------------------------------------------------------------------


def _free_list_add(t: Tables, pfn: int) -> None:
    t.free_frames = tuple(sorted({*t.free_frames, pfn}))


def _release_frame_at_pagein(original: Callable[..., None]) -> Callable[..., None]:
    def start_pagein(t: Tables, machine: Machine, pfn: int, *args: Any, **kw: Any) -> None:
        original(t, machine, pfn, *args, **kw)
        if pfn in t.transfers:  # BUG: the frame goes back on the free list mid-transfer
            _free_list_add(t, pfn)

    return start_pagein


def _free_shared_frame_early(original: Callable[..., None]) -> Callable[..., None]:
    def drop_mapping(t: Tables, machine: Machine, pfn: int, *args: Any) -> None:
        original(t, machine, pfn, *args)
        if t.rmap.get(pfn):  # BUG: freed at the first exit though others still map it
            _free_list_add(t, pfn)

    return drop_mapping


def _keep_side_effects(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(machine: Machine, context: ArchState, record: FaultRecord) -> ArchState:
        if machine.config.restart == "precise":
            return original(machine, context, record)
        # BUG: the PC goes back, but the auto-increment/decrement is not undone
        return dataclasses.replace(context, pc=record.fault_pc)

    return backup


def _undo_first_effect_only(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(machine: Machine, context: ArchState, record: FaultRecord) -> ArchState:
        if machine.config.restart != "decode":
            return original(machine, context, record)
        # BUG: the decoder stops at the source operand and misses the destination's change
        return back_up(context, record.fault_pc, record.undo[:1])

    return backup


def _precise_pc_minus_one(original: Callable[..., ArchState]) -> Callable[..., ArchState]:
    def backup(machine: Machine, context: ArchState, record: FaultRecord) -> ArchState:
        restored = original(machine, context, record)
        if machine.config.restart != "precise":
            return restored
        # BUG: treats the saved PC as pointing past the instruction and steps it back
        return dataclasses.replace(restored, pc=restored.pc - 1)

    return backup


def _no_flush(original: Callable[..., None]) -> Callable[..., None]:
    def flush(self: TLB) -> None:
        """BUG: the kernel's TLB flush does nothing."""

    return flush


def _no_invalidate(original: Callable[..., None]) -> Callable[..., None]:
    def invalidate(self: TLB, asid: int, vpn: int) -> None:
        """BUG: PTE edits leave the old TLB entry in place."""

    return invalidate


def _dirty_as_clean(original: Callable[..., Any]) -> Callable[..., Any]:
    def choose_frame(*args: Any) -> Any:
        chosen = original(*args)
        if isinstance(chosen, tuple) and chosen[1] is not None:
            # BUG: the victim's modified bit is ignored: no write-back
            return chosen[0], dataclasses.replace(chosen[1], dirty=False)
        return chosen

    return choose_frame


def _free_shared_slot_early(original: Callable[..., None]) -> Callable[..., None]:
    def drop_slot_user(self: Tables, slot: int) -> None:
        original(self, slot)
        state = self.slots[slot]
        if state.refcount:  # BUG: the slot is freed at the first user's exit
            self.free_slots = tuple(sorted({*self.free_slots, slot}))

    return drop_slot_user


def _evict_first_mapping_only(original: Callable[..., None]) -> Callable[..., None]:
    def evict(t: Tables, machine: Machine, victim: fault.Victim) -> None:
        if len(victim.users) > 1:
            # BUG: only the first process's PTE is invalidated; the others keep theirs
            for user in victim.users[1:]:
                t.rmap[victim.pfn] = tuple(u for u in t.rmap[victim.pfn] if u != user)
            victim = dataclasses.replace(victim, users=victim.users[:1])
        original(t, machine, victim)

    return evict


def _map_kernel_frame(original: Callable[..., None]) -> Callable[..., None]:
    def map_user(self: Tables, machine: Machine, pfn: int, user: tuple[int, int]) -> None:
        original(self, machine, pfn, user)
        pid, vpn = user
        proc = self.process(pid)
        # BUG: the frame number is written relative to the user pool, not absolute
        word = machine.format.walk(machine.memory, proc.root, proc.asid, vpn)
        if word is not None:
            from pagingcheck.model import bits

            machine.memory.write(
                word.pte_addr, bits.with_pfn(word.pte, pfn - self.config.kernel_frames)
            )
            machine.mmu.tlb.invalidate(proc.asid, vpn)

    return map_user


def _double_count_sharer(original: Callable[..., Any]) -> Callable[..., Any]:
    def frame_op(self: Tables, machine: Machine, pfn: int, name: str, *args: int) -> Any:
        result = original(self, machine, pfn, name, *args)
        if name == "map_user":  # BUG: a second sharer is counted twice
            result = original(self, machine, pfn, name, *args)
        return result

    return frame_op


def _skip_install(original: Callable[..., Any]) -> Callable[..., Any]:
    def frame_op(self: Tables, machine: Machine, pfn: int, name: str, *args: int) -> Any:
        if name == "install":  # BUG: the page is mapped but the frame stays marked busy
            return self.frames[pfn]
        return original(self, machine, pfn, name, *args)

    return frame_op


def _double_free_slot(original: Callable[..., Any]) -> Callable[..., Any]:
    def slot_op(self: Tables, slot: int, name: str, *args: int) -> Any:
        result = original(self, slot, name, *args)
        if name == "release":  # BUG: a released slot is pushed on the free list twice
            self.free_slots = (*self.free_slots, slot)
        return result

    return slot_op


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "reuse_busy_frame",
        "a frame goes back on the free list while its page-in runs",
        "busy_frame_exclusive",
        ((fault, "start_pagein", _release_frame_at_pagein),),
    ),
    Mutant(
        "free_shared_frame_at_first_exit",
        "a shared frame is freed when the first of its users exits",
        "freed_at_last_reference",
        ((process, "drop_mapping", _free_shared_frame_early),),
    ),
    Mutant(
        "free_shared_slot_early",
        "a shared page's swap slot is freed at the first exit",
        "freed_at_last_reference",
        ((Tables, "drop_slot_user", _free_shared_slot_early),),
    ),
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
        ((TLB, "flush", _no_flush),),
        hardware={"tlb_tagged": False},
    ),
    Mutant(
        "stale_tlb_after_pte_edit",
        "PTE edits do not invalidate the TLB entry",
        "busy_frame_exclusive",
        ((TLB, "invalidate", _no_invalidate),),
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
        "install_leaves_frame_busy",
        "a paged-in frame is mapped but stays marked busy",
        "frame_table_agrees",
        ((Tables, "frame_op", _skip_install),),
    ),
    Mutant(
        "sharer_counted_twice",
        "mapping a resident shared page counts the sharer twice",
        "refcounts_exact",
        ((Tables, "frame_op", _double_count_sharer),),
    ),
    Mutant(
        "slot_freed_twice",
        "a released swap slot appears twice on the free list",
        "free_lists_clean",
        ((Tables, "slot_op", _double_free_slot),),
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
