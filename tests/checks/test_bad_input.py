"""Bad input gets exit 2 and one clear line, never a traceback; a replay is exact or says
why not. One test per failure class seen when users fed pagingcheck malformed input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pagingcheck.checks import traces
from pagingcheck.checks.cli import cli
from pagingcheck.checks.config import CheckConfig
from pagingcheck.checks.mutants import mutant_config
from pagingcheck.checks.output import JSON_SCHEMA, RESULTS_SCHEMA
from pagingcheck.checks.runner import run_choices
from pagingcheck.checks.system import Choice
from pagingcheck.impl.mutants import BY_NAME, factory

WORKLOAD = 'workload:\n  programs: [{name: p, text: "SYS 0"}]\n'
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else 'x, x, x, x, x, x, x, x, x'}]\n"
    for prev, name in zip(["", *"abcdefg"], "abcdefgh", strict=True)
)


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the command line in this process: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def refused(*args: str) -> str:
    """The one line a command refusing its input prints; asserts the exit-2 contract."""
    code, out, err = invoke(*args)
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("pagingcheck: error: ") and len(err) < 1200
    return err


# -- configurations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"hardware: {user_frames: 4}\n\xff\xfe\n", "line 2: not UTF-8 text (byte 0xff)"),
        (f"budget: {{examples: {'9' * 5000}}}\n".encode(), "an integer of 5000 digits"),
        (("a: " + "[" * 500 + "]" * 500 + "\n").encode(), "collections nest more than 64 deep"),
        (BOMB.encode(), "expand to more than 1000000 values"),
        (b"hardware: {user_frames: [\n", "not valid YAML: line 2, column 1"),
        (b"steps: 5\n", "unknown key 'steps'"),
        (WORKLOAD.encode() + b"  timer: 'false'\n", "workload.timer: expected true or false"),
        (WORKLOAD.encode() + b"  initial: [-1]\n", "workload.initial[0] (a program index)"),
        (WORKLOAD.encode() + b"  initial: [true]\n", "got True"),
        (
            f'workload:\n  programs: [{{name: p, text: "MOV #{"9" * 5000}, r1"}}]\n'.encode(),
            "a number of 5000 digits does not fit a 32-bit word",
        ),
        (b"hardware: {image_blocks: 1000000000}\n" + WORKLOAD.encode(), "words of disk"),
        (b"hardware: {kernel_frames: 16000000}\n" + WORKLOAD.encode(), "words of memory"),
        (b"hardware: {tlb_entries: 1000000000}\n" + WORKLOAD.encode(), "model allows (4096)"),
        (b"hardware: {page_words: 1073741824}\n" + WORKLOAD.encode(), "model allows (65536)"),
        (
            WORKLOAD.encode() + b"  programs: [{name: p, text: 'SYS 0', shared: "
            b"[{name: s, vpn: 3, pages: 100000000000}]}]\n",
            "workload",
        ),
    ],
)
def test_a_bad_configuration_is_one_line_and_exit_2(
    text: bytes, words: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    started = time.monotonic()
    err = refused("verify", "--config", str(path), "--traces", str(tmp_path / "t"))
    assert words in err
    assert str(path) in err or "workload" in err or "hardware" in err
    assert time.monotonic() - started < 60  # refused up front, not after a long run


def test_prepage_is_accepted_inside_a_variant_as_at_the_top(tmp_path: Path) -> None:
    from pagingcheck.checks import config as checkconfig

    base = checkconfig.load(None).raw
    variant = {"name": "v", "kernel": {"prepage": [0, 1]}}
    config = checkconfig.parse_config({**base, "variants": [variant]})
    assert config.expand()[0][1].kernel.prepage == (0, 1)


def test_traces_must_name_a_folder_before_the_run_starts(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    err = refused("verify", "--traces", str(taken))
    assert "is a file; name a folder" in err


def test_a_folder_given_as_the_configuration_is_named(tmp_path: Path) -> None:
    assert "is a folder" in refused("verify", "--config", str(tmp_path))


def test_usage_errors_are_one_line() -> None:
    assert "(see 'pagingcheck simulate --help')" in refused("simulate", "-p", "lru")
    assert "No such command" in refused("nosuch")


# -- simulate -------------------------------------------------------------------------------


def test_simulate_refuses_absurd_numbers_in_one_line(tmp_path: Path) -> None:
    huge = "9" * 5000
    assert "5000 digits is too large" in refused("simulate", "-p", "lru", "-n", "3", "--refs", huge)
    refs = tmp_path / "refs"
    refs.write_text(f"1\n{huge}\n")
    err = refused("simulate", "-p", "lru", "-n", "3", "--refs-file", str(refs))
    assert f"{refs}:2" in err
    refs.write_text(f"1\n{'9' * 100}\n")  # within Python's digit limit, beyond 64 bits
    assert "too large" in refused("simulate", "-p", "lru", "-n", "3", "--refs-file", str(refs))
    assert "1<=x<=16777216" in refused("simulate", "-p", "lru", "-n", str(10**12), "--refs", "1")


def test_simulate_refuses_a_lackey_record_of_absurd_size(tmp_path: Path) -> None:
    log = tmp_path / "lackey"
    log.write_text(" L 0400,8\n S ffffff,999999999999\n")
    err = refused("simulate", "-p", "lru", "-n", "3", "--refs-file", str(log), "--lackey")
    assert f"{log}:2: an access of 999999999999 bytes" in err


def test_a_closed_standard_output_keeps_the_exit_code_and_is_quiet() -> None:
    command = [sys.executable, "-m", "pagingcheck.checks.cli"]
    process = subprocess.Popen(
        [*command, "simulate", "-p", "lru", "-n", "2", "--refs", "1,2,3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader goes away before anything is written
    err = process.stderr.read()
    assert process.wait(60) == 0
    assert err == b""


# -- traces -----------------------------------------------------------------------------------


def written_trace(config: CheckConfig, tmp_path: Path) -> Path:
    """A trace file of a mutant's violation, as verify writes it."""
    mutant = BY_NAME["reuse_busy_frame"]
    run = mutant_config(config, mutant)
    choices: list[Choice] = [("run", 1)]
    result = run_choices(run, factory(mutant), choices)
    trace = traces.from_run(run, f"pagingcheck.impl.mutants:{mutant.name}", choices, result)
    return traces.write(trace, tmp_path, "t")


