"""Hardware configuration validation and the kernel-memory allocator."""

from __future__ import annotations

import pytest

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError, InternalError


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pagewords": 16}, "unknown key 'pagewords'"),
        ({"page_words": "16"}, "expected an integer"),
        ({"page_words": 12}, "power of two"),
        ({"tlb_tagged": 1}, "expected true or false"),
        ({"page_table": "radix"}, "not one of"),
        ({"user_frames": 0}, "at least 1"),
        ({"levels": 9}, "levels"),
        ({"level_bits": [2, 2]}, r"add up to 4 bits, but va_pages=64 has 6"),
        ({"level_bits": [0, 6]}, "at least one bit"),
        ({"levels": 3, "level_bits": [2, 4]}, "2 slices for 3 levels"),
        ({"level_bits": "2,4"}, "expected a list of integers"),
        ({"level_bits": [True, 5]}, "expected a list of integers"),
    ],
)
def test_bad_settings_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HardwareConfig.from_mapping(data)


def test_a_split_of_the_vpn_bits_sets_the_levels_and_round_trips() -> None:
    config = HardwareConfig.from_mapping({"va_pages": 64, "level_bits": [2, 4]})
    assert (config.levels, config.level_bits) == (2, (2, 4))
    assert HardwareConfig.from_mapping(config.to_mapping()) == config
    assert config.replace(level_bits=[1, 1, 4]).levels == 3
    # Other formats ignore the split, as they ignore the number of levels.
    assert config.replace(page_table="linear").level_bits == (2, 4)


def test_derived_sizes() -> None:
    config = HardwareConfig(page_words=8, kernel_frames=4, user_frames=3, va_pages=16)
    assert config.memory_words == 56
    assert list(config.user_pfns) == [4, 5, 6]
    assert config.va_words == 128


def test_allocator_first_fit_coalesces_and_reports_exhaustion() -> None:
    kalloc = KernelAllocator(HardwareConfig(page_words=4, kernel_frames=2))
    assert kalloc.free_words == 7  # word 0 is never handed out
    a = kalloc.alloc(3)
    b = kalloc.alloc(4, align=4)
    assert (a, b) == (1, 4)
    assert a is not None and b is not None
    assert kalloc.alloc(1) is None
    kalloc.free(a, 3)
    kalloc.free(b, 4)
    assert kalloc.free_extents == ((1, 7),)
    with pytest.raises(InternalError):
        kalloc.free(2, 1)
