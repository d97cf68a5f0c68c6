"""A kernel from outside pagingcheck runs contained: whatever it does, the checker goes on,
reports it under its own name with a trace that replays, and never calls it a pass."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pagingcheck.checks.cli import cli
from pagingcheck.checks.refinement import CONDUCT_PROPERTIES
from pagingcheck.checks.system import kernel_query

TINY = """
hardware: {user_frames: 4, va_pages: 16}
workload:
  initial: [0, 0]
  programs:
    - name: loop
      data: [1, 2, 3]
      heap_pages: 1
      text: |
        MOV #16, r1
        MOV #32, r2
        MOV (r1)+, (r2)+
        SYS 0
budget: {examples: 3, steps: 30, shrink_seconds: 2}
limits: {call_seconds: 1.5, memory_mb: 512}
"""

PREAMBLE = """
import os, sys, threading, time
from pagingcheck.impl.reference import ReferenceKernel
from pagingcheck.impl.interface import FrameView
import dataclasses


class Base(ReferenceKernel):
    pass


"""

#: name -> (the kernel class body, the property it must violate, words of the message)
HOSTILE: dict[str, tuple[str, str, str]] = {
    "exit_in_a_hook": (
        "def on_disk(self, port, request):\n    sys.exit(0)",
        "kernel_exit",
        "exit(0)",
    ),
    "hard_exit_in_a_hook": (
        "def dispatch(self, port, pid):\n    os._exit(0)",
        "kernel_exit",
        "exited with status 0",
    ),
    "hard_exit_at_boot": (
        "def boot(self, port):\n    os._exit(3)",
        "kernel_exit",
        "exited with status 3",
    ),
    "abort_in_a_hook": (
        "def on_trap(self, port, trap):\n    os.abort()",
        "kernel_crash",
        "SIGABRT",
    ),
    "hang_in_view": (
        "def view(self):\n    while True:\n        pass",
        "kernel_hang",
        "did not answer within 1.5 seconds",
    ),
    "hang_that_swallows_exceptions": (
        "def on_disk(self, port, request):\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(0.01)\n"
        "        except BaseException:\n"
        "            pass",
        "kernel_hang",
        "within 1.5 seconds",
    ),
    "one_long_c_call": (
        "def on_disk(self, port, request):\n    time.sleep(1000)",
        "kernel_hang",
        "within 1.5 seconds",
    ),
    "stray_thread": (
        "def boot(self, port):\n"
        "    threading.Thread(target=time.sleep, args=(1000,)).start()\n"
        "    return super().boot(port)",
        "kernel_thread",
        "started a thread",
    ),
    "unbounded_allocation": (
        "def on_disk(self, port, request):\n"
        "    hoard = []\n"
        "    while True:\n"
        "        hoard.append(bytearray(1 << 20))",
        "kernel_oom",
        "ran out of memory",
    ),
    "prints_in_a_hook": (
        "def dispatch(self, port, pid):\n"
        "    print('dispatching', pid)\n"
        "    return super().dispatch(port, pid)",
        "kernel_output",
        "dispatching",
    ),
    "frames_as_ints": (
        "def view(self):\n    return dataclasses.replace(super().view(), frames=(1, 2, 3))",
        "interface_error",
        "view().frames",
    ),
    "user_error_in_a_hook": (
        "def on_disk(self, port, request):\n"
        "    from pagingcheck.model.errors import UserError\n"
        "    raise UserError('not the user: the kernel')",
        "kernel_crash",
        "UserError: not the user: the kernel",
    ),
    "pids_as_strings": (
        "def runnable(self):\n    return tuple(str(pid) for pid in super().runnable())",
        "interface_error",
        "runnable()",
    ),
}


def write_kernel(folder: Path, name: str, body: str) -> None:
    source = PREAMBLE + "class Hostile(Base):\n" + textwrap.indent(body, "    ") + "\n\n"
    source += "def build(hardware, kernel):\n    return Hostile(hardware, kernel)\n"
    (folder / f"{name}.py").write_text(source)


def validate(folder: Path, name: str, *extra: str) -> tuple[int, str, str]:
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    result = CliRunner().invoke(
        cli,
        [
            "validate",
            "--impl",
            f"{name}:build",
            "--config",
            str(config),
            "--traces",
            str(folder / "traces"),
            "--json",
            *extra,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


SCRIBBLER = """
class Hostile(Base):
    def dispatch(self, port, pid):
        import random
        rng = random.Random(pid)
        words = self.hardware.kernel_frames * self.hardware.page_words
        for _ in range(64):
            port.write(rng.randrange(words), rng.randrange(1 << 32))
        return super().dispatch(port, pid)


def build(hardware, kernel):
    return Hostile(hardware, kernel)
