"""Kernels in any language: ``--exec`` drives a program by the process protocol.

The reference kernel and the mutants, served on stdin and stdout by
``pagingcheck.checks.host --stdio``, stand for a program in another language:
the checks must see exactly what they see in-process. Hostile programs (each a
few lines of Python speaking part of the protocol) must be contained and
reported, never trusted.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import traces
from pagingcheck.checks.explore import Exploration, Explorer, explore
from pagingcheck.checks.external import SCHEMA
from pagingcheck.checks.runner import REFERENCE_KERNEL, kernel_factory, released
from pagingcheck.checks.system import KernelFailed, KernelLoadError
from pagingcheck.model.errors import UserError
from pagingcheck.model.fingerprint import fingerprint
from tests.checks.test_explore import PINNED

PYTHON = sys.executable
SERVED = f"{PYTHON} -m pagingcheck.checks.host --stdio"
REFERENCE = f"{SERVED} pagingcheck.impl.reference:ReferenceKernel"
REEXECUTED = f"{SERVED} --no-save pagingcheck.impl.reference:ReferenceKernel"


def pair() -> checkconfig.CheckConfig:
    return checkconfig.load_reference("pair")


def explored(
    command: str, config: checkconfig.CheckConfig, max_states: int | None = None
) -> Exploration:
    with released(kernel_factory(f"exec:{command}", config.limits)) as factory:
        return Explorer(config, factory, max_states=max_states).run()


def test_a_served_kernel_has_the_states_it_has_in_process() -> None:
    result = explored(REFERENCE, pair())
    assert result.complete and result.ok
    assert (result.distinct_states, result.transitions, result.max_depth) == PINNED["pair"]


def test_re_execution_visits_the_states_save_and_restore_visit() -> None:
    saved = explored(REFERENCE, pair(), max_states=25)
    again = explored(REEXECUTED, pair(), max_states=25)
    assert (again.distinct_states, again.transitions) == (saved.distinct_states, saved.transitions)
    assert again.ok


# -- hostile programs --------------------------------------------------------------------

PREAMBLE = """
import json, os, signal, sys, time
def send(message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    op = request["op"]
    if op == "hello":
        send({"ok": {"protocol": 1, "save": False}})
        continue
"""


def program(tmp_path: Path, body: str) -> str:
    """A command running a program that says hello, then does ``body`` for each request."""
    path = tmp_path / "kernel.py"
    path.write_text(PREAMBLE + textwrap.indent(textwrap.dedent(body), "    "))
    return f"{PYTHON} {path}"


def first_failure(command: str, call_seconds: float = 10.0) -> KernelFailed:
    config = checkconfig.load_reference("pair")
    limits = dataclasses.replace(config.limits, call_seconds=call_seconds)
    factory = kernel_factory(f"exec:{command}", limits)
    with released(factory), pytest.raises(KernelFailed) as raised:
        kernel = factory(config.hardware, config.kernel)
        kernel.runnable()
    return raised.value


@pytest.mark.parametrize(
    ("body", "property", "says"),
    [
        ('sys.stderr.write("boom\\n"); sys.exit(3)', "kernel_exit", "status 3"),
        ("os.kill(os.getpid(), signal.SIGSEGV)", "kernel_crash", "SIGSEGV"),
        ("time.sleep(60)", "kernel_hang", "did not answer"),
        ('print("runnable? sure")', "interface_error", "not JSON"),
        (  # both replies in one write, so they reach the checker together
            'sys.stdout.write(json.dumps({"ok": [1]}) + "\\n" + json.dumps({"ok": [2]}) + "\\n"); '
            "sys.stdout.flush()",
            "interface_error",
            "more after its reply",
        ),
        ('send({"ok": "one, two"})', "interface_error", "runnable"),
        (
            'sys.stdout.write("x" * (5 << 20)); sys.stdout.flush(); time.sleep(60)',
            "interface_error",
            "flooding",
        ),
        (
            'send({"failed": "kernel_crash", "message": "assertion failed: q != 0"})',
            "kernel_crash",
            "assertion failed",
        ),
    ],
    ids=["exit", "signal", "hang", "not-json", "twice", "schema", "flood", "own-crash"],
)
def test_a_hostile_program_is_contained_and_reported(
    tmp_path: Path, body: str, property: str, says: str
) -> None:
    failure = first_failure(program(tmp_path, body), call_seconds=2.0)
    assert failure.property == property
    assert says in failure.message


def test_a_reply_that_comes_late_is_refused_at_the_next_request(tmp_path: Path) -> None:
    body = """
    send({"ok": []})
    time.sleep(0.2)
    send({"ok": []})  # out of turn, after the checker has its reply
    """
    config = checkconfig.load_reference("pair")
    factory = kernel_factory(f"exec:{program(tmp_path, body)}", config.limits)
    with released(factory):
        kernel = factory(config.hardware, config.kernel)
        assert kernel.runnable() == ()
        time.sleep(2.0)  # the late reply is in the pipe by now
        with pytest.raises(KernelFailed) as raised:
            kernel.runnable()
    assert raised.value.property == "interface_error"
    assert "before runnable(): the kernel sent what it was not asked for" in raised.value.message


def test_stderr_is_the_programs_own_and_is_quoted_when_it_fails(tmp_path: Path) -> None:
    body = """
    sys.stderr.write("debug: asked " + op + "\\n")
    if op == "runnable":
        send({"ok": []})
    else:
        sys.exit(4)
    """
    command = program(tmp_path, body)
    config = checkconfig.load_reference("pair")
    factory = kernel_factory(f"exec:{command}", config.limits)
    with released(factory):
        kernel = factory(config.hardware, config.kernel)
        assert kernel.runnable() == ()  # writing to stderr is no failure
        with pytest.raises(KernelFailed) as raised:
            kernel.view()
    assert raised.value.property == "kernel_exit"
    assert raised.value.message.count("debug: asked view") == 1  # quoted once, not twice


def test_a_program_that_does_not_say_hello_is_the_users_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "mute.py"
    path.write_text("import sys\nfor line in sys.stdin:\n    print('{\"ok\": 1}', flush=True)\n")
    config = checkconfig.load_reference("pair")
    factory = kernel_factory(f"exec:{PYTHON} {path}", config.limits)
    with released(factory), pytest.raises(KernelLoadError, match="answered hello with 1"):
        factory(config.hardware, config.kernel)
    with pytest.raises(UserError, match="no program 'no-such-kernel'"):
        kernel_factory("exec:no-such-kernel --fast", config.limits)


NONDETERMINISTIC = """
import os
from pagingcheck.impl.reference.kernel import ReferenceKernel

class Flaky(ReferenceKernel):
    def dispatch(self, port, pid):
        if os.urandom(1)[0] % 2:
            port.tlb_flush()  # harmless, but not the same twice
        return super().dispatch(port, pid)
"""


def test_re_execution_catches_a_program_that_does_not_repeat_itself(tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(NONDETERMINISTIC)
    command = f"env PYTHONPATH={tmp_path} {SERVED} --no-save flaky:Flaky"
    result = explored(command, pair(), max_states=60)
    assert [f.violation.property for f in result.violations] == ["interface_error"]
    assert "re-executed from the start" in result.violations[0].violation.message


# -- the command line --------------------------------------------------------------------


def pagingcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "pagingcheck.checks.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_validate_exec_catches_a_mutant_with_a_trace_that_replays(tmp_path: Path) -> None:
    command = f"{SERVED} pagingcheck.impl.mutants:reuse_busy_frame"
    done = pagingcheck(
        "validate", "--exec", command, "--profile", "dev", "--json", "--traces", str(tmp_path)
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["violation"]["property"] == "busy_frame_exclusive"
    trace = report["violation"]["trace"]
    refused = pagingcheck("replay", trace)
    assert refused.returncode == 2 and "--exec" in refused.stderr
    again = pagingcheck("replay", trace, "--exec", command, "--json")
    assert again.returncode == 1, again.stderr
    assert json.loads(again.stdout)["violation"]["property"] == "busy_frame_exclusive"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["validate"], "--impl MODULE:ATTR or --exec COMMAND"),
        (["validate", "--impl", "m:k", "--exec", "x"], "not both"),
        (["validate", "--exec", REFERENCE, "--in-process"], "a program of its own"),
        (["validate", "--exec", "'unclosed"], "No closing quotation"),
    ],
)
def test_exec_usage_errors_exit_2(args: list[str], says: str) -> None:
    done = pagingcheck(*args)
    assert done.returncode == 2
    assert says in done.stderr


# -- the schema --------------------------------------------------------------------------

TEE = """
import subprocess, sys, threading
log = open(sys.argv[1], "w")
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
def out():
    for line in child.stdout:
        log.write("K " + line.decode()); log.flush()
        sys.stdout.buffer.write(line); sys.stdout.buffer.flush()
threading.Thread(target=out, daemon=True).start()
for line in sys.stdin.buffer:
    log.write("C " + line.decode()); log.flush()
    child.stdin.write(line); child.stdin.flush()
"""


def validators() -> tuple[Any, Any]:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return tuple(
        jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{side}"})
        for side in ("to_kernel", "from_kernel")
    )


def test_every_message_of_a_real_exchange_fits_the_schema(tmp_path: Path) -> None:
    (tmp_path / "tee.py").write_text(TEE)
    log = tmp_path / "exchange.log"
    config = checkconfig.load_reference("software")  # software TLB refills: every port op
    explored(f"{PYTHON} {tmp_path / 'tee.py'} {log} {REFERENCE}", config, max_states=300)
    to_kernel, from_kernel = validators()
    lines = log.read_text().splitlines()
    kinds = set()
    for line in lines:
        side, message = line[0], json.loads(line[2:])
        (to_kernel if side == "C" else from_kernel).validate(message)
        kinds.add(message.get("port") or message.get("name") or message.get("op"))
    assert {"hello", "save", "restore", "boot", "on_trap", "probe", "submit"} <= kinds


@pytest.mark.parametrize(
    "message",
    [
        {"port": "write", "args": [1]},
        {"port": "warp", "args": []},
        {"ok": {"pid": -1}},
        {"ok": None, "events": [{"pid": 1}]},
        {"failed": "feeling_poorly", "message": "?"},
    ],
)
def test_the_schema_refuses_what_the_checker_refuses(message: dict[str, Any]) -> None:
    _, from_kernel = validators()
    assert not from_kernel.is_valid(message)


def test_the_schema_command_prints_the_shipped_schema() -> None:
    done = pagingcheck("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"].startswith("pagingcheck process protocol")


def test_a_configuration_fingerprinted_before_is_sent_as_its_fields() -> None:
    """A fingerprint keeps its encoding on the frozen configuration; hello must send the
    configuration's fields only (it once sent that encoding, bytes JSON cannot carry)."""
    config = pair()
    fingerprint(config.kernel, config.hardware)
    for spec, in_process in ((f"exec:{REFERENCE}", None), (REFERENCE_KERNEL, False)):
        with released(kernel_factory(spec, config.limits, in_process)) as factory:
            kernel = factory(config.hardware, config.kernel)
            assert kernel.runnable() == ()


CHATTY = """
from pagingcheck.impl.mutants import BY_NAME, factory

build = factory(BY_NAME["reuse_busy_frame"])

def chatty(hardware, kernel):
    print("building a kernel with", kernel.policy)  # a served kernel's stdout is stderr
    return build(hardware, kernel)
"""


def test_the_programs_stderr_is_kept_in_the_trace(tmp_path: Path) -> None:
    (tmp_path / "chatty.py").write_text(CHATTY)
    command = f"env PYTHONPATH={tmp_path} {SERVED} chatty:chatty"
    config = pair()
    with released(kernel_factory(f"exec:{command}", config.limits)) as factory:
        result = explore(config, factory, f"exec:{command}", tmp_path)
    (finding,) = result.violations
    assert finding.violation.property == "busy_frame_exclusive"
    trace = traces.load(Path(str(finding.trace)).read_text())
    assert "building a kernel with fifo" in trace.stderr
    assert "kernel_stderr:" in Path(str(finding.trace)).read_text()
