"""Delta debugging over a failing trace's choices: the shortest the time allows.

Hypothesis shrinks the choices it drew, but it stops when its own moves no
longer help (or when the shrinking time is up), so a campaign's trace can
keep steps the failure does not need. :func:`minimal` then tries removing
them, as Zeller's ddmin does: chunks of half the trace first, then of a
quarter, and so on down to single choices, keeping a shorter trace whenever
replaying it still violates the same property. A choice that a removal
leaves not enabled is passed over in that replay (as Hypothesis skips a rule
whose precondition fails), and the trace kept is the choices the replay
took, so it replays exactly. When no single choice can be removed any more
the trace is 1-minimal; if the time runs out first, it is the shortest
found so far.

Only safety traces are shortened: a progress violation's trace carries a
fair continuation whose loop must stay whole.
"""

from __future__ import annotations

import time

from pagingcheck.checks import traces
from pagingcheck.checks.runner import KernelFactory, RunResult, run_choices
from pagingcheck.checks.system import Choice


def minimal(trace: traces.Trace, factory: KernelFactory, seconds: float) -> traces.Trace:
    """``trace`` with every removable choice removed that ``seconds`` allow (see the
    module docstring); ``trace`` itself when nothing could be removed."""
    if trace.violation is None or trace.fair_from is not None or not trace.choices:
        return trace
    config = trace.config()
    wanted = trace.violation.property
    deadline = time.monotonic() + seconds

    def replayed(choices: list[Choice]) -> RunResult | None:
        result = run_choices(config, factory, choices, trace.programs, lenient=True)
        violation = result.violation
        return result if violation is not None and violation.property == wanted else None

    choices = list(trace.choices)
    found: RunResult | None = None
    chunk = max(1, len(choices) // 2)
    while time.monotonic() < deadline:
        start, removed = 0, False
        while start < len(choices) and time.monotonic() < deadline:
            result = replayed(choices[:start] + choices[start + chunk :])
            if result is None:
                start += chunk
                continue
            # The choices taken, up to the failure (which may now come sooner).
            choices = [record.choice for record in result.records]
            found, removed = result, True
        if chunk == 1 and not removed:
            break  # 1-minimal: no single choice can go
        if not removed:
            chunk = max(1, chunk // 2)
    if found is None:
        return trace
    return traces.from_run(config, trace.implementation, choices, found, trace.stderr)
