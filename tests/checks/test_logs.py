"""Trace validation of logs (``pagingcheck check-log``, docs/logs.md).

Logs are written by pagingcheck's own logging of a kernel's run
(:func:`~pagingcheck.checks.logs.write_log`), then checked, left with steps
out, corrupted line by line, or written by a seeded-bug kernel: a correct log
must be accepted with what was inferred counted exactly, and a wrong one
rejected at the first line nothing fits, for the right reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import logs, traces
from pagingcheck.checks.cli import cli
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.model.errors import UserError


def variant(name: str) -> checkconfig.CheckConfig:
    """A variant of the built-in configuration."""
    return dict(checkconfig.load(None).expand())[name]


def logged(config: checkconfig.CheckConfig, kernel: str = REFERENCE_KERNEL) -> list[str]:
    """The lines of a fair run of ``kernel`` on ``config``, logged."""
    stream = io.StringIO()
    logs.write_log(config, resolve_factory(kernel), stream, max_steps=600)
    return stream.getvalue().splitlines()


def checked(lines: list[str], config: checkconfig.CheckConfig) -> logs.LogResult:
    return logs.check_log(config, logs.parse("\n".join(lines), "test.log"))


@pytest.fixture(scope="module")
def linear() -> tuple[checkconfig.CheckConfig, list[str]]:
    # Without the forker, whose extra process makes the untagged TLB flushed so often at
    # switches that the first invalidation whose loss shows comes late in the log.
    config = variant("linear-state-register-fifo")
    config = dataclasses.replace(
        config, workload=dataclasses.replace(config.workload, initial=(0, 1, 1))
    )
    return config, logged(config)


def numbered(lines: list[str]) -> list[tuple[int, dict[str, Any]]]:
    return [(number, json.loads(text)) for number, text in enumerate(lines, start=1)]


@pytest.mark.parametrize(
    "name", ["multilevel-precise-clock", "hashed-decode-lru", "inverted-precise-second-chance"]
)
def test_a_correct_log_is_accepted_with_every_step_checked(name: str) -> None:
    config = variant(name)
    lines = logged(config)
    result = checked(lines, config)
    assert result.ok, logs.describe(result)
    assert result.steps == sum('"step"' in line for line in lines) > 100
    assert (result.inferred_steps, result.inferred_calls) == (0, 0)


def _without_inferable(lines: list[str]) -> tuple[list[str], int, int]:
    """``lines`` with every step line left out, and the dispatch calls that change nothing
    just before a trap; how many steps and calls were left out."""
    kept: list[str] = []
    steps = calls = 0
    body = numbered(lines)
    index = 0
    while index < len(body):
        _, line = body[index]
        if "step" in line:
            steps += 1
            index += 1
            continue
        if (
            line.get("call") == "dispatch"
            and body[index + 1][1] == {"return": None, "events": []}
            and _next_call(body, index + 2) == "on_trap"
        ):
            calls += 1
            index += 2
            continue
        kept.append(lines[index])
        index += 1
    return kept, steps, calls


def _next_call(body: list[tuple[int, dict[str, Any]]], start: int) -> str | None:
    for _, line in body[start:]:
        if "call" in line:
            return str(line["call"])
    return None


def test_steps_left_out_are_inferred_and_counted(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    sparse, steps, calls = _without_inferable(lines)
    assert calls >= 3
    result = checked(sparse, config)
    assert result.ok, logs.describe(result)
    assert (result.steps, result.inferred_steps, result.inferred_calls) == (steps, steps, calls)
    assert "inferred" in logs.describe(result)


def _first(lines: list[str], test: Any) -> int:
    """The index of the first line whose object passes ``test``."""
    return next(i for i, (_, line) in enumerate(numbered(lines)) if test(line))


def _answered_otherwise(lines: list[str], operation: str) -> tuple[list[str], int]:
    """``lines`` with the first ``operation``'s logged answer changed; its line number."""
    at = _first(lines, lambda line: line.get("port") == operation)
    line = json.loads(lines[at])
    line["value"] = {"pa": 1} if operation == "probe" else line["value"] + 7
    return [*lines[:at], json.dumps(line), *lines[at + 1 :]], at + 1


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("linear-state-register-fifo", "submit"),
        ("multilevel-decode-software-untagged-aging", "probe"),
    ],
)
def test_an_answer_the_hardware_does_not_give_is_rejected_at_its_line(
    name: str, operation: str
) -> None:
    config = variant(name)
    corrupted, number = _answered_otherwise(logged(config), operation)
    result = checked(corrupted, config)
    assert result.violation is not None and result.violation.property == logs.LOG_FITS
    assert result.line == number
    assert f"{operation} answers" in result.violation.message


