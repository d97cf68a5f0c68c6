"""The trace simulator: counting, ticks, input formats, and the ``simulate`` command."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Hashable, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.checks import cli as cli_module
from pagingcheck.checks.cli import cli
from pagingcheck.impl import simulate as sim
from pagingcheck.impl.lib.replacement import POLICY_NAMES, RefBits, make_policy
from pagingcheck.impl.simulate import (
    load,
    parse_refs,
    read_kinds,
    read_lackey,
    read_refs,
    run,
    simulate,
)
from pagingcheck.model.errors import InternalError, UserError

TEXTBOOK = "7,0,1,2,0,3,0,4,2,3,0,3,2,1,2,0,1,7,0,1"


class Spy:
    """A FIFO policy that records every call the simulator makes."""

    name = "spy"

    def __init__(self, bad_victim: int | None = None) -> None:
        self.inner = make_policy("fifo")
        self.calls: list[tuple[object, ...]] = []
        self.bad_victim = bad_victim

    def loaded(self, frame: int, page: Hashable, now: int) -> None:
        self.calls.append(("loaded", frame, page, now))
        self.inner.loaded(frame, page, now)

    def accessed(self, frame: int, now: int, write: bool) -> None:
        self.calls.append(("accessed", frame, now, write))

    def removed(self, frame: int) -> None:
        self.calls.append(("removed", frame))
        self.inner.removed(frame)

    def tick(self, now: int, bits: RefBits) -> None:
        self.calls.append(("tick", now))

    def victim(self, candidates: Sequence[int], now: int, bits: RefBits) -> int:
        self.calls.append(("victim", tuple(candidates), now))
        if self.bad_victim is not None:
            return self.bad_victim
        return self.inner.victim(candidates, now, bits)

    def copy(self) -> Spy:
        raise NotImplementedError

    def snapshot(self) -> tuple[object, ...]:
        return ()


# -- counting ------------------------------------------------------------------------------


def test_counts_add_up_on_the_textbook_string() -> None:
    result = run("lru", parse_refs(TEXTBOOK), 3)
    assert (result.references, result.faults, result.hits) == (20, 12, 8)
    assert result.fault_rate == pytest.approx(0.6)
    assert result.as_dict()["fault_rate"] == pytest.approx(0.6)


def test_evicting_a_dirty_page_counts_a_writeback() -> None:
    # Page 1 is written, evicted by 2 (writeback), reloaded clean and evicted by 3.
    result = run("fifo", parse_refs("1w,2,1,3"), 1)
    assert (result.faults, result.writebacks) == (4, 1)
    # A page that is dirty at the end is not written back.
    assert run("fifo", parse_refs("1,2w"), 1).writebacks == 0


def test_a_write_hit_dirties_the_page() -> None:
    assert run("fifo", parse_refs("1,1w,2"), 1).writebacks == 1


def test_the_simulator_drives_the_policy_it_is_given() -> None:
    spy = Spy()
    simulate(parse_refs("5,6w,5,7"), spy, 2, tick=0)
    assert spy.calls == [
        ("loaded", 0, 5, 0),
        ("loaded", 1, 6, 1),
        ("accessed", 0, 2, False),
        ("victim", (0, 1), 3),
        ("removed", 0),
        ("loaded", 0, 7, 3),
    ]


def test_ticks_run_before_every_nth_reference() -> None:
    spy = Spy()
    simulate([(0, False)] * 7, spy, 1, tick=3)
    assert [call for call in spy.calls if call[0] == "tick"] == [("tick", 3), ("tick", 6)]


def test_by_default_only_policies_that_need_ticks_get_them() -> None:
    refs = [(page % 4, False) for page in range(40)]
    assert simulate(refs, make_policy("aging"), 4).tick == 4
    assert simulate(refs, make_policy("nru"), 4).tick == 4
    assert simulate(refs, make_policy("lru"), 4).tick == 0
    spy = Spy()
    simulate(refs, spy, 4)
    assert not [call for call in spy.calls if call[0] == "tick"]


def test_aging_depends_on_ticks() -> None:
    refs = parse_refs("1,2,3,1,1,2,4,1,2,5,1,2,3")
    assert run("aging", refs, 3, tick=1).faults < run("aging", refs, 3, tick=0).faults


def test_progress_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "PROGRESS_EVERY", 4)
    seen: list[int] = []
    simulate([(n % 3, False) for n in range(10)], make_policy("clock"), 2, progress=seen.append)
    assert seen == [4, 8]


def test_bad_frames_and_tick_are_user_errors() -> None:
    with pytest.raises(UserError, match="frames: 0"):
        run("fifo", [], 0)
    with pytest.raises(UserError, match="tick: -1"):
        run("fifo", [], 1, tick=-1)


def test_a_policy_choosing_a_foreign_frame_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="chose frame 9"):
        simulate(parse_refs("1,2,3"), Spy(bad_victim=9), 2)


def test_empty_input_counts_nothing() -> None:
    result = run("opt", [], 2)
    assert (result.references, result.faults, result.fault_rate) == (0, 0, 0.0)


def test_load_keeps_int_pages_compact_and_falls_back_to_a_list() -> None:
    pages, writes = load([(3, False), (2**40, True)])
    assert list(pages) == [3, 2**40] and type(pages).__name__ == "array"
    assert list(writes) == [0, 1]
    mixed, _ = load([(3, False), ("text", True), (4, False)])
    assert list(mixed) == [3, "text", 4]


def test_load_reports_progress_and_keeps_non_int_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "PROGRESS_EVERY", 2)
    seen: list[int] = []
    pages, writes = load([(1, False), (2, True), ("x", False), (3, True), (4, False)], seen.append)
    assert list(pages) == [1, 2, "x", 3, 4] and list(writes) == [0, 1, 0, 1, 0]
    assert seen == [2, 4, 5]


# -- input formats -------------------------------------------------------------------------


def test_parse_refs_reads_writes_and_rejects_junk() -> None:
    assert parse_refs(" 1, 2w ,3W,4r") == [(1, False), (2, True), (3, True), (4, False)]
    with pytest.raises(UserError, match=r"--refs item 2: '-1'"):
        parse_refs("1,-1")
    with pytest.raises(UserError, match="item 2: ''"):
        parse_refs("1,,2")


def test_read_refs_handles_blocks_comments_and_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "BLOCK_BYTES", 5)
    text = b"# a trace\n12\n\n7w\n123456789\n 8 \n3"
    assert list(read_refs(io.BytesIO(text))) == [
        (12, False),
        (7, True),
        (123456789, False),
        (8, False),
        (3, False),
    ]


@pytest.mark.parametrize("block", [5, 1 << 20])
def test_read_refs_names_the_bad_line(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(sim, "BLOCK_BYTES", block)
    with pytest.raises(UserError, match=r"t\.txt:4: 'x1'"):
        list(read_refs(io.BytesIO(b"1\n2\n3\nx1\n"), "t.txt"))
    with pytest.raises(UserError, match=r"t\.txt:3: page number -3 is negative"):
        list(read_refs(io.BytesIO(b"1\n2\n-3\n"), "t.txt"))


def test_read_refs_streams_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "BLOCK_BYTES", 4)
    refs = read_refs(io.BytesIO(b"1\n2\nbad\n"), "t")
    assert [next(refs), next(refs)] == [(1, False), (2, False)]  # "bad" is not read yet
    with pytest.raises(UserError, match="t:3"):
        next(refs)


LACKEY = b"""==4242== Lackey, an example Valgrind tool
==4242== Command: ./prog
I  04001000,3
 L 04001ffe,4
 S 7ff000398,8
 M 04003000,4