def edited(path: Path, change: dict[str, object], drop: tuple[str, ...] = ()) -> Path:
    data = yaml.safe_load(path.read_text())
    data.update(change)
    for key in drop:
        data.pop(key)
    out = path.with_name("edited.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_a_written_trace_records_its_version_and_digest(
    default_config: CheckConfig, tmp_path: Path
) -> None:
    data = yaml.safe_load(written_trace(default_config, tmp_path).read_text())
    assert data["pagingcheck_version"] == traces.VERSION
    assert data["config_digest"].startswith("sha256:")


def test_a_trace_whose_choices_no_longer_apply_is_not_a_pass(
    default_config: CheckConfig, tmp_path: Path
) -> None:
    path = edited(written_trace(default_config, tmp_path), {"choices": [["run", 999]]})
    err = refused("replay", str(path))
    assert "its choice 1 (run 999) is not enabled there" in err


@pytest.mark.parametrize(
    ("change", "drop", "words"),
    [
        ({}, ("hardware",), "hardware: missing"),
        ({}, ("limits",), "limits: missing"),
        ({"steps": 5}, ("config_digest",), "steps: expected a list, got int"),
        ({"state_difference": "x"}, (), "state_difference: expected a list, got str"),
        ({"choices": [["run", "1"]]}, (), "choices[0]: run takes 1 argument"),
        ({"choices": [["run", True]]}, (), "choices[0]: run takes 1 argument"),
        ({"fair_from": 99}, (), "fair_from (a choice index)"),
        ({"bogus": 1}, (), "trace: unknown key 'bogus'"),
        ({"pagingcheck_version": "0.0.1"}, (), "written by pagingcheck '0.0.1'"),
    ],
)
def test_a_malformed_trace_is_refused_with_its_reason(
    change: dict[str, object],
    drop: tuple[str, ...],
    words: str,
    default_config: CheckConfig,
    tmp_path: Path,
) -> None:
    path = edited(written_trace(default_config, tmp_path), change, drop)
    assert words in refused("replay", str(path))