def test_a_lost_tlb_invalidation_is_rejected_at_the_call_that_lost_it(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    # Not every invalidation matters (the TLB may not hold the entry): the first that
    # leaves a stale entry must be caught at the return of the call that should have made
    # it. (One lost after a PTE gained a right, at a copy-on-write take-over, leaves an
    # entry with fewer rights, which only makes the process fault again: the log no longer
    # fits at that step, which shows the loss too, later.)
    invalidations = [
        i
        for i, (_, line) in enumerate(numbered(lines))
        if "tlb_invalidate" in str(line.get("port"))
    ]
    for at in invalidations[:20]:
        result = checked([*lines[:at], *lines[at + 1 :]], config)
        if result.violation is not None and result.violation.property != logs.LOG_FITS:
            break
    else:
        pytest.fail("no invalidation among the first 20 was missed")
    end = at + _first(lines[at:], lambda line: "return" in line)
    # a stale entry: the TLB disagrees with the table, or maps a frame now in transfer
    assert result.violation.property in ("tlb_agrees", "busy_frame_exclusive"), result.violation
    assert result.line == end  # the return of that call, numbered in the shorter log


def test_a_page_table_entry_pointed_at_another_frame_is_caught_by_the_invariants(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    # The first present PTE written for a user frame (pfn 16 on): its frame bits (8 and
    # up, docs/hardware.md) changed to the next frame. The log still fits the hardware;
    # the kernel it describes is wrong, and that shows at the return of the same call.
    at = _first(
        lines,
        lambda line: (
            line.get("port") == "write" and line["args"][1] & 1 and line["args"][1] >> 8 >= 16
        ),
    )
    line = json.loads(lines[at])
    line["args"][1] ^= 1 << 8
    result = checked([*lines[:at], json.dumps(line), *lines[at + 1 :]], config)
    assert result.violation is not None and result.violation.property != logs.LOG_FITS
    assert result.line == at + 1 + _first(lines[at:], lambda line: "return" in line)


def test_a_seeded_bug_is_rejected_as_its_trace_is() -> None:
    config = variant("multilevel-precise-clock")
    stream = io.StringIO()
    run = logs.write_log(
        config, resolve_factory("pagingcheck.impl.mutants:leak_frame_at_exit"), stream
    )
    assert run.result.violation is not None
    lines = stream.getvalue().splitlines()
    result = checked(lines, config)
    assert result.violation == run.result.violation
    assert result.line == len(lines)  # after the failing step's last call


def test_a_step_the_hardware_cannot_take_is_rejected_at_its_line(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    at = _first(lines, lambda line: "step" in line)
    result = checked([*lines[:at], '{"step": ["disk", 0]}', *lines[at:]], config)
    assert result.violation is not None and result.violation.property == logs.LOG_FITS
    assert result.line == at + 1 and "not possible" in result.violation.message


def test_a_switch_left_out_is_not_inferred(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    at = _first(lines, lambda line: line.get("call") == "dispatch")
    end = at + _first(lines[at:], lambda line: "return" in line)
    result = checked([*lines[:at], *lines[end + 1 :]], config)
    assert result.violation is not None and result.violation.property == logs.LOG_FITS
    assert "dispatch()" in result.violation.message


def test_a_log_that_ends_inside_a_call_is_rejected(
    linear: tuple[checkconfig.CheckConfig, list[str]],
) -> None:
    config, lines = linear
    at = _first(lines, lambda line: "return" in line and "view" in line)
    result = checked(lines[:at], config)
    assert result.violation is not None and result.violation.property == logs.LOG_FITS
    assert "no return" in result.violation.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ('{"step": ["run", 1]}', "starts with"),
        ('{"log": 1}\nnot json', "line 2: not JSON"),
        ('{"log": 1}\n[1]', "line 2: not a JSON object"),
        ('{"log": 1}\n{"step": ["run", 1], "call": "boot"}', "exactly one"),
        ('{"log": 1}\n{"step": ["jump", 1]}', "a step is a list"),
        ('{"log": 1}\n{"call": "reboot"}', "no kernel call"),
        ('{"log": 1}\n{"port": "poke", "args": []}', "no port operation"),
        ('{"log": 1}\n{"return": null, "colour": 1}', "no field 'colour'"),
        ('{"log": 1, "hardware": 3}', "is an object"),
    ],
)
def test_what_is_not_a_log_is_refused_naming_the_line(text: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        logs.parse(text, "bad.log")


def test_the_variant_is_the_one_the_header_names() -> None:
    config = checkconfig.load(None)
    lines = logged(variant("hashed-decode-lru"))
    log = logs.parse("\n".join(lines), "x.log")
    chosen = logs.choose_config(config, log, None)
    assert chosen.hardware == variant("hashed-decode-lru").hardware
    with pytest.raises(UserError, match="another machine"):
        logs.choose_config(config, log, "multilevel-precise-clock")
    headless = logs.parse("\n".join(['{"log": 1}', *lines[1:]]), "x.log")
    with pytest.raises(UserError, match="--variant"):
        logs.choose_config(config, headless, None)


def test_check_log_command_exit_codes_and_json(
    tmp_path: Path, linear: tuple[checkconfig.CheckConfig, list[str]]
) -> None:
    _, lines = linear
    good = tmp_path / "good.log"
    good.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["check-log", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["ok"] is True and data["violation"] is None
    assert data["results"][0]["lines"] == len(lines)
    corrupted, number = _answered_otherwise(lines, "submit")
    bad = tmp_path / "bad.log"
    bad.write_text("\n".join(corrupted))
    rejected = runner.invoke(cli, ["check-log", str(bad)])
    assert rejected.exit_code == 1
    assert f"log rejected at line {number}" in rejected.output
    missing = runner.invoke(cli, ["check-log", str(tmp_path / "none.log")])
    assert missing.exit_code == 2


def test_replay_writes_a_log_that_check_log_reads(tmp_path: Path) -> None:
    mutant = "pagingcheck.impl.mutants:leak_frame_at_exit"
    config = variant("multilevel-precise-clock")
    run = logs.write_log(config, resolve_factory(mutant), io.StringIO())
    assert run.result.violation is not None
    trace = traces.write(traces.from_run(config, mutant, run.choices, run.result), tmp_path, "leak")
    log = tmp_path / "run.log"
    runner = CliRunner()
    replayed = runner.invoke(cli, ["replay", str(trace), "--write-log", str(log)])
    assert replayed.exit_code == 1, replayed.output
    # No configuration named: the log's header gives the machine and workload.
    checked_log = runner.invoke(cli, ["check-log", str(log), "--json"])
    assert checked_log.exit_code == 1, checked_log.output
    verdict = json.loads(checked_log.output)["violation"]
    assert verdict["property"] == run.result.violation.property == "no_leaks"
    assert verdict["line"] == len(log.read_text().splitlines())
