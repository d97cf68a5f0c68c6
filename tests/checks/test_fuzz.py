"""Fuzzing the front doors: Hypothesis-made malformed configurations, traces, reference files
and hostile kernels, against the exit-code contract.

Whatever the input: exit 0, 1 or 2, never 3 (a bug of pagingcheck) and never a
traceback; exit 2 is one line starting ``pagingcheck: error:``; ``--json``
prints one JSON object; each command answers within a bound of time, and the
process's memory stays bounded. A hostile kernel that misbehaved is never a
pass. The default run tries a few hundred inputs; ``make test-slow`` (the
``slow`` marker) tries more than 10,000.
"""

from __future__ import annotations

import copy
import json
import resource
import signal
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagingcheck.checks import traces
from pagingcheck.checks.cli import cli
from pagingcheck.checks.mutants import mutant_config
from pagingcheck.checks.runner import run_choices
from pagingcheck.impl.lib.replacement import POLICY_NAMES
from pagingcheck.impl.mutants import BY_NAME, factory

#: Seconds one command may take on fuzzed input (a tiny budget runs in one or two).
SECONDS = 60
#: The most the test process may grow to, in megabytes.
MEGABYTES = 3000

BASE_CONFIG: dict[str, Any] = {
    "hardware": {"user_frames": 4, "va_pages": 16, "page_table": "linear"},
    "kernel": {"policy": "clock", "prepage": "none"},
    "workload": {
        "initial": [0, 0],
        "max_spawns": 1,
        "timer": True,
        "kills": True,
        "programs": [
            {
                "name": "copy",
                "text": "MOV #16, r1\nMOV #32, r2\nMOV (r1)+, (r2)+\nSYS 0\n",
                "data": [1, 2, 3],
                "heap_pages": 1,
                "shared": [{"name": "s", "vpn": 8, "pages": 1, "writable": True}],
            }
        ],
    },
    "variants": [{"name": "v", "hardware": {"tlb_refill": "software"}}],
    "coverage": {"together": ["fault:page_fault"]},
    "limits": {"call_seconds": 5},
}
#: Every fuzzed configuration runs on this budget, so a valid one is checked quickly.
BUDGET = {"examples": 1, "steps": 6, "shrink_seconds": 1}

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 3, 4, 16, -1, -(2**31), 2**31, 2**32, 2**64, 10**50, 10**300]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["false", "true", "4", "0x10", "all", "none", "pc", "", "~"]),
    st.lists(st.integers(-3, 70), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-2, 9), max_size=3),
)


@st.composite
def mutated(draw: st.DrawFn, base: Any, rounds: int = 3) -> Any:
    """``base`` with a few values replaced, keys removed or added, at any depth."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, rounds))):
        node = data
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                node[key] = draw(ODD_VALUES)
            elif action == "remove" and isinstance(node, dict):
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
            else:
                node.append(draw(ODD_VALUES))
            break
    return data


_BOMB: bytes = b"".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else 'x, x, x, x, x, x, x, x, x'}]\n".encode()
    for p, n in zip(["", *"abcdefg"], "abcdefgh", strict=True)
)


TEXT_DAMAGE: list[Callable[[bytes, int], bytes]] = [
    lambda text, at: text[:at],  # cut short
    lambda text, at: text[:at] + b"\xff\xfe\x00" + text[at:],  # not UTF-8
    lambda text, at: text[:at] + b": [{\n" + text[at:],  # unbalanced
    lambda text, at: text[:at] + b"9" * 5000 + text[at:],  # an absurd integer
    lambda text, at: b"x: " + b"[" * 300 + b"]" * 300 + b"\n" + text,  # deep
    lambda text, at: (
        b"x: &x [" + b", ".join([b"&y" + bytes(str(i), "ascii") for i in range(3)]) + b"]\n" + text
    ),  # anchors
    lambda text, at: _BOMB + text,  # an alias bomb before a good configuration
    lambda text, at: text.replace(b"\n", b"\r\n"),
    lambda text, at: text + b"\n---\nsecond: document\n",
    lambda text, at: text[:at] + b"\t" + text[at:],
    lambda text, at: text[:at] + b"!!python/object:os.system {}\n" + text[at:],
]


@st.composite
def damaged(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` with one kind of damage done to its bytes."""
    damage = draw(st.sampled_from(TEXT_DAMAGE))
    return damage(text, draw(st.integers(0, len(text))))


# -- the contract ------------------------------------------------------------------------------


class TookTooLong(Exception):
    """A command did not answer within :data:`SECONDS`."""


