"""The kernel in C (``impl/c/kernel.c``), checked as any program is: by ``--exec``.

The kernel and its buggy twin (``-DBUG_STALE_TLB``: eviction leaves the victim's
TLB entry) are built once per module with the machine's C compiler. The kernel
must pass ``validate`` on its conformance configuration and explore a small
configuration completely; the twin must fail, with a trace that replays to the
same violation on the twin and to none on the kernel. Without a C compiler the
tests are skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.model.asm import assemble
from tests.checks.test_explore import pagingcheck
from tests.checks.test_external import TEE, explored, validators

SOURCES = Path(str(files("pagingcheck.impl").joinpath("c")))
KERNEL_C = SOURCES / "kernel.c"
CONFORMANCE = SOURCES / "conformance.yaml"
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]

#: A configuration small enough to explore completely in a few seconds: two
#: processes of a copy program whose auto-increment source faults on its
#: destination (the decode variant must undo it), on three user frames, an
#: untagged TLB and a linear table.
SMALL = """
hardware:
  page_words: 4
  va_pages: 4
  kernel_frames: 4
  user_frames: 3
  page_table: linear
  tlb_entries: 2
  tlb_tagged: false
  restart: decode
  swap_slots: 4
  image_blocks: 3
  disk_order: fifo
kernel:
  policy: fifo
workload:
  initial: [0, 0]
  timer: false
  kills: false
  programs:
    - name: copy
      text: |
        MOV #8, r1
        MOV (r1)+, @9
        MOV @9, r2
        SYS 0
      data: [5, 6]
      stack_pages: 0
"""
#: (distinct states, transitions, depth) of SMALL under the kernel; the kernel is
#: deterministic and saves equal states as equal strings, so these are exact.
SMALL_PINNED = (1029, 1342, 30)


def compiler() -> str:
    """The machine's C compiler, or a skip that says why there is none."""
    found = shutil.which("cc") or shutil.which("gcc")
    if found is None:
        pytest.skip(
            "no C compiler (cc or gcc) on PATH: the C kernel (impl/c/kernel.c) cannot be "
            "built, so its tests do not run"
        )
    return found