@pytest.mark.parametrize(
    ("section", "value", "words"),
    [
        ("workload", {"timer": "false"}, "workload.timer: expected true or false"),
        ("workload", {"initial": [-1]}, "workload.initial[0]"),
        ("hardware", {"user_frames": "4"}, "hardware.user_frames: expected an integer"),
    ],
)
def test_an_ill_typed_trace_value_is_never_guessed(
    section: str, value: dict[str, object], words: str, default_config: CheckConfig, tmp_path: Path
) -> None:
    path = written_trace(default_config, tmp_path)
    data = yaml.safe_load(path.read_text())
    data[section].update(value)
    data.pop("config_digest")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert words in refused("replay", str(path))


def test_an_edited_trace_is_told_apart_and_can_be_replayed_on_purpose(
    default_config: CheckConfig, tmp_path: Path
) -> None:
    path = written_trace(default_config, tmp_path)
    data = yaml.safe_load(path.read_text())
    data["workload"]["timer"] = not data["workload"]["timer"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "delete its config_digest line" in refused("replay", str(path))
    data.pop("config_digest")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, _ = invoke("replay", str(path), "--json")
    assert code == 1 and json.loads(out)["violation"]["property"] == "busy_frame_exclusive"


def test_a_trace_of_another_version_replays_only_when_asked(
    default_config: CheckConfig, tmp_path: Path
) -> None:
    path = edited(written_trace(default_config, tmp_path), {"pagingcheck_version": "0.0.1"})
    code, out, _ = invoke("replay", str(path), "--any-version", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_two_runs_never_share_a_trace_file(default_config: CheckConfig, tmp_path: Path) -> None:
    first = written_trace(default_config, tmp_path)
    second = written_trace(default_config, tmp_path)
    assert first != second and first.exists() and second.exists()
    assert second.name == "t-2.yaml"


# -- interruption -----------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is how Ctrl-C arrives on POSIX")
def test_ctrl_c_exits_130_and_says_so(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "pagingcheck.checks.cli", "validate"),
            *("--traces", str(tmp_path)),
            *("--impl", "pagingcheck.impl.reference:ReferenceKernel"),  # no proofs to wait for
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PAGINGCHECK_PROFILE": "thorough"},
        # As at a terminal: a shell running the tests in the background ignores SIGINT,
        # and a child inherits that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    line = b"["
    while not line.startswith((b"[1/", b"[checks]")):  # until the checks have begun
        line = process.stderr.readline()
        assert line, "validate ended before its first check"
    time.sleep(0.5)  # into the campaigns, on every worker
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    # The workers went with it (they would run on, holding its output open).
    time.sleep(0.5)
    assert not _running_with(str(tmp_path))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_killed_parallel_run_leaves_no_worker_running(tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to stop its workers: they must go by themselves,
    with their kernels, not run their campaigns on for minutes."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "pagingcheck.checks.cli", "validate", "-j", "2"),
            *("--traces", str(tmp_path), "--impl", "pagingcheck.impl.reference:ReferenceKernel"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith(b"[checks] ")
    time.sleep(1.0)  # the workers are into their campaigns
    assert len(_running_with(str(tmp_path))) >= 3, "no workers to outlive their parent"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while _running_with(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _running_with(str(tmp_path))
    for pid in _pids_with(str(tmp_path)):  # never leave them behind, even when failing
        os.kill(pid, signal.SIGKILL)
    assert not left


def _pids_with(word: str) -> list[int]:
    return [
        int(entry.parent.name)
        for entry in Path("/proc").glob("[0-9]*/cmdline")
        if word in _read(entry)
    ]


def _read(entry: Path) -> str:
    try:
        return entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


def _running_with(word: str) -> list[str]:
    """The command lines of the processes running that contain ``word`` (Linux: from
    /proc; elsewhere none are seen)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        line = _read(entry)
        try:
            state = (entry.parent / "stat").read_text().split(") ", 1)[1][0]
        except OSError:  # ended meanwhile
            continue
        if word in line and state != "Z":
            found.append(line)
    return found


SWALLOWER = """
import sys, time
from pagingcheck.checks import cli
cli.INTERRUPT_GRACE = {grace}

@cli.cli.command("swallow")
def swallow() -> None:
    print("ready", file=sys.stderr, flush=True)
    while True:
        try:
            time.sleep(60)
        except KeyboardInterrupt:  # as a careless library or kernel would
            pass

cli.cli.main(["swallow"])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is how Ctrl-C arrives on POSIX")
@pytest.mark.parametrize(("grace", "presses"), [(0.5, 1), (600, 2)])
def test_ctrl_c_ends_the_run_even_when_code_swallows_it(grace: float, presses: int) -> None:
    """One Ctrl-C ends the process after the grace period; a second one at once."""
    process = subprocess.Popen(
        [sys.executable, "-c", SWALLOWER.format(grace=grace)],
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    assert process.stderr.readline() == b"ready\n"
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.count(b"interrupted") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is how Ctrl-C arrives on POSIX")
def test_an_interrupted_run_prints_the_verdicts_it_had(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "pagingcheck.checks.cli", "validate"),
            *("--impl", "pagingcheck.impl.reference:ReferenceKernel", "--traces", str(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PAGINGCHECK_PROFILE": "dev"},  # the first verdict within seconds
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    line = b""
    while b": PASS" not in line:  # until the first variant's verdict is known
        line = process.stderr.readline()
        assert line, "validate ended before its first verdict"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert re.search(rb"^PASS  stateful:[\w-]+ ", out, re.M)  # the first to finish, on -j
    assert b"INTERRUPTED after " in out and b"pass:" not in out
    assert b"pagingcheck: interrupted" in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_a_terminated_json_run_prints_its_violation_and_is_never_a_pass(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "pagingcheck.checks.cli", "validate", "--json"),
            *("--impl", "pagingcheck.impl.mutants:reuse_busy_frame", "--traces", str(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PAGINGCHECK_PROFILE": "thorough"},
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*.yaml")):  # the first variant's counterexample is written
        assert process.poll() is None, "validate ended before it found anything"
        assert time.monotonic() < deadline, "no trace written in two minutes"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    report = json.loads(out)
    assert report["ok"] is False and report["interrupted"] is True
    assert report["violation"]["property"] == "busy_frame_exclusive"
    assert Path(report["violation"]["trace"]).parent == tmp_path
    assert b"pagingcheck: terminated" in err


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--config", "/no/such.yaml", "--json"],
        ["verify", "--json", "--bogus"],
        ["explore", "--json", "--reference", "huge"],
    ],
)
def test_with_json_a_usage_error_is_also_a_json_object_on_stdout(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    results = json.loads(RESULTS_SCHEMA.read_text())
    jsonschema.Draft202012Validator(results).validate(error)
    assert error["command"] == args[0] and error["schema"] == JSON_SCHEMA
    assert error["ok"] is False and error["error"]["kind"] == "usage"
    assert error["error"]["exit"] == 2
    assert result.stderr.startswith("pagingcheck: error: ")
    assert error["error"]["message"] in result.stderr
    plain = CliRunner().invoke(cli, [arg for arg in args if arg != "--json"])
    assert plain.exit_code == 2 and plain.stdout == ""