@contextmanager
def bounded() -> Iterator[None]:
    """Fail a command that runs too long or leaves the process too large."""

    def expire(_signum: int, _frame: object) -> None:
        raise TookTooLong(f"no answer within {SECONDS} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    assert grown < MEGABYTES, f"the process grew to {grown} MB"


def keeps_the_contract(args: list[str], json_mode: bool = True) -> int:
    """Run the command line; assert the exit-code contract; return the exit code."""
    with bounded():
        result = CliRunner().invoke(cli, args)
    if isinstance(result.exception, TookTooLong):
        raise result.exception
    code, out, err = result.exit_code, result.stdout, result.stderr
    assert code in (0, 1, 2), f"exit {code}: {err[:2000]}"
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        # With --json the error is also the one JSON object on stdout; else stdout is empty.
        if "--json" in args:
            assert json.loads(out)["error"]["kind"] == "usage"
        else:
            assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("pagingcheck: error: ") and len(err) <= 1100
    elif json_mode:
        json.loads(out)  # exactly one object
    return code


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings of a fuzz test: ``examples`` inputs, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# -- configurations ----------------------------------------------------------------------------


def check_configuration(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(text)
        keeps_the_contract(
            ["verify", "--config", str(path), "--profile", "ci", "--traces", folder, "--json"]
        )


def _with_budget(data: Any) -> Any:
    if isinstance(data, dict):
        data["budget"] = BUDGET
    return data


configurations = st.one_of(
    mutated(BASE_CONFIG).map(lambda d: yaml.safe_dump(_with_budget(d)).encode()),
    damaged(yaml.safe_dump({**BASE_CONFIG, "budget": BUDGET}).encode()),
    st.binary(max_size=300),
)


# -- traces ------------------------------------------------------------------------------------


@cache
def base_trace() -> dict[str, Any]:
    """A real trace of a seeded bug, as data."""
    from pagingcheck.checks import config as checkconfig

    mutant = BY_NAME["reuse_busy_frame"]
    config = mutant_config(checkconfig.load(None), mutant)
    result = run_choices(config, factory(mutant), [("run", 1)])
    trace = traces.from_run(config, f"pagingcheck.impl.mutants:{mutant.name}", [("run", 1)], result)
    return yaml.safe_load(traces.dump(trace))  # type: ignore[no-any-return]


@st.composite
def trace_texts(draw: st.DrawFn) -> bytes:
    data = draw(mutated(base_trace()))
    if isinstance(data, dict) and draw(st.booleans()):
        data.pop("config_digest", None)  # reach past the digest to the fields themselves
    text = yaml.safe_dump(data).encode()
    return draw(st.one_of(st.just(text), damaged(text)))


def check_trace(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(text)
        keeps_the_contract(["replay", str(path), "--json"])


# -- reference strings --------------------------------------------------------------------------

REF_LINES = st.one_of(
    st.integers(-5, 2**70).map(str),
    st.sampled_from(["12w", "7W", "3r", "", "# comment", "x", "1,2", "99999999999999999999999"]),
    st.sampled_from([" L 0400,8", "I  04222cac,3", " S 7ff0,99999999999", " M zz,4", "==1== x"]),
    st.text(max_size=10),
)


@st.composite
def simulate_args(draw: st.DrawFn, folder: str) -> list[str]:
    args = ["simulate", "--json"]
    args += ["-p", draw(st.one_of(st.sampled_from(POLICY_NAMES), st.text(max_size=6)))]
    args += ["-n", str(draw(st.sampled_from([0, 1, 2, 3, 64, -1, 2**24, 2**24 + 1, 10**12])))]
    if draw(st.booleans()):
        args += ["--refs", ",".join(draw(st.lists(REF_LINES.map(str), min_size=1, max_size=8)))]
    else:
        path = Path(folder) / "refs"
        lines = draw(st.lists(REF_LINES, max_size=30))
        body = "\n".join(lines).encode()
        path.write_bytes(draw(st.one_of(st.just(body), damaged(body))))
        args += ["--refs-file", str(path)]
        if draw(st.booleans()):
            args.append("--lackey")
    for option in ("--tau", "--tick", "--seed", "--page-size"):
        if draw(st.integers(0, 3)) == 0:
            args += [option, str(draw(st.sampled_from([0, 1, -1, 4096, 2**64, 10**40])))]
    return args


def check_simulate(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        keeps_the_contract(data.draw(simulate_args(folder)))


# -- hostile kernels ---------------------------------------------------------------------------

HOOKS = {
    "boot": "port",
    "spawn": "port, image",
    "dispatch": "port, pid",
    "on_trap": "port, trap",
    "on_disk": "port, request",
    "on_timer": "port",
    "kill": "port, pid",
    "view": "",
    "runnable": "",
}
DEEDS = {
    "raise": "raise ValueError('fuzzed')",
    "user_error": "raise UserError('fuzzed')",
    "interrupt": "raise KeyboardInterrupt",
    "exit": "sys.exit(0)",
    "hard_exit": "os._exit(0)",
    "print": "print('fuzzed')",
    "none": "return None",
    "text": "return 'fuzzed'",
    "number": "return 5",
    "objects": "return (object(),)",
    "spin": "while True:\n    pass",
    "recursion": "def r(n):\n    return r(n + 1)\nr(0)",
    "thread": "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
}
KERNEL = """
import os, sys, threading, time
from pagingcheck.impl.reference import ReferenceKernel
from pagingcheck.model.errors import UserError

calls = 0


class Fuzzed(ReferenceKernel):
    def {hook}({signature}):
        global calls
        calls += 1
        if calls >= {after}:
            open({marker!r}, "w").close()
{deed}
        return super().{hook}({args})


def build(hardware, kernel):
    return Fuzzed(hardware, kernel)
"""
SMALL = {
    **BASE_CONFIG,
    "budget": {"examples": 2, "steps": 12, "shrink_seconds": 1},
    "variants": [],
    "coverage": [],
    "limits": {"call_seconds": 1.5, "memory_mb": 256},
}


@st.composite
def hostile_kernels(draw: st.DrawFn) -> tuple[str, str, int]:
    return (
        draw(st.sampled_from(sorted(HOOKS))),
        draw(st.sampled_from(sorted(DEEDS))),
        draw(st.integers(1, 4)),
    )


def check_hostile(kernel: tuple[str, str, int], serial: list[int]) -> None:
    hook, deed, after = kernel
    serial[0] += 1
    name = f"fuzzed_kernel_{serial[0]}"
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "misbehaved"
        params = HOOKS[hook]
        source = KERNEL.format(
            hook=hook,
            signature=f"self, {params}" if params else "self",
            after=after,
            marker=str(marker),
            deed=textwrap.indent(DEEDS[deed], " " * 12),
            args=params,
        )
        (Path(folder) / f"{name}.py").write_text(source)
        config = Path(folder) / "small.yaml"
        config.write_text(yaml.safe_dump(SMALL))
        sys.path.insert(0, folder)
        try:
            args = ["validate", "--impl", f"{name}:build", "--config", str(config)]
            code = keeps_the_contract([*args, "--json", "--traces", folder])
        finally:
            sys.path.remove(folder)
            sys.modules.pop(name, None)
        if marker.exists():
            assert code == 1, f"a kernel whose {hook} did {deed} was reported as exit {code}"


# -- the suites --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proved() -> None:
    """The z3 verdicts, decided once before the fuzzing: a verify of the reference kernel
    proves them the first time in a process (half a minute), whatever its input, and the
    time limit is about what each input costs. Workers forked from here inherit them."""
    from pagingcheck.checks import proofs

    proofs.verdicts()


@fuzz(120)
@given(configurations)
def test_fuzzed_configurations_keep_the_contract(proved: None, text: bytes) -> None:
    check_configuration(text)


@fuzz(120)
@given(trace_texts())
def test_fuzzed_traces_keep_the_contract(text: bytes) -> None:
    check_trace(text)


@fuzz(150)
@given(st.data())
def test_fuzzed_reference_strings_keep_the_contract(data: st.DataObject) -> None:
    check_simulate(data)


@fuzz(10)
@given(hostile_kernels())
def test_fuzzed_hostile_kernels_are_never_a_pass(kernel: tuple[str, str, int]) -> None:
    check_hostile(kernel, _SERIAL)


_SERIAL = [0]


@pytest.mark.slow
@fuzz(3500)
@given(configurations)
def test_many_fuzzed_configurations(text: bytes) -> None:
    check_configuration(text)


@pytest.mark.slow
@fuzz(3000)
@given(trace_texts())
def test_many_fuzzed_traces(text: bytes) -> None:
    check_trace(text)


@pytest.mark.slow
@fuzz(3500)
@given(st.data())
def test_many_fuzzed_reference_strings(data: st.DataObject) -> None:
    check_simulate(data)


@pytest.mark.slow
@fuzz(300)
@given(hostile_kernels())
def test_many_fuzzed_hostile_kernels(kernel: tuple[str, str, int]) -> None:
    check_hostile(kernel, _SERIAL)