"""


@pytest.mark.parametrize("in_process", [False, True])
def test_a_kernel_scribbling_on_its_own_memory_is_a_violation_described(
    in_process: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its page tables become noise; describing what broke must not break the checker.
    (tmp_path / "scribbler.py").write_text(PREAMBLE + SCRIBBLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = validate(tmp_path, "scribbler", *(["--in-process"] if in_process else []))
    assert code == 1 and "Traceback" not in err
    violation = json.loads(out)["violation"]
    assert violation["property"] not in CONDUCT_PROPERTIES
    assert yaml.safe_load(Path(violation["trace"]).read_text())["violation"]["why"]


def test_every_conduct_property_has_a_hostile_kernel() -> None:
    assert {prop for _, prop, _ in HOSTILE.values()} == CONDUCT_PROPERTIES


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_kernel_is_contained_and_named(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, prop, words = HOSTILE[name]
    write_kernel(tmp_path, name, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Little memory to spare, so running out is quick: the verdict must not be a hang.
    memory = 256 if name == "unbounded_allocation" else 512
    code, out, err = validate(tmp_path, name, "--memory-mb", str(memory))
    assert "Traceback" not in err
    data = json.loads(out)  # one JSON object, whatever the kernel printed
    assert code == 1 and data["ok"] is False
    assert data["violation"]["property"] == prop
    trace = yaml.safe_load(Path(data["violation"]["trace"]).read_text())
    assert words in trace["violation"]["why"]
    assert trace["limits"] == {"call_seconds": 1.5, "memory_mb": memory}


@pytest.mark.parametrize("name", ["hard_exit_in_a_hook", "hang_in_view", "pids_as_strings"])
def test_a_containment_verdict_replays(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, prop, _ = HOSTILE[name]
    write_kernel(tmp_path, name, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    _, out, _ = validate(tmp_path, name)
    trace = json.loads(out)["violation"]["trace"]
    result = CliRunner().invoke(cli, ["replay", trace, "--impl", f"{name}:build", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["violation"]["property"] == prop


def test_a_module_that_exits_as_it_is_imported_is_not_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leaves.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = validate(tmp_path, "leaves")
    assert code == 2 and json.loads(out)["error"]["kind"] == "usage"  # --json: on stdout too
    assert "cannot load the kernel: the module called exit(0)" in err
    assert len(err.strip().splitlines()) == 1


def test_in_process_kernels_are_checked_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ("exit_in_a_hook", "frames_as_ints", "pids_as_strings", "user_error_in_a_hook")
    for name in (*names, "prints_in_a_hook"):
        body, prop, _ = HOSTILE[name]
        write_kernel(tmp_path, name, body)
        monkeypatch.syspath_prepend(str(tmp_path))
        code, out, _ = validate(tmp_path, name, "--in-process")
        assert code == 1 and json.loads(out)["violation"]["property"] == prop, name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_hung_kernel_dies_with_a_checker_killed_mid_call(tmp_path: Path) -> None:
    # A kernel spinning in a loop never notices its pipe closing; were it not
    # tied to the checker's life it would outlive a checker killed by Ctrl-C.
    pid_file = tmp_path / "pid"
    (tmp_path / "spins.py").write_text(
        f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    pass\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pagingcheck.checks.config import Limits\n"
            "from pagingcheck.checks.contained import contained_factory\n"
            "contained_factory('spins:build', Limits(call_seconds=600)).host.ensure()\n",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the kernel's module never ran"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has died; it waits only for its (gone) parent's reaper.
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_ctrl_c_during_a_contained_hang_exits_130_at_once(tmp_path: Path) -> None:
    # Hypothesis tears a run down while the interrupt is on its way up; the teardown
    # must not go on calling the hung kernel.
    write_kernel(tmp_path, "sleeper", HOSTILE["one_long_c_call"][0])
    (tmp_path / "tiny.yaml").write_text(TINY)
    command = [sys.executable, "-m", "pagingcheck.checks.cli", "validate", "--impl"]
    command += ["sleeper:build", "--config", str(tmp_path / "tiny.yaml"), "--call-seconds"]
    process = subprocess.Popen(
        [*command, "600", "--traces", str(tmp_path / "traces")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith((b"[1/", b"[checks]"))
    time.sleep(1)  # into the hung call
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err


def test_a_pause_of_the_checkers_own_garbage_collector_is_not_the_kernels_time() -> None:
    """A collection over the checker's objects (a large exploration's) can pause for
    seconds; inside a kernel call its pause would count against the kernel's time limit.
    None starts inside the call: the collector runs once the call has returned."""
    inside = [False]
    started: list[bool] = []  # for each collection started: was it inside the call?

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(inside[0])

    def allocating() -> int:
        inside[0] = True
        kept = [[index] for index in range(20_000)]  # far past a young generation's threshold
        inside[0] = False
        return len(kept)

    gc.callbacks.append(watch)
    try:
        assert kernel_query("view()", allocating, seconds=10) == 20_000
        after = [[index] for index in range(20_000)]
    finally:
        gc.callbacks.remove(watch)
    assert len(after) == 20_000 and gc.isenabled()
    assert started and not any(started)
