"""Coverage in paging terms: which paging situations a run reached, and how often.

A green run means something only if it exercised the paging code, so every
checked step is classified into situations, read from what the hardware
shows and the kernel view says (not from one kernel's private events), so
coverage means the same for every implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pagingcheck.checks.observe import Observed
from pagingcheck.checks.system import StepRecord
from pagingcheck.model.config import RESTART_VARIANTS, HardwareConfig
from pagingcheck.model.isa import FAULT_POINTS
from pagingcheck.model.traps import TrapKind

#: Situations every default verify run must reach (across its configurations).
SITUATIONS: tuple[str, ...] = (
    "fault:page_fault",
    "fault:protection_fault",
    "fault:tlb_miss",
    *(f"restart:{variant}:{point}" for variant in RESTART_VARIANTS for point in FAULT_POINTS),
    "evict:dirty",
    "evict:clean",
    "fault_during_transfer",
    "shared_evicted",
    "shared_refcount_zero",
    "exit_during_transfer",
    "protection_kill",
    *(
        f"tlb_miss:{refill}:{tag}"
        for refill in ("hardware", "software")
        for tag in ("tagged", "untagged")
    ),
)


def classify(
    config: HardwareConfig, record: StepRecord, before: Observed, after: Observed
) -> set[str]:
    """The situations one step reached."""
    reached: set[str] = set()
    result = record.result
    tag = "tagged" if config.tlb_tagged else "untagged"
    if result is not None and result.fault is not None:
        reached.add(f"fault:{result.fault.kind.value}")
        point = getattr(result, "fault_point", None)
        if point is not None:
            reached.add(f"restart:{config.restart}:{point}")
        if before.transfers:
            reached.add("fault_during_transfer")
        if result.fault.kind is TrapKind.TLB_MISS:
            reached.add(f"tlb_miss:software:{tag}")
    if result is not None and config.tlb_refill == "hardware":
        # The walker filled a slot: some (asid, vpn) is cached now that was not.
        old = {(e.asid, e.vpn) for e in before.machine.mmu.tlb.entries()}
        if any((e.asid, e.vpn) not in old for e in after.machine.mmu.tlb.entries()):
            reached.add(f"tlb_miss:hardware:{tag}")
    reached |= _evictions(before, after)
    reached |= _departures(record, before, after)
    return reached


def _evictions(before: Observed, after: Observed) -> set[str]:
    reached: set[str] = set()
    new_writes = len([r for r in after.machine.disk.pending if r.op == "write"]) - len(
        [r for r in before.machine.disk.pending if r.op == "write"]
    )
    if new_writes > 0:
        reached.add("evict:dirty")
    for pfn, users in before.mappers.items():
        still = {u for u in users if u[0] in after.live}
        if not still or after.mappers.get(pfn, set()) & still:
            continue
        if new_writes <= 0:
            reached.add("evict:clean")
        if len(still) > 1:
            reached.add("shared_evicted")
    return reached


def _departures(record: StepRecord, before: Observed, after: Observed) -> set[str]:
    reached: set[str] = set()
    gone = set(before.live) - set(after.live)
    if not gone:
        return reached
    result = record.result
    if (
        result is not None
        and result.fault is not None
        and (result.fault.kind is TrapKind.PROTECTION_FAULT)
    ):
        reached.add("protection_kill")
    if before.transfers:
        # A process left while the disk was moving a page: the kernel had to
        # keep the frame out of use until the transfer ended.
        reached.add("exit_during_transfer")
    keys_before = _shared_keys(before)
    keys_after = _shared_keys(after)
    if keys_before - keys_after:
        reached.add("shared_refcount_zero")
    return reached


def _shared_keys(s: Observed) -> set[str]:
    return {
        page.shared_key
        for proc in s.view.processes
        if proc.state != "exited"
        for page in proc.pages
        if page.shared_key is not None
    }


class Coverage:
    """Counts of situations reached over a run (or several)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, situations: Iterable[str]) -> None:
        """Count each situation once more."""
        self.counts.update(situations)

    def merge(self, other: Coverage) -> None:
        """Add another run's counts."""
        self.counts.update(other.counts)

    def unreached(self, required: Iterable[str] = SITUATIONS) -> list[str]:
        """Required situations this run never reached."""
        return [name for name in required if not self.counts[name]]

    def table(self, required: Iterable[str] = SITUATIONS) -> list[tuple[str, int]]:
        """(situation, count) for every required situation, in catalog order."""
        return [(name, self.counts[name]) for name in required]