I  04001004,2

==4242== Counted 1 call to main()
"""


def test_read_lackey_pages_kinds_and_straddles() -> None:
    refs = list(read_lackey(io.BytesIO(LACKEY), 4096))
    assert refs == [
        (0x4001, False),  # instruction fetch
        (0x4001, False),  # a load straddling 0x4001 / 0x4002 touches both pages
        (0x4002, False),
        (0x7FF000, True),  # store
        (0x4003, True),  # modify
        (0x4001, False),
    ]


def test_read_lackey_fast_path_splices_straddling_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # No valgrind lines, so every block takes the fast path.
    log = b"I  0ffe,4\n S 1000,4\n L 2ffc,9\n M 5000,1\n"
    assert list(read_lackey(io.BytesIO(log), 4096)) == [
        (0, False),
        (1, False),
        (1, True),
        (2, False),
        (3, False),
        (5, True),
    ]
    # Records spanning more than two pages touch every page between.
    assert list(read_lackey(io.BytesIO(b" S 000e,30\n"), 16)) == [(0, True), (1, True), (2, True)]
    monkeypatch.setattr(sim, "BLOCK_BYTES", 12)
    assert list(read_lackey(io.BytesIO(log), 4096))[-3:] == [(2, False), (3, False), (5, True)]


record = st.tuples(
    st.sampled_from(["I  ", " L ", " S ", " M "]),
    st.integers(0, 1 << 20),
    st.integers(1, 64),
)


def lackey_line(kind: str, address: int, size: int) -> bytes:
    return f"{kind}{address:08x},{size}".encode()


@given(st.lists(record, min_size=1, max_size=30), st.sampled_from([1, 7, 16, 4096]))
def test_lackey_fast_and_careful_parses_agree(
    records: list[tuple[str, int, int]], page_size: int
) -> None:
    lines = [lackey_line(*fields) for fields in records]
    fast = sim._lackey_fast(b"".join(line + b"\n" for line in lines), page_size)
    assert fast is not None
    assert list(fast) == sim._lackey_slow(lines, 1, page_size, "t")


junk = st.sampled_from(
    [
        b" L 0400",
        b" L 04,,8",
        b" L ,0400,8",
        b" L 04,8, S 05,9",
        b" L 0400 8",
        b"L 0400,8",
        b" X 0400,8",
        b" L 0400,-1",
        b" L -400,1",
        b" L 0400,8 , 9",
        b"",
        b"==1== note",
        b" L 04 00,8",
        b"I 0400,3",
    ]
)


@given(st.lists(st.one_of(record.map(lambda fields: lackey_line(*fields)), junk), max_size=12))
def test_lackey_fast_path_accepts_only_what_the_careful_parse_accepts(lines: list[bytes]) -> None:
    fast = sim._lackey_fast(b"".join(line + b"\n" for line in lines), 16)
    if fast is not None:
        assert list(fast) == sim._lackey_slow(lines, 1, 16, "t")


def test_read_lackey_skips_superblock_lines() -> None:
    assert list(read_lackey(io.BytesIO(b"SB 04001000\nI  04001000,3\n"), 4096)) == [(0x4001, False)]


def test_read_lackey_rejects_malformed_lines() -> None:
    malformed = [
        b" X 0400,4",
        b" L 04zz,4",
        b" L 0400",
        b" L 0400,0",
        b"garbage",
        b" L 04,8, S 05,9",  # two records on one line
        b"L 0400,8",
    ]
    for line in malformed:
        with pytest.raises(UserError, match=r"log:2: malformed lackey line"):
            list(read_lackey(io.BytesIO(b"I  0400,4\n" + line + b"\n S 0500,4\n"), 4096, "log"))
    with pytest.raises(UserError, match="page size"):
        list(read_lackey(io.BytesIO(b""), 0))


# -- the command ---------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_json_has_the_counts() -> None:
    code, out, _ = invoke("--policy", "opt", "--frames", "3", "--refs", TEXTBOOK, "--json")
    assert code == 0
    (data,) = json.loads(out)["results"]
    assert data["policy"] == "opt" and data["frames"] == 3
    assert (data["references"], data["faults"], data["hits"], data["writebacks"]) == (20, 9, 11, 0)
    assert all(isinstance(data[key], int) for key in ("references", "faults", "hits"))


def test_cli_text_output() -> None:
    code, out, _ = invoke("-p", "fifo", "-n", "3", "--refs", "1,2,3,4,1,2,5,1,2,3,4,5")
    assert code == 0
    assert "faults      9\n" in out and "fault rate  0.7500\n" in out


def test_cli_reads_a_refs_file(tmp_path: Path) -> None:
    path = tmp_path / "refs.txt"
    path.write_text("1w\n2\n1\n3\n")
    code, out, _ = invoke("-p", "lru", "-n", "1", "--refs-file", str(path), "--json")
    assert code == 0
    assert json.loads(out)["results"][0]["writebacks"] == 1


def test_cli_reads_a_lackey_log(tmp_path: Path) -> None:
    path = tmp_path / "lackey.log"
    path.write_bytes(LACKEY)
    code, out, _ = invoke(
        "-p", "fifo", "-n", "1", "--refs-file", str(path), "--lackey", "--page-size", "4096"
    )
    assert code == 0
    assert "references  6\n" in out and "faults      5\n" in out and "writebacks  2\n" in out
    code, out, _ = invoke(
        "-p", "fifo", "-n", "8", "--refs-file", str(path), "--lackey", "--page-size", "65536"
    )
    assert "faults      2\n" in out  # pages 0x400 and 0x7ff00


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "lfu", "-n", "3", "--refs", "1"], "unknown replacement policy 'lfu'"),
        (["-p", "lru", "-n", "0", "--refs", "1"], "0 is not in the range 1<=x<=16777216"),
        (["-p", "lru", "-n", "3"], "exactly one of --refs"),
        (["-p", "lru", "-n", "3", "--refs", "1", "--refs-file", "x"], "exactly one of --refs"),
        (["-p", "lru", "-n", "3", "--refs", "1,two"], "item 2: 'two' is not a page number"),
        (["-p", "lru", "-n", "3", "--refs-file", "/no/such/file"], "cannot read --refs-file"),
        (["-p", "lru", "-n", "3", "--refs", "1", "--lackey"], "--lackey"),
        (["-p", "lru", "-n", "3", "--refs", "1", "--page-size", "8"], "--page-size"),
        (["-p", "lru", "-n", "3", "--refs", "1", "--tick", "-2"], "tick: -2"),
        (["-p", "wsclock", "-n", "3", "--refs", "1", "--tau", "-2"], "tau: -2"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert out == ""
    assert err.startswith("pagingcheck: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_file_content_exits_2(tmp_path: Path) -> None:
    refs = tmp_path / "refs.txt"
    refs.write_text("1\n2\nthree\n")
    code, _, err = invoke("-p", "opt", "-n", "2", "--refs-file", str(refs))
    assert code == 2 and f"{refs}:3: 'three' is not a page number" in err
    log = tmp_path / "lackey.log"
    log.write_bytes(b"I  0400,4\n L 0400;4\n")
    code, _, err = invoke("-p", "clock", "-n", "2", "--refs-file", str(log), "--lackey")
    assert code == 2 and f"{log}:2: malformed lackey line" in err
    assert err.count("\n") == 1


# -- every frame count -----------------------------------------------------------------

BELADY = [(page, False) for page in (1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5)]


@pytest.mark.parametrize("policy", sim.STACK_POLICIES)
@given(
    pages=st.lists(st.integers(0, 8), max_size=80),
    writes=st.lists(st.booleans(), min_size=80, max_size=80),
)
def test_one_pass_gives_every_frame_count_what_a_run_per_count_gives(
    policy: str, pages: list[int], writes: list[bool]
) -> None:
    refs = list(zip(pages, writes, strict=False))
    found = sim.curve(policy, refs, range(1, 11))
    assert found.one_pass and [p.frames for p in found.points] == list(range(1, 11))
    assert [p.faults for p in found.points] == [run(policy, refs, n).faults for n in range(1, 11)]
    assert found.anomalies == ()


def test_fifo_shows_beladys_anomaly_on_the_classic_string() -> None:
    found = sim.curve("fifo", BELADY, range(1, 6))
    assert not found.one_pass
    assert [p.faults for p in found.points] == [12, 12, 9, 10, 5]
    assert found.anomalies == ((3, 9, 10),)
    assert [p.writebacks for p in found.points] == [0] * 5  # counted by full runs


def test_a_curve_needs_counts_from_one() -> None:
    with pytest.raises(UserError, match="range of counts"):
        sim.curve("lru", BELADY, range(0, 3))


def test_cli_prints_the_curve_and_the_anomaly() -> None:
    refs = ",".join(str(page) for page, _ in BELADY)
    code, out, _ = invoke("-p", "fifo", "-n", "2-4", "--refs", refs)
    assert code == 0
    assert "a run per frame count" in out and "       3          9" in out
    assert "Belady's anomaly: 4 frames fault 10 times, 3 frames 9" in out
    code, out, _ = invoke("-p", "lru", "-n", "2-4", "--refs", refs, "--json")
    answer = json.loads(out)
    assert answer["curves"] == [{"policy": "lru", "one_pass": True, "anomalies": []}]
    assert [r["faults"] for r in answer["results"]] == [12, 10, 8]
    assert all(r["writebacks"] is None for r in answer["results"])


@pytest.mark.parametrize(
    ("frames", "message"),
    [("4-2", "the range runs backwards"), ("two", "is not a number of frames"), ("1-0", "0 is")],
)
def test_cli_bad_frame_ranges_are_named(frames: str, message: str) -> None:
    code, _, err = invoke("-p", "lru", "-n", frames, "--refs", "1")
    assert code == 2 and message in err


def test_cli_compares_policies_and_plots_their_curves(tmp_path: Path) -> None:
    refs = ",".join(str(page) for page, _ in BELADY)
    picture = tmp_path / "curve.svg"
    args = ["-p", "fifo,lru", "-n", "1-5", "--refs", refs, "--plot", str(picture), "--json"]
    code, out, err = invoke(*args)
    assert code == 0, err
    answer = json.loads(out)
    assert [c["policy"] for c in answer["curves"]] == ["fifo", "lru"]
    assert answer["curves"][0]["anomalies"] == [
        {"frames": 3, "faults": 9, "more_frames_faults": 10}
    ]
    assert [r["name"] for r in answer["results"]][:2] == ["fifo 1", "fifo 2"]
    drawing = picture.read_text()
    assert drawing.startswith("<?xml") and "fifo" in drawing and "lru" in drawing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "fifo,lru", "-n", "3"], "several policies need a range of frames"),
        (["-p", "fifo,lfu", "-n", "1-3"], "unknown replacement policy 'lfu'"),
        (["-p", "fifo", "-n", "3", "--plot", "c.svg"], "--plot draws a curve"),
        (["-p", "fifo", "-n", "1-3", "--plot", "c.pdf"], "name a .svg or .png file"),
    ],
)
def test_cli_curve_options_are_checked(args: list[str], message: str) -> None:
    code, _, err = invoke(*args, "--refs", "1,2,1")
    assert code == 2 and message in err


def test_plotting_without_matplotlib_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    code, _, err = invoke(
        "-p", "lru", "-n", "1-3", "--refs", "1,2,1", "--plot", str(tmp_path / "c.png")
    )
    assert code == 2 and "pip install 'pagingcheck[plot]'" in err


# -- step by step ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_steps_tell_the_whole_run_and_watching_changes_nothing(policy: str) -> None:
    refs = [(page, page % 3 == 0) for page in (1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5, 6, 2, 1)]
    steps: list[sim.Step] = []
    watched = run(policy, refs, 3, tick=2, watch=steps.append)
    assert watched == run(policy, refs, 3, tick=2)
    assert [(s.index, s.page, s.write) for s in steps] == [(i, *ref) for i, ref in enumerate(refs)]
    assert sum(not s.hit for s in steps) == watched.faults
    assert sum(s.written_back for s in steps) == watched.writebacks
    previous: tuple[object, ...] = (None, None, None)
    for step in steps:
        assert step.frames[step.frame] == step.page and step.referenced[step.frame] == 1
        if step.hit:
            assert step.frames == previous and step.evicted is None
        else:
            assert step.evicted == previous[step.frame]
            assert step.modified[step.frame] == step.write
        assert step.policy[0] == policy
        previous = step.frames


def test_cli_trace_steps_prints_every_reference_and_its_json_is_the_same() -> None:
    code, out, _ = invoke("-p", "fifo", "-n", "2", "--refs", "1,2w,3,1", "--trace-steps")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ref", "page", "result", "frames"]
    assert lines[2].split()[:7] == ["1", "2w", "fault", "1", "2", "11", "01"]
    assert lines[3].split()[:6] == ["2", "3", "fault", "3", "2", "1"]  # 1 evicted, clean
    assert lines[4].split()[:6] == ["3", "1", "fault", "3", "1", "2*"]  # 2 written back
    code, out, _ = invoke("-p", "fifo", "-n", "2", "--refs", "1,2w,3,1", "--trace-steps", "--json")
    steps = json.loads(out)["steps"]
    assert [s["hit"] for s in steps] == [False, False, False, False]
    assert steps[3]["evicted"] == 2 and steps[3]["written_back"] and steps[3]["frames"] == [3, 1]
    code, _, err = invoke("-p", "lru", "-n", "1-3", "--refs", "1", "--trace-steps")
    assert code == 2 and "--trace-steps follows one number of frames" in err


# -- KIND PAGE lines, gzip, and telling the formats apart --------------------------------


def test_read_kinds_reads_writes_hex_and_comments() -> None:
    text = b"# header\nI 4\n L 5\nS 6\nm 0x10\n\nL 4\n"
    refs = [(4, False), (5, False), (6, True), (16, True), (4, False)]
    assert list(read_kinds(io.BytesIO(text))) == refs


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"X 4", "is not a 'KIND PAGE' line"),
        (b"L 4 5", "is not a 'KIND PAGE' line"),
        (b"L four", "'four' is not a page number"),
        (b"S -3", "is negative"),
    ],
)
def test_read_kinds_names_the_bad_line(line: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message) as raised:
        list(read_kinds(io.BytesIO(b"L 1\n" + line + b"\n"), "t.txt"))
    assert str(raised.value).startswith("t.txt:2: ")


kind_line = st.tuples(
    st.sampled_from("ILSMx"), st.sampled_from(["", " ", "  "]), st.integers(-2, 99)
)


@given(st.lists(kind_line.map(lambda f: f"{f[0]}{f[1]}{f[2]}".encode()), max_size=12))
def test_kinds_fast_path_accepts_only_what_the_careful_parse_accepts(lines: list[bytes]) -> None:
    fast = sim._kinds_fast(lines)
    if fast is not None:
        assert list(fast) == sim._kinds_slow(lines, 1, "t")


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        (b"1\n2w\n", "pages"),
        (b"# pages\n\n12\n", "pages"),
        (b"L 12\nS 13\n", "kinds"),
        (b"# kinds\nm 0x1f\n", "kinds"),
        (b"==123== Lackey\nI  0400d7d4,8\n", "lackey"),
        (b" S 7ff000398,8\n", "lackey"),
        (b"three\n", "pages"),  # its reader names the line it cannot parse
        (b"", "pages"),
    ],
)
def test_detect_format_reads_the_first_record_line(text: bytes, fmt: str) -> None:
    stream = io.BufferedReader(io.BytesIO(text))
    assert sim.detect_format(stream) == fmt
    assert stream.read() == text, "detecting consumed input"


def test_detect_format_refuses_binary_input() -> None:
    with pytest.raises(UserError, match="not a text file of references"):
        sim.detect_format(io.BufferedReader(io.BytesIO(b"\x7fELF\x00\x01")), "a.out")


@pytest.mark.parametrize(
    ("text", "args"),
    [
        (b"1w\n2\n1\n3\n", []),
        (b"S 1\nL 2\nL 1\nI 3\n", []),
        (LACKEY, ["--page-size", "4096"]),
    ],
    ids=["pages", "kinds", "lackey"],
)
def test_cli_reads_each_format_plain_or_gzipped_without_being_told(
    tmp_path: Path, text: bytes, args: list[str]
) -> None:
    plain, packed = tmp_path / "refs", tmp_path / "refs.gz"
    plain.write_bytes(text)
    packed.write_bytes(gzip.compress(text))
    outputs = []
    for path in (plain, packed):
        code, out, err = invoke("-p", "fifo", "-n", "1", "--refs-file", str(path), *args, "--json")
        assert code == 0, err
        outputs.append(json.loads(out)["results"][0])
    assert outputs[0] == outputs[1]
    assert outputs[0]["writebacks"] >= 1  # the writes were read as writes


def test_cli_format_flags_conflict_or_do_not_apply(tmp_path: Path) -> None:
    kinds = tmp_path / "kinds.txt"
    kinds.write_text("L 1\nS 2\n")
    code, _, err = invoke("-p", "lru", "-n", "2", "--refs-file", str(kinds), "--page-size", "64")
    assert code == 2 and "--page-size applies only to lackey logs" in err and "is kinds" in err
    code, _, err = invoke("-p", "lru", "-n", "2", "--refs-file", str(kinds), "--format", "pages")
    assert code == 2 and f"{kinds}:1: 'L 1' is not a page number" in err
    code, _, err = invoke(
        "-p", "lru", "-n", "2", "--refs-file", str(kinds), "--lackey", "--format", "kinds"
    )
    assert code == 2 and "--lackey says the file is a lackey log, --format says kinds" in err
    code, _, err = invoke("-p", "lru", "-n", "2", "--refs", "1", "--format", "kinds")
    assert code == 2 and "cannot be used with --refs" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_for_big_files(monkeypatch: pytest.MonkeyPatch) -> None:
    position = [0]
    with ExitStack() as stack:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        assert cli_module._progress_bar(stack, lambda: position[0], 1 << 30) is None
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert cli_module._progress_bar(stack, lambda: 0, 100) is None  # small file
        advance = cli_module._progress_bar(stack, lambda: position[0], 1 << 30)
        assert advance is not None
        position[0] = 1 << 29
        advance(1000)
    assert "simulating" in terminal.getvalue() and "50%" in terminal.getvalue()


def test_cli_directory_is_not_readable(tmp_path: Path) -> None:
    code, _, err = invoke("-p", "lru", "-n", "2", "--refs-file", str(tmp_path))
    assert code == 2 and "cannot read --refs-file" in err
