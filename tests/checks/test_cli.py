"""The command-line contract: one JSON object with --json; exit 0 held, 1 violated, 2 bad input,
3 an internal error of pagingcheck."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import jobs, manual
from pagingcheck.checks.cli import cli
from pagingcheck.checks.commands import Progress
from pagingcheck.checks.helptext import HELP
from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory
from pagingcheck.checks.verify import small_exploration
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.minimal.kernel import MinimalKernel
from pagingcheck.model.config import HardwareConfig

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
        MOV (r1)+, (r2)+
        SYS 0
budget: {examples: 5, steps: 40, shrink_seconds: 5}
"""

BROKEN_KERNEL = '''
"""A kernel outside the package: the reference kernel, but it forgets to flush
the TLB on a context switch."""
from pagingcheck.impl.reference.kernel import ReferenceKernel


class NoFlush:
    """The hardware port, with TLB flushes lost on the way."""

    def __init__(self, port):
        self.port = port

    def __getattr__(self, name):
        return getattr(self.port, name)

    def tlb_flush(self):
        pass


class Forgetful(ReferenceKernel):
    def dispatch(self, port, pid):
        return super().dispatch(NoFlush(port), pid)


def build(hardware, kernel):
    return Forgetful(hardware, kernel)


def good(hardware, kernel):
    return ReferenceKernel(hardware, kernel)
'''


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout


def test_verify_json_on_a_small_configuration(tiny: Path, tmp_path: Path) -> None:
    code, out = run("verify", "--config", str(tiny), "--traces", str(tmp_path), "--json")
    data = json.loads(out)
    assert set(data) >= {"ok", "results", "violation", "seed", "coverage", "coverage_required"}
    assert all({"name", "ok"} <= set(check) for check in data["results"])
    stateful = [c for c in data["results"] if c["name"].startswith("stateful:")]
    assert stateful and all(c["ok"] for c in stateful)
    # a focused configuration requires no coverage unless it says so
    assert "coverage" not in [c["name"] for c in data["results"]]
    assert data["coverage"]["fault:page_fault"] > 0 and data["coverage_required"] == []
    assert code == 0 and data["ok"] is True