def build(tmp: Path, name: str, *defines: str) -> Path:
    binary = tmp / name
    done = subprocess.run(
        [compiler(), *FLAGS, *defines, "-o", str(binary), str(KERNEL_C)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{name} does not build cleanly:\n{done.stderr}"
    assert not done.stderr, f"{name} builds with warnings:\n{done.stderr}"
    return binary


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The kernel and its buggy twin, built from the same source."""
    tmp = tmp_path_factory.mktemp("c-kernel")
    return build(tmp, "kernel"), build(tmp, "kernel-stale-tlb", "-DBUG_STALE_TLB")


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def validate(binary: Path, traces: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return pagingcheck(
        "validate",
        "--exec",
        str(binary),
        "--config",
        str(CONFORMANCE),
        "--profile",
        "ci",  # the configured budget, whatever PAGINGCHECK_PROFILE says
        "--json",
        "--traces",
        str(traces),
        *extra,
    )


def test_the_sources_ship_with_the_package() -> None:
    assert KERNEL_C.is_file() and CONFORMANCE.is_file()


def test_the_kernel_passes_validate_on_its_conformance_configuration(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    kernel, _ = kernels
    done = validate(kernel, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = report(done)
    # Nothing skipped: the four variants ran, and so did a complete small exploration on
    # each variant's kind of machine.
    assert result["ok"] and result["violation"] is None and result["skipped"] == []
    required = result["coverage_required"]
    assert "evict:dirty" in required and "protection_kill" in required
    assert all(result["coverage"][name] > 0 for name in required)
    assert not list(tmp_path.iterdir()), "a passing run writes no trace"


def test_the_buggy_twin_fails_with_a_trace_that_replays(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    kernel, twin = kernels
    done = validate(twin, tmp_path, "-x")
    assert done.returncode == 1, done.stdout + done.stderr
    violation = report(done)["violation"]
    # The stale entry maps a frame its PTE no longer does; while the frame is
    # written back, the same entry also breaks the busy frame's exclusivity.
    assert violation["property"] in ("tlb_agrees", "busy_frame_exclusive")
    trace = Path(violation["trace"])
    assert trace.is_file() and trace.parent == tmp_path

    again = pagingcheck("replay", str(trace), "--exec", str(twin), "--json")
    assert again.returncode == 1, again.stdout + again.stderr
    assert report(again)["violation"]["property"] == violation["property"]

    fixed = pagingcheck("replay", str(trace), "--exec", str(kernel), "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert report(fixed)["ok"] and report(fixed)["violation"] is None


def test_the_kernel_explores_a_small_configuration_completely(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    kernel, twin = kernels
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    args = ["--config", str(config), "--json", "--traces", str(tmp_path)]
    done = pagingcheck("explore", "--exec", str(kernel), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    result = report(done)
    (variant,) = result["results"]
    assert variant["complete"] and result["ok"]
    assert (result["distinct_states"], result["transitions"], result["max_depth"]) == (SMALL_PINNED)
    caught = pagingcheck("explore", "--exec", str(twin), *args)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert report(caught)["violations"][0]["property"] == "busy_frame_exclusive"


def validated(kernel: Path, config: str, tmp_path: Path) -> dict[str, Any]:
    """``validate --exec`` of ``kernel`` on the configuration text ``config``: its report,
    which must say every property held and every required situation was reached."""
    path = tmp_path / "config.yaml"
    path.write_text(config)
    done = pagingcheck(
        *("validate", "--exec", str(kernel), "--config", str(path), "--profile", "ci"),
        *("--json", "--traces", str(tmp_path)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return report(done)


#: Two processes READ two typed bytes each into their data page (not yet in: a fault in
#: kernel mode on a write) and print them with WRITE, on fewer frames than their pages.
ECHO = """
hardware: {page_words: 8, va_pages: 16, kernel_frames: 10, user_frames: 4,
           page_table: linear, swap_slots: 8, image_blocks: 8}
kernel: {policy: fifo}
workload:
  initial: [0, 0]
  timer: true
  kills: false
  input: "echo"
  programs:
    - name: echo
      text: |
        MOV #8, r1
        MOV #2, r2
        SYS 7
        SYS 3
        SYS 0
      data: [0, 0]
      stack_pages: 0
budget: {examples: 10, steps: 40}
coverage: [kernel_mode_fault, read_input]
"""


def test_the_kernel_reads_and_writes_user_buffers_through_faults_in_kernel_mode(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    result = validated(kernels[0], ECHO, tmp_path)
    assert result["ok"] and result["coverage_required"] == ["kernel_mode_fault", "read_input"]
    assert result["coverage"]["kernel_mode_fault"] > 0 and result["coverage"]["read_input"] > 0


#: A PUSHM whose first write lands on a page the process has touched and whose second
#: lands on the page below, never touched: under the decode variant the kernel's parser
#: must find that the second write faulted, after the first was made.
PUSH = """
hardware: {page_words: 8, va_pages: 8, kernel_frames: 8, user_frames: 4,
           page_table: linear, restart: decode, swap_slots: 4, image_blocks: 4}
kernel: {policy: fifo}
workload:
  initial: [0]
  timer: false
  kills: false
  programs:
    - name: pusher
      text: |
        MOV #7, @25
        MOV #25, r4
        MOV #66, r2
        PUSHM r4, {r1, r2}
        SYS 0
      data: [5, 0, 0, 0, 0, 0, 0, 0, 6]
      stack_pages: 0
budget: {examples: 10, steps: 40}
coverage: [partial_write, "restart:decode:push"]
"""


def test_the_kernel_decodes_a_push_that_faulted_after_a_write(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    result = validated(kernels[0], PUSH, tmp_path)
    assert result["ok"] and result["coverage"]["partial_write"] > 0


@pytest.mark.parametrize(
    ("line", "replaced", "says"),
    [
        ("page_table: linear", "page_table: hashed", "hardware.page_table is 'hashed'"),
        ("policy: fifo", "policy: clock", "kernel.policy is 'clock'"),
    ],
)
def test_an_unsupported_configuration_is_refused_at_hello(
    kernels: tuple[Path, Path], tmp_path: Path, line: str, replaced: str, says: str
) -> None:
    kernel, _ = kernels
    config = tmp_path / "unsupported.yaml"
    config.write_text(SMALL.replace(line, replaced))
    done = pagingcheck("explore", "--exec", str(kernel), "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did not answer hello" in done.stderr
    assert f"unsupported configuration: {says}" in done.stderr


# -- the protocol, spoken directly ----------------------------------------------------------

HARDWARE = {
    "page_words": 4,
    "va_pages": 4,
    "kernel_frames": 4,
    "user_frames": 3,
    "page_table": "linear",
    "levels": 2,
    "hash_buckets": 8,
    "tlb_entries": 2,
    "tlb_tagged": True,
    "tlb_refill": "hardware",
    "restart": "precise",
    "swap_slots": 1,
    "image_blocks": 3,
    "disk_order": "fifo",
}
KERNEL = {"policy": "fifo", "allocation": "global", "prepage": "none", "cleaner": False}
CONTEXT = {"regs": [0] * 8, "pc": 0, "flags": 0}


def program(name: str, data: list[int], shared: list[dict[str, Any]]) -> dict[str, Any]:
    words = {"name": name, "text": list(assemble("SYS 0")), "data": data, "heap_pages": 0}
    return {
        "image": {
            "program": {**words, "stack_pages": 0, "entry": 0, "shared": shared},
            "first": 1,
            "page_words": 4,
        }
    }


def converse(binary: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every line the kernel writes for ``requests`` (which must wait for no answer)."""
    text = "".join(json.dumps(request) + "\n" for request in requests)
    done = subprocess.run(
        [str(binary)], input=text, capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"op": "call", "name": name, "args": args, "context": CONTEXT, "memory": []}


def test_hello_boot_and_refusals_spoken_directly(
    kernels: tuple[Path, Path],
) -> None:
    kernel, _ = kernels
    hello = {"op": "hello", "protocol": 1, "hardware": HARDWARE, "kernel": KERNEL}
    lines = converse(
        kernel,
        [
            hello,
            {"op": "save"},
            call("boot", {}),
            call(
                "spawn",
                program("shared", [], [{"name": "b", "vpn": 2, "pages": 1, "writable": True}]),
            ),
            call("spawn", program("two-slots", [1, 2, 3, 4, 5], [])),  # needs 2 slots, 1 free
            {"op": "view"},
            {"op": "restore", "state": "00"},
            {
                "op": "hello",
                "protocol": 1,
                "hardware": {**HARDWARE, "page_table": "inverted"},
                "kernel": KERNEL,
            },
            {
                "op": "hello",
                "protocol": 1,
                "hardware": {**HARDWARE, "page_table": "multilevel", "level_bits": [2, 1]},
                "kernel": KERNEL,
            },
        ],
    )
    _, from_kernel = validators()
    for line in lines:
        if "port" not in line:
            from_kernel.validate(line)
    replies = [line for line in lines if "port" not in line]
    assert replies[0] == {"ok": {"protocol": 1, "save": True, "fingerprint": False}}
    assert isinstance(replies[1]["ok"], str)
    assert {"port": "set_timer", "args": [True]} in lines
    assert replies[2]["events"][0]["kind"] == "boot"
    assert replies[3] == {"ok": {"refused": "shared segments are not supported by this kernel"}}
    assert replies[4] == {"ok": {"refused": "not enough free swap slots"}}
    view = replies[5]["ok"]
    assert view["processes"] == [] and view["free_slots"] == [0] and view["current"] is None
    assert view["free_frames"] == [4, 5, 6]
    assert replies[6]["failed"] == "interface_error"
    assert replies[7]["failed"] == "interface_error"
    assert "hardware.page_table is 'inverted'" in replies[7]["message"]
    # A split that does not cover the vpn (two bits here) is refused, not used.
    assert replies[8]["failed"] == "interface_error"
    assert "level_bits add up to 3, not 2" in replies[8]["message"]


def test_equal_states_save_as_equal_strings(kernels: tuple[Path, Path]) -> None:
    kernel, _ = kernels
    hello = {"op": "hello", "protocol": 1, "hardware": HARDWARE, "kernel": KERNEL}
    spawn = call("spawn", program("one", [7], []))
    lines = converse(kernel, [hello, call("boot", {}), {"op": "save"}, spawn, {"op": "save"}])
    saves = [line["ok"] for line in lines if isinstance(line.get("ok"), str)]
    before, after = saves
    assert before != after
    restored = converse(
        kernel,
        [
            hello,
            {"op": "restore", "state": after},
            {"op": "save"},
            {"op": "restore", "state": before},
            {"op": "save"},
        ],
    )
    assert [line["ok"] for line in restored if isinstance(line.get("ok"), str)] == [after, before]


def test_every_message_of_an_exchange_with_the_kernel_fits_the_schema(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    kernel, _ = kernels
    (tmp_path / "tee.py").write_text(TEE)
    (tmp_path / "small.yaml").write_text(SMALL)
    log = tmp_path / "exchange.log"
    config = checkconfig.load(tmp_path / "small.yaml")
    explored(f"{sys.executable} {tmp_path / 'tee.py'} {log} {kernel}", config, max_states=200)
    to_kernel, from_kernel = validators()
    kinds = set()
    for line in log.read_text().splitlines():
        side, message = line[0], json.loads(line[2:])
        (to_kernel if side == "C" else from_kernel).validate(message)
        kinds.add(message.get("port") or message.get("name") or message.get("op"))
    assert {"hello", "save", "restore", "on_trap", "on_disk", "probe", "submit"} <= kinds
    assert {"write", "resume", "tlb_invalidate", "release_space", "view"} <= kinds


def test_the_kernel_prints_what_its_processes_print(
    kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.checks.test_console import PRINTER

    linear = PRINTER.replace("va_pages: 16,", "va_pages: 16, page_table: linear,")
    config = tmp_path / "printer.yaml"
    config.write_text(linear + "kernel: {policy: fifo}\n")
    kernel, _ = kernels
    args = ["--config", str(config), "--json", "--traces", str(tmp_path)]
    done = pagingcheck("validate", "--exec", str(kernel), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report(done)["ok"]
