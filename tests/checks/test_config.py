"""Check configurations: the default loads, and every mistake gets a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pagingcheck.checks import config as checkconfig
from pagingcheck.model.errors import ConfigError, UserError

GOOD = """
hardware: {user_frames: 4}
workload:
  programs:
    - name: p
      text: |
        MOV #1, r1
        SYS 0
"""


def test_default_configuration_loads_with_variants_over_every_format() -> None:
    config = checkconfig.load(None)
    runs = config.expand()
    formats = {run.hardware.page_table for _, run in runs}
    assert formats == {"linear", "multilevel", "hashed", "inverted"}
    assert {run.hardware.restart for _, run in runs} == {"precise", "state_register", "decode"}
    assert {(r.hardware.tlb_tagged, r.hardware.tlb_refill) for _, r in runs} == {
        (True, "hardware"),
        (False, "hardware"),
        (True, "software"),
        (False, "software"),
    }


def test_a_variant_may_boot_other_programs_and_only_it_does() -> None:
    text = GOOD + "variants: [{name: more, workload: {initial: [0, 0]}}, {name: same}]\n"
    (_, more), (_, same) = checkconfig.load_text(text).expand()
    assert more.workload.initial == (0, 0)
    assert same.workload.initial == checkconfig.load_text(GOOD).workload.initial
    assert more.workload.programs == same.workload.programs


def test_minimal_configuration_uses_defaults() -> None:
    config = checkconfig.load_text(GOOD)
    assert config.hardware.user_frames == 4
    assert config.workload.programs[0].text[0] != 0
    assert config.expand()[0][0] == "base"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hardware: [", "not valid YAML"),
        ("- 1\n- 2", "expected a mapping"),
        (GOOD + "extra: 1\n", "unknown key 'extra'"),
        (GOOD.replace("user_frames: 4", "user_frames: four"), "user_frames: expected an integer"),
        (GOOD.replace("user_frames: 4", "page_words: 3"), "page_words"),
        (GOOD + "kernel: {policy: belady}\n", "kernel.policy"),
        (GOOD + "kernel: {policy: opt}\n", "future"),
        (GOOD.replace("MOV #1, r1", "MOVE #1, r1"), r"programs\[0\].text"),
        (GOOD + "budget: {examples: 0}\n", "budget.examples"),
        (
            GOOD + "variants: [{name: v, hardware: {tlb: 3}}]\n",
            r"variants\[0\].hardware: unknown key .tlb.",
        ),
        (GOOD.replace("name: p", "name: p\n      heap_pages: 99"), "do not fit"),
        (
            GOOD + "variants: [{name: v, workload: {initial: [3]}}]\n",
            r"variants\[0\].workload.initial\[0\] \(a program index\)",
        ),
        (
            GOOD + "variants: [{name: v, workload: {max_spawns: 3}}]\n",
            r"variants\[0\].workload: unknown key .max_spawns.",
        ),
        ("!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_key(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        checkconfig.load_text(text)


def test_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        checkconfig.load(tmp_path / "missing.yaml")


BIG_INSTRUCTION = """
hardware: {user_frames: 4, tlb_refill: software, tlb_entries: 4}
workload:
  programs:
    - name: copy
      data: [1]
      heap_pages: 1
      text: |
        MOV @16, @32
        SYS 0
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("user_frames: 4", "user_frames: 3"),
            "hardware.user_frames: 3 user frames cannot hold the 4 pages one instruction",
        ),
        (
            ("tlb_entries: 4", "tlb_entries: 2"),
            "hardware.tlb_entries: a software-refilled TLB of 2 entries cannot hold the 4 "
            "translations",
        ),
    ],
)
def test_hardware_too_small_for_one_instruction_is_refused(
    change: tuple[str, str], message: str
) -> None:
    checkconfig.load_text(BIG_INSTRUCTION)  # four pages: text, data, heap, stack
    with pytest.raises(ConfigError, match=message):
        checkconfig.load_text(BIG_INSTRUCTION.replace(*change))


def test_the_need_follows_the_workload_and_a_variant_is_named() -> None:
    small = GOOD.replace("user_frames: 4", "user_frames: 2, tlb_refill: software, tlb_entries: 2")
    assert checkconfig.load_text(small).hardware.user_frames == 2  # text and stack only
    with pytest.raises(ConfigError, match=r"variant tiny: hardware\.tlb_entries"):
        checkconfig.load_text(
            BIG_INSTRUCTION + "variants: [{name: tiny, hardware: {tlb_entries: 3}}]\n"
        )
    with pytest.raises(ConfigError, match="use at least 4"):
        checkconfig.load_text(small + "  max_spawns: 1\n")  # random programs may need 4


def test_image_blocks_must_hold_the_programs() -> None:
    with pytest.raises(ConfigError, match=r"hardware\.image_blocks: the workload.s program"):
        checkconfig.load_text(GOOD.replace("user_frames: 4", "user_frames: 4, image_blocks: 0"))


def test_coverage_names_situations() -> None:
    assert checkconfig.load_text(GOOD).coverage == ()
    assert len(checkconfig.load_text(GOOD + "coverage: all\n").coverage) > 20
    with pytest.raises(ConfigError, match="unknown situation 'faults'"):
        checkconfig.load_text(GOOD + "coverage: [faults]\n")
    with pytest.raises(ConfigError, match="expected 'all' or a list"):
        checkconfig.load_text(GOOD + "coverage: some\n")


def test_coverage_can_require_situations_of_every_variant() -> None:
    config = checkconfig.load_text(
        GOOD + "coverage: {together: [evict:clean], every_variant: [fault:page_fault]}\n"
    )
    assert (config.coverage, config.coverage_each) == (("evict:clean",), ("fault:page_fault",))
    with pytest.raises(ConfigError, match=r"coverage\.every_variant: unknown situation"):
        checkconfig.load_text(GOOD + "coverage: {every_variant: [nothing]}\n")
    with pytest.raises(ConfigError, match="coverage: unknown key 'each'"):
        checkconfig.load_text(GOOD + "coverage: {each: all}\n")
    formats = checkconfig.load_text(GOOD + "coverage: {every_format: [exec, wait_asleep]}\n")
    assert (formats.coverage, formats.coverage_format) == ((), ("exec", "wait_asleep"))
    with pytest.raises(ConfigError, match=r"coverage\.every_format: unknown situation"):
        checkconfig.load_text(GOOD + "coverage: {every_format: [nothing]}\n")


def test_parsing_leaves_the_parsed_yaml_as_it_was() -> None:
    # The built-in default's YAML is parsed again with overrides on top (the docs'
    # fragments do so): a first parse must not have turned its lists into tuples.
    raw = checkconfig.load(None).raw
    before = copy.deepcopy(raw)
    checkconfig.parse_config(raw)
    assert raw == before
    assert checkconfig.parse_config({**raw, "limits": {"call_seconds": 2.5}}).variants