def test_verify_fails_only_on_the_situations_a_configuration_requires(
    tmp_path: Path,
) -> None:
    reached = tmp_path / "reached.yaml"
    reached.write_text(TINY + "coverage: [fault:page_fault, evict:clean]\n")
    code, out = run("verify", "--config", str(reached), "--traces", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["coverage_required"] == ["fault:page_fault", "evict:clean"]
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(TINY + "coverage: [fault:page_fault, protection_kill]\n")
    code, out = run("verify", "--config", str(unreachable), "--traces", str(tmp_path), "--json")
    coverage = next(c for c in json.loads(out)["results"] if c["name"] == "coverage")
    assert code == 1 and coverage["unreached"] == ["protection_kill"]
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(TINY + "coverage: [page_fault]\n")
    result = CliRunner().invoke(cli, ["verify", "--config", str(unknown)])
    assert result.exit_code == 2 and "unknown situation 'page_fault'" in result.stderr


def test_bad_configuration_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hardware: {page_words: 5}\n")
    result = CliRunner().invoke(cli, ["verify", "--config", str(bad)])
    assert result.exit_code == 2
    assert "page_words" in result.stderr and "Traceback" not in result.stderr


def test_validate_an_external_kernel(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "outside_kernel.py"
    module.write_text(textwrap.dedent(BROKEN_KERNEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "untagged.yaml"
    config.write_text(
        TINY.replace(
            "{user_frames: 4, va_pages: 16}", "{user_frames: 4, va_pages: 16, tlb_tagged: false}"
        )
    )
    traces = tmp_path / "traces"
    code, out = run(
        "validate",
        "--impl",
        "outside_kernel:good",
        "--config",
        str(config),
        "--traces",
        str(traces),
        "--json",
    )
    data = json.loads(out)
    assert (code, data["ok"], data["violation"]) == (0, True, None)
    assert data["coverage"]["fault:page_fault"] > 0
    code, out = run(
        "validate",
        "--impl",
        "outside_kernel:build",
        "--config",
        str(config),
        "--traces",
        str(traces),
        "--json",
    )
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert data["violation"]["property"] == "tlb_agrees"
    trace = Path(data["violation"]["trace"])
    assert trace.exists()
    # a trace is data: replaying it imports the kernel it names only when told to
    result = CliRunner().invoke(cli, ["replay", str(trace), "--json"])
    assert result.exit_code == 2 and "--impl outside_kernel:build" in result.stderr
    code, out = run("replay", str(trace), "--impl", "outside_kernel:build", "--json")
    assert code == 1 and json.loads(out)["violation"]["property"] == "tlb_agrees"
    code, _ = run("replay", str(trace), "--impl", "outside_kernel:good")
    assert code == 0


def test_validate_names_an_unimportable_kernel() -> None:
    result = CliRunner().invoke(cli, ["validate", "--impl", "no_such_module:build"])
    assert result.exit_code == 2 and "cannot load the kernel: ModuleNotFoundError" in result.stderr


def test_replay_rejects_a_malformed_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("pagingcheck_trace: 1\nhardware: [\n")
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    result = CliRunner().invoke(cli, ["replay", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_mutants_json_kill_matrix(tmp_path: Path) -> None:
    code, out = run(
        "mutants",
        "--only",
        "reuse_busy_frame",
        "--only",
        "pte_maps_kernel_frame",
        "--traces",
        str(tmp_path),
        "--json",
    )
    data = json.loads(out)
    assert code == 0
    assert (data["total"], data["killed"]) == (2, 2)
    row = data["results"][0]
    assert {"name", "killed", "by", "seconds", "trace_steps"} <= set(row)
    assert row["by"] == "busy_frame_exclusive" and row["trace_steps"] >= 1
    code, _ = run("mutants", "--only", "nonsense")
    assert code == 2


HANGING_KERNEL = """
from pagingcheck.impl.reference.kernel import ReferenceKernel


class Stuck(ReferenceKernel):
    def on_disk(self, port, request):
        while True:
            pass


def build(hardware, kernel):
    return Stuck(hardware, kernel)
"""


def test_a_hanging_kernel_fails_cleanly(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagingcheck.checks import system

    monkeypatch.setattr(system, "HOOK_SECONDS", 0.2)
    (tmp_path / "stuck_kernel.py").write_text(HANGING_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out = run(
        "validate",
        "--impl",
        "stuck_kernel:build",
        "--config",
        str(tiny),
        "--call-seconds",
        "1",  # every hang costs this: in the campaign, the exploration and its replay
        "--traces",
        str(tmp_path / "traces"),
        "--json",
    )
    data = json.loads(out)
    assert code == 1 and data["violation"]["property"] == "kernel_hang"


BLIND_KERNEL = """
from pagingcheck.impl.reference.kernel import ReferenceKernel


class Blind(ReferenceKernel):
    def view(self):
        raise RuntimeError("no view today")


def build(hardware, kernel):
    return Blind(hardware, kernel)
"""


def test_a_kernel_failing_outside_its_calls_is_a_violation(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "blind_kernel.py").write_text(BLIND_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out = run(
        "validate",
        "--impl",
        "blind_kernel:build",
        "--config",
        str(tiny),
        "--traces",
        str(tmp_path / "traces"),
        "--json",
    )
    data = json.loads(out)
    assert code == 1 and data["violation"]["property"] == "kernel_crash"
    trace = yaml.safe_load(Path(data["violation"]["trace"]).read_text())
    assert "view() raised RuntimeError: no view today" in trace["violation"]["why"]


BLAMED_KERNEL = """
from pagingcheck.impl.reference.kernel import ReferenceKernel
from pagingcheck.model.errors import UserError


class Raising(ReferenceKernel):
    def on_disk(self, port, request):
        raise UserError("the kernel's own UserError is its crash")


class Wild(ReferenceKernel):
    def on_disk(self, port, request):
        port.write(port.config.memory_words + 5, 1)
        return ()


def raising(hardware, kernel):
    return Raising(hardware, kernel)


def wild(hardware, kernel):
    return Wild(hardware, kernel)
"""


@pytest.mark.parametrize(
    ("attr", "prop", "words"),
    [
        ("raising", "kernel_crash", "raised UserError: the kernel's own UserError is its crash"),
        ("wild", "port_rules", "on_disk(): write: physical address"),
    ],
)
def test_a_kernel_failing_inside_its_call_is_a_violation_with_its_place(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attr: str, prop: str, words: str
) -> None:
    (tmp_path / "blamed_kernel.py").write_text(BLAMED_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    traces = tmp_path / "traces"
    code, out = run(
        "validate",
        "--impl",
        f"blamed_kernel:{attr}",
        "--config",
        str(tiny),
        "--traces",
        str(traces),
        "--json",
    )
    data = json.loads(out)
    assert code == 1 and data["violation"]["property"] == prop
    trace = yaml.safe_load(Path(data["violation"]["trace"]).read_text())
    assert words in trace["violation"]["why"]
    assert "blamed_kernel.py" in trace["violation"]["witness"]["at"]
    assert data["violation"]["replay"].endswith(f"--impl blamed_kernel:{attr}")


def test_a_crash_shows_the_kernels_own_traceback(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "blamed_kernel.py").write_text(BLAMED_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["--impl", "blamed_kernel:raising", "--config", str(tiny), "-x"]
    code, out = run("validate", *common, "--traces", str(tmp_path / "t"), "-v")
    assert code == 1
    assert 'blamed_kernel.py", line 8, in on_disk' in out  # the kernel's frame, its line
    assert "UserError: the kernel's own UserError is its crash" in out
    assert "pagingcheck/checks" not in out.split("traceback")[1]  # none of the checker's
    assert "next: pagingcheck replay" in out and "--impl blamed_kernel:raising" in out
    code, brief = run("validate", *common, "--traces", str(tmp_path / "u"))
    assert code == 1 and "-v prints the kernel's traceback" in brief
    assert "line 8, in on_disk" not in brief
    # -x stops at the first failure; a check already finished on another process (the
    # exploration beside the campaign) may have written its trace too.
    written = sorted((tmp_path / "t").glob("*.yaml"))[0]
    trace = yaml.safe_load(written.read_text())
    assert trace["violation"]["traceback"].endswith("its crash")
    code, replayed = run("replay", str(written), "--impl", "blamed_kernel:raising")
    assert code == 1 and 'blamed_kernel.py", line 8, in on_disk' in replayed


def test_a_bug_in_pagingcheck_exits_3_and_is_not_blamed_on_the_kernel(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagingcheck.model.errors import InternalError
    from pagingcheck.model.memory import PhysicalMemory

    def broken_fill(self: PhysicalMemory, pfn: int, data: object) -> None:
        raise InternalError("the hardware model broke while filling a frame")

    monkeypatch.setattr(PhysicalMemory, "fill_frame", broken_fill)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(
        cli, ["verify", "--config", str(tiny), "--traces", str(tmp_path), "--json"]
    )
    assert result.exit_code == 3
    assert "internal error: this is a bug in pagingcheck, not in the kernel" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    (saved,) = tmp_path.glob("pagingcheck-internal-error-*.txt")
    assert str(saved) in result.stderr
    assert "Traceback" in saved.read_text() and "fill_frame" in saved.read_text()
    assert "kernel_crash" not in result.stdout + result.stderr


def test_a_variant_or_format_that_misses_a_situation_it_needs_is_named(tmp_path: Path) -> None:
    config = tmp_path / "each.yaml"
    config.write_text(
        TINY
        + "variants: [{name: plain}, {name: linear, hardware: {page_table: linear}}]\n"
        + "coverage: {every_variant: [fault:page_fault, protection_kill],\n"
        + "           every_format: [fault:page_fault, protection_kill]}\n"
    )
    code, out = run("verify", "--config", str(config), "--traces", str(tmp_path), "--json")
    checks = {c["name"]: c for c in json.loads(out)["results"]}
    each, formats = checks["coverage:every_variant"], checks["coverage:every_format"]
    assert code == 1 and not each["ok"] and not formats["ok"]
    assert each["unreached_by_variant"] == {
        "plain": ["protection_kill"],
        "linear": ["protection_kill"],
    }
    assert formats["unreached_by_format"] == {
        "linear": ["protection_kill"],
        "multilevel": ["protection_kill"],
    }
    assert formats["detail"] == (
        "linear never reached protection_kill; multilevel never reached protection_kill"
    )


def test_a_coverage_shortfall_under_a_smaller_profile_says_so(tmp_path: Path) -> None:
    config = tmp_path / "each.yaml"
    config.write_text(TINY + "coverage: {together: [protection_kill]}\n")
    args = ("verify", "--config", str(config), "--traces", str(tmp_path), "--json")
    for profile, said in (("dev", True), ("ci", False)):
        code, out = run(*args, "--profile", profile)
        check = next(c for c in json.loads(out)["results"] if c["name"] == "coverage")
        assert code == 1 and check["detail"].startswith("never reached: protection_kill")
        assert ("dev profile runs a fraction" in check["detail"]) is said


# -- the daily loop: stop at the first failure, run one variant --------------------------------


def test_exitfirst_stops_at_the_first_failing_variant(tmp_path: Path) -> None:
    code, out = run(
        "validate",
        "--impl",
        "pagingcheck.impl.mutants:reuse_busy_frame",
        "-x",
        "--jobs",
        "1",  # one after another: the first variant is the first to fail
        "--json",
        "--traces",
        str(tmp_path),
    )
    assert code == 1
    report = json.loads(out)
    assert _failed(report) == ["stateful:multilevel-precise-clock"]
    (skipped,) = report["skipped"]
    assert "linear-state-register-fifo" in skipped and "-x" in skipped
    assert len(list(tmp_path.glob("*.yaml"))) == 1  # one trace, not one per variant


def test_exitfirst_on_two_jobs_stops_both_at_the_first_failure(tmp_path: Path) -> None:
    code, out = run(
        *("validate", "--impl", "pagingcheck.impl.mutants:reuse_busy_frame", "-x"),
        *("--jobs", "2", "--json", "--traces", str(tmp_path)),
    )
    assert code == 1
    report = json.loads(out)
    assert report["violation"]["property"] == "busy_frame_exclusive"
    (skipped,) = report["skipped"]
    assert "-x" in skipped and "explore:" in skipped
    assert len(list(tmp_path.glob("*.yaml"))) == 1  # the workers still running were stopped


def test_variant_runs_only_the_variants_named(tmp_path: Path) -> None:
    code, out = run(
        "validate",
        "--impl",
        "pagingcheck.impl.reference:ReferenceKernel",
        "--variant",
        "hashed-decode-lru",
        "--profile",
        "dev",
        "--json",
        "--traces",
        str(tmp_path),
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True and report["violation"] is None and _failed(report) == []
    (skipped,) = report["skipped"]
    assert "1 of 9 variants" in skipped  # and so coverage of the whole is not owed


class LinearOnly(MinimalKernel):
    """A kernel written for linear page tables only, as a first kernel often is."""

    def __init__(self, hardware: HardwareConfig, kernel: KernelConfig | None = None) -> None:
        if hardware.page_table != "linear":
            raise NotImplementedError(f"no {hardware.page_table} page tables here")
        super().__init__(hardware, kernel)


def test_each_variant_is_explored_on_its_own_kind_of_machine() -> None:
    pair = checkconfig.load_reference("pair")
    for _, run in checkconfig.load(None).expand():
        small = small_exploration(run)
        for name in ("page_table", "tlb_tagged", "tlb_refill", "restart", "hash_buckets"):
            assert getattr(small.hardware, name) == getattr(run.hardware, name)
        assert small.kernel == run.kernel and small.limits == run.limits
        assert small.workload == pair.workload
        assert small.hardware.user_frames == pair.hardware.user_frames == 2


def test_a_kernel_for_one_kind_of_table_is_explored_only_on_that_kind(tmp_path: Path) -> None:
    variant = "linear-state-register-fifo"
    code, out = run(
        "verify",
        "--impl",
        f"{__name__}:LinearOnly",
        "--variant",
        variant,
        "--profile",
        "dev",
        "--json",
        "--traces",
        str(tmp_path),
    )
    assert code == 0, out
    checks = json.loads(out)["results"]
    assert [check["name"] for check in checks] == [f"stateful:{variant}", f"explore:{variant}"]
    explored = checks[1]
    assert explored["ok"] and explored["variants"] == [variant]
    assert explored["distinct_states"] > 100  # the whole of a small exploration, not a stub


def test_two_jobs_find_what_one_finds(tmp_path: Path) -> None:
    """Variants on two processes: the same checks, verdicts, counts, traces and coverage as
    one after another (only the seconds differ). Shrinking stops at its time budget, so
    what it reaches depends on the machine's speed; the budget here is large enough for
    it to finish on its own (in a few seconds), which makes the runs comparable."""
    data = yaml.safe_load(checkconfig.default_text())
    data["budget"]["shrink_seconds"] = 600
    config = tmp_path / "patient.yaml"
    config.write_text(yaml.safe_dump(data))
    reports = {}
    for count in ("1", "2"):
        traces_dir = tmp_path / count
        code, out = run(
            *("validate", "--impl", "pagingcheck.impl.mutants:no_flush_on_untagged_switch"),
            *("--config", str(config)),
            *("--profile", "dev", "--jobs", count, "--traces", str(traces_dir), "--json"),
            *(
                "--variant",
                "linear-state-register-fifo",
                "--variant",
                "hashed-precise-untagged-nru",
            ),
        )
        assert code == 1, out
        # Where each ran and how long it took aside, the reports are the same.
        reports[count] = _untimed(json.loads(out.replace(str(traces_dir), "TRACES")))
        reports[count]["traces"] = sorted(p.read_text() for p in traces_dir.glob("*.yaml"))
    assert reports["1"] == reports["2"]
    assert _failed(reports["1"])[0].startswith("stateful:")
    assert len(reports["1"]["traces"]) >= 2  # the untagged variants each fail


RANDOM = {"PAGINGCHECK_DERANDOMIZE": None}  # the commands' own default: a new seed per run


def test_a_run_draws_a_seed_and_the_seed_repeats_it(tiny: Path, tmp_path: Path) -> None:
    args = ["validate", "--impl", "pagingcheck.impl.reference:ReferenceKernel", "--json"]
    args += ["--config", str(tiny), "--traces", str(tmp_path)]
    env = {**RANDOM, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    drawn = json.loads(CliRunner().invoke(cli, args, env=env).stdout)
    assert isinstance(drawn["seed"], int)
    seed = str(drawn["seed"])
    again = [CliRunner().invoke(cli, [*args, "--seed", seed], env=RANDOM) for _ in range(2)]
    first, second = (_untimed(json.loads(result.stdout)) for result in again)
    assert first == second and first["seed"] == drawn["seed"]
    derandomised = json.loads(CliRunner().invoke(cli, [*args, "--derandomize"]).stdout)
    assert derandomised["seed"] is None
    # A seed explores other runs than derandomised campaigns do: the coverage counts differ.
    assert derandomised["coverage"] != first["coverage"]


def test_a_failure_found_once_is_kept_in_the_example_database(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["validate", "--impl", "pagingcheck.impl.mutants:reuse_busy_frame", "-x", "--json"]
    args += ["--profile", "dev", "--traces", str(tmp_path)]
    result = CliRunner().invoke(cli, args, env={**RANDOM, "XDG_CACHE_HOME": str(cache)})
    assert result.exit_code == 1
    assert any((cache / "pagingcheck" / "examples").rglob("*")), "nothing kept for next time"
    fixed = CliRunner().invoke(cli, [*args, "--derandomize"], env={"XDG_CACHE_HOME": str(tmp_path)})
    assert fixed.exit_code == 1 and not (tmp_path / "pagingcheck").exists()


def test_seed_and_derandomize_together_are_refused() -> None:
    result = CliRunner().invoke(cli, ["validate", "--impl", "x:y", "--seed", "3", "--derandomize"])
    assert result.exit_code == 2 and "choose one" in result.output


def test_an_unknown_variant_is_named_with_the_ones_there_are() -> None:
    result = CliRunner().invoke(
        cli, ["validate", "--impl", "pagingcheck.impl.reference:ReferenceKernel", "--variant", "x"]
    )
    assert result.exit_code == 2
    assert "--variant 'x': no such variant" in result.output
    assert "hashed-decode-lru" in result.output


def test_config_prints_the_configurations_to_start_from(tmp_path: Path) -> None:
    runner = CliRunner()
    default = runner.invoke(cli, ["config", "--default"])
    assert default.exit_code == 0
    saved = tmp_path / "mine.yaml"
    saved.write_text(default.stdout)
    assert checkconfig.load(saved) == checkconfig.load(None)
    tiny = runner.invoke(cli, ["config", "--reference", "tiny"])
    assert tiny.exit_code == 0
    assert checkconfig.load_text(tiny.stdout) == checkconfig.load_reference("tiny")
    for wrong in ([], ["--default", "--reference", "tiny"], ["--reference", "huge"]):
        refused = runner.invoke(cli, ["config", *wrong])
        assert refused.exit_code == 2, wrong


def test_python_dash_m_pagingcheck_is_the_same_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pagingcheck", "config", "--reference", "pair"],
        cwd=tmp_path,  # from any folder, not only the repository's
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert checkconfig.load_text(done.stdout) == checkconfig.load_reference("pair")


def test_simulate_starts_without_the_checking_machinery() -> None:
    # simulate's start-up is part of its speed: it must not import what only the
    # checking commands need (and a command asked for by name still loads them).
    # (importlib.metadata, which only --version needs, counts unless Python's own start-up
    # had it already.)
    probe = (
        "import atexit, sys\n"
        "present = set(sys.modules)\n"
        "heavy = ('hypothesis', 'z3', 'pagingcheck.checks.commands', 'pagingcheck.checks.system',"
        " 'importlib.metadata')\n"
        "loaded = lambda: sorted(m for m in heavy if m in sys.modules and m not in present)\n"
        "atexit.register(lambda: print(loaded()))\n"
        "from pagingcheck.checks.cli import main\n"
        "sys.argv = ['pagingcheck', *sys.argv[1:]]\n"
        "main()\n"
    )
    run = [sys.executable, "-c", probe]
    light = subprocess.run(
        [*run, "simulate", "-p", "lru", "-n", "2", "--refs", "1,2,1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert light.returncode == 0, light.stderr
    assert light.stdout.rstrip().endswith("[]"), light.stdout
    heavy = subprocess.run(
        [*run, "config", "--default"], capture_output=True, text=True, timeout=120
    )
    assert heavy.returncode == 0, heavy.stderr
    assert "'pagingcheck.checks.commands'" in heavy.stdout.splitlines()[-1]


def test_version_names_the_installed_package() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"pagingcheck, version {version('pagingcheck')}\n"


def test_every_command_has_a_whole_summary_examples_that_parse_and_exit_codes() -> None:
    context = click.Context(cli)
    assert set(cli.list_commands(context)) == set(HELP)
    for name in HELP:
        command = cli.get_command(context, name)
        assert command is not None
        assert command.short_help == HELP[name].summary and len(command.short_help) <= 55
        help_text = CliRunner().invoke(cli, [name, "--help"]).output
        assert "Examples:" in help_text and "Exit codes:" in help_text
        assert "130  interrupted" in help_text
        assert ("1    " in help_text) is (HELP[name].violated is not None)
        for example in HELP[name].examples:
            words = shlex.split(re.split("[>|]", example)[0])
            assert words[:2] == ["pagingcheck", name], example
            command.make_context(name, words[2:])  # raises on an option that does not exist


def test_docs_prints_the_manual_it_was_installed_with() -> None:
    listed = CliRunner().invoke(cli, ["docs"])
    assert listed.exit_code == 0
    pages = sorted(Path(manual.FOLDER).glob("*.md"))
    assert len(listed.output.splitlines()) == len(pages) >= 10
    assert "validate " in listed.output and "protocol " in listed.output
    shown = CliRunner().invoke(cli, ["docs", "protocol"])
    assert shown.exit_code == 0
    assert shown.output == (Path(manual.FOLDER) / "protocol.md").read_text(encoding="utf-8")
    assert CliRunner().invoke(cli, ["docs", "docs/protocol.md"]).output == shown.output
    unknown = CliRunner().invoke(cli, ["docs", "paging"])
    assert unknown.exit_code == 2 and "the topics are: cli, configuration" in unknown.output


def test_every_topic_a_message_cites_is_in_the_manual() -> None:
    cited = set()
    for source in Path(manual.__file__).parent.parent.glob("*/*.py"):
        cited |= set(re.findall(r"pagingcheck docs ([a-z]+)", source.read_text(encoding="utf-8")))
    assert cited and cited <= set(manual.topics()), cited - set(manual.topics())


def test_verdicts_are_coloured_at_a_terminal_only_and_quiet_drops_progress(
    tiny: Path, tmp_path: Path
) -> None:
    args = ["validate", "--impl", "pagingcheck.impl.reference:ReferenceKernel", "-x"]
    args += ["--config", str(tiny), "--traces", str(tmp_path)]
    green = click.style("PASS", fg="green")
    terminal = CliRunner().invoke(cli, args, color=True)
    assert f"stateful:base: {green}" in terminal.stderr
    piped = CliRunner().invoke(cli, args)
    assert "\x1b[" not in piped.output and "PASS" in piped.stderr
    plain = CliRunner().invoke(cli, args, color=True, env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain.output
    quiet = CliRunner().invoke(cli, [*args, "-q"], color=True)
    assert quiet.exit_code == 0 and quiet.stderr == "" and "pass:" in quiet.stdout


def test_a_running_campaign_says_how_far_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "STATUS_SECONDS", 0.01)
    (name, run), *_ = checkconfig.load(None).with_profile("dev").expand()
    heard: list[str] = []
    factory = resolve_factory(REFERENCE_KERNEL)
    done = jobs.campaign(name, run, factory, REFERENCE_KERNEL, status=heard.append)
    assert heard, "no status while the campaign ran"
    first, last = heard[0], heard[-1]
    assert first.startswith(f"  {name}: run ") and f"/{run.budget.examples}, " in first
    runs = [int(line.split("run ")[1].split("/")[0]) for line in heard]
    assert runs == sorted(runs) and runs[-1] <= done.runs
    assert "left" in last  # an estimate once a run has finished


def test_a_status_line_is_rewritten_in_place_and_cleared_before_a_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress(enabled=True)
    progress.in_place = True  # as at a terminal
    progress.status("  run 1/5")
    progress.status("  run 2/5")
    progress("[1/1] base: PASS")
    progress.end()
    err = capsys.readouterr().err
    assert err == "\r  run 1/5\x1b[K\r  run 2/5\x1b[K\r\x1b[K[1/1] base: PASS\n"
    quiet = Progress(enabled=False)
    quiet.status("  run 1/5")
    quiet("[1/1] base: PASS")
    assert capsys.readouterr().err == ""


def _failed(report: dict[str, Any]) -> list[str]:
    """The names of the checks that failed in a verify or validate JSON report."""
    return [result["name"] for result in report["results"] if not result["ok"]]


def _untimed(report: dict[str, Any]) -> dict[str, Any]:
    """A JSON report without the seconds each check took (the one thing two runs of the
    same campaigns do not share)."""
    for result in report["results"]:
        result.pop("seconds")
    return report
