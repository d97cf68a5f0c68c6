"""What every proof module shares: three-valued verdicts and one way to ask z3.

A verdict is ``proved``, ``refuted`` (with z3's model) or ``unknown`` (with
z3's reason and the time spent); unknown is never a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import z3

Verdict = Literal["proved", "refuted", "unknown"]

#: Milliseconds z3 may spend on one obligation before its verdict is unknown.
TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class Outcome:
    """What z3 said about one obligation."""

    name: str
    verdict: Verdict
    seconds: float
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The obligation as ``prove --json`` prints it."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def solve(name: str, facts: list[Any], want_sat: bool) -> Outcome:
    """Check ``facts``: proved when their satisfiability is what we want; refuted (with
    z3's model) or unknown (with z3's reason) otherwise."""
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*facts)
    began = time.perf_counter()
    result = solver.check()
    seconds = time.perf_counter() - began
    if result == z3.unknown:
        return Outcome(name, "unknown", seconds, f"z3: {solver.reason_unknown()}")
    if (result == z3.sat) == want_sat:
        return Outcome(name, "proved", seconds)
    detail = str(solver.model()) if result == z3.sat else "no state satisfies it"
    return Outcome(name, "refuted", seconds, " ".join(detail.split())[:2000])
