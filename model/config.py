"""Hardware configuration: sizes and the choice of each hardware variant.

All sizes are in 32-bit words. A virtual address is a word address; the
virtual page number (vpn) is ``va // page_words``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pagingcheck.model.errors import ConfigError, quote

PageTableKind = Literal["linear", "multilevel", "hashed", "inverted"]
TlbRefill = Literal["hardware", "software"]
RestartVariant = Literal["precise", "state_register", "decode"]
DiskOrder = Literal["fifo", "any"]

PAGE_TABLE_KINDS: tuple[str, ...] = get_args(PageTableKind)
TLB_REFILLS: tuple[str, ...] = get_args(TlbRefill)
RESTART_VARIANTS: tuple[str, ...] = get_args(RestartVariant)
DISK_ORDERS: tuple[str, ...] = get_args(DiskOrder)

#: The PTE's frame-number field is 24 bits wide (see ``model.bits``).
MAX_FRAMES = 1 << 24
#: The most words of memory, or of disk, a modelled machine has: the model is for
#: small machines checked exhaustively, and this keeps each under 64 MiB.
MAX_WORDS = 1 << 24
#: The most words in a page, and entries in a TLB or hash table.
MAX_PAGE_WORDS = 1 << 16
MAX_TLB_ENTRIES = 1 << 12
MAX_HASH_BUCKETS = 1 << 20
#: The most pages in a virtual address space (words are 32 bits).
MAX_VA_PAGES = 1 << 20


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class HardwareConfig:
    """Sizes and variants of the simulated machine.

    ``kernel_frames`` frames at the bottom of physical memory hold page tables
    and are never paged; the ``user_frames`` frames above them are the pool
    the kernel pages into. The disk has ``swap_slots`` page-sized swap slots
    followed by ``image_blocks`` page-sized blocks holding program images.
    ``level_bits`` gives the vpn bits each level of a multi-level table
    indexes, root first (empty: the ``levels`` levels share them evenly); other
    formats ignore it, as they ignore ``levels``.
    """

    page_words: int = 16
    va_pages: int = 64
    kernel_frames: int = 16
    user_frames: int = 8
    page_table: PageTableKind = "multilevel"
    levels: int = 2
    level_bits: tuple[int, ...] = ()
    hash_buckets: int = 8
    tlb_entries: int = 4
    tlb_tagged: bool = True
    tlb_refill: TlbRefill = "hardware"
    restart: RestartVariant = "precise"
    swap_slots: int = 64
    image_blocks: int = 64
    disk_order: DiskOrder = "fifo"

    def __post_init__(self) -> None:
        self._check_types()
        self._check_sizes()

    # -- derived sizes -------------------------------------------------------

    @property
    def total_frames(self) -> int:
        """Frames of physical memory, kernel region included."""
        return self.kernel_frames + self.user_frames

    @property
    def memory_words(self) -> int:
        """Words of physical memory."""
        return self.total_frames * self.page_words

    @property
    def va_words(self) -> int:
        """Words in one virtual address space."""
        return self.va_pages * self.page_words

    @property
    def first_user_frame(self) -> int:
        """Frame number (pfn) of the first user frame."""
        return self.kernel_frames

    @property
    def user_pfns(self) -> range:
        """Frame numbers of the user frame pool."""
        return range(self.kernel_frames, self.total_frames)

    @property
    def disk_blocks(self) -> int:
        """Page-sized blocks on the disk: swap slots, then image blocks."""
        return self.swap_slots + self.image_blocks

    # -- validation ------------------------------------------------------------

    def _check_types(self) -> None:
        choices = {
            "page_table": PAGE_TABLE_KINDS,
            "tlb_refill": TLB_REFILLS,
            "restart": RESTART_VARIANTS,
            "disk_order": DISK_ORDERS,
        }
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in choices:
                if value not in choices[field.name]:
                    allowed = ", ".join(choices[field.name])
                    raise ConfigError(
                        f"hardware.{field.name}: {quote(value)} is not one of: {allowed}"
                    )
            elif field.name == "level_bits":
                if not isinstance(value, tuple) or not all(
                    isinstance(item, int) and not isinstance(item, bool) for item in value
                ):
                    raise ConfigError(
                        "hardware.level_bits: expected a list of integers, got "
                        f"{quote(list(value) if isinstance(value, tuple) else value)}"
                    )
            elif field.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise ConfigError(
                        f"hardware.{field.name}: expected true or false, got {quote(value)}"
                    )
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"hardware.{field.name}: expected an integer, got {quote(value)}")

    def _check_sizes(self) -> None:
        if not _is_power_of_two(self.page_words) or self.page_words < 4:
            raise ConfigError(
                f"hardware.page_words: {self.page_words} must be a power of two of at least 4"
            )
        if not _is_power_of_two(self.va_pages) or self.va_pages < 2:
            raise ConfigError(
                f"hardware.va_pages: {self.va_pages} must be a power of two of at least 2"
            )
        minimums = {
            "kernel_frames": 1,
            "user_frames": 1,
            "levels": 1,
            "hash_buckets": 1,
            "tlb_entries": 1,
            "swap_slots": 0,
            "image_blocks": 0,
        }
        for name, least in minimums.items():
            if getattr(self, name) < least:
                raise ConfigError(
                    f"hardware.{name}: {getattr(self, name)} must be at least {least}"
                )
        self._check_bounds()
        if self.total_frames >= MAX_FRAMES:
            raise ConfigError(
                f"hardware: {self.total_frames} frames do not fit the 24-bit frame number field"
            )
        vpn_bits = self.va_pages.bit_length() - 1
        if self.page_table == "multilevel" and self.levels > vpn_bits:
            raise ConfigError(
                f"hardware.levels: {self.levels} levels need at least {self.levels} vpn bits, "
                f"but va_pages={self.va_pages} gives {vpn_bits}"
            )
        if self.page_table == "multilevel" and self.level_bits:
            self._check_split(vpn_bits)

    def _check_split(self, vpn_bits: int) -> None:
        if len(self.level_bits) != self.levels:
            raise ConfigError(
                f"hardware.level_bits: {len(self.level_bits)} slices for {self.levels} levels; "
                "give one slice per level (leave levels out: it is then their count)"
            )
        if min(self.level_bits) < 1:
            raise ConfigError(
                f"hardware.level_bits: {list(self.level_bits)}: every level indexes at least "
                "one bit"
            )
        if sum(self.level_bits) != vpn_bits:
            raise ConfigError(
                f"hardware.level_bits: {list(self.level_bits)} add up to "
                f"{sum(self.level_bits)} bits, but va_pages={self.va_pages} has {vpn_bits} "
                "vpn bits"
            )

    def _check_bounds(self) -> None:
        bounds = {
            "page_words": MAX_PAGE_WORDS,
            "va_pages": MAX_VA_PAGES,
            "tlb_entries": MAX_TLB_ENTRIES,
            "hash_buckets": MAX_HASH_BUCKETS,
        }
        for name, most in bounds.items():
            if getattr(self, name) > most:
                raise ConfigError(
                    f"hardware.{name}: {getattr(self, name)} is more than the model allows "
                    f"({most}); pagingcheck checks small machines"
                )
        if self.memory_words > MAX_WORDS:
            raise ConfigError(
                f"hardware: {self.total_frames} frames of {self.page_words} words are "
                f"{self.memory_words} words of memory, more than the model allows ({MAX_WORDS}); "
                "use fewer frames or smaller pages"
            )
        if self.disk_blocks * self.page_words > MAX_WORDS:
            raise ConfigError(
                f"hardware: {self.disk_blocks} disk blocks (swap_slots + image_blocks) of "
                f"{self.page_words} words are more than the model's {MAX_WORDS} words of disk; "
                "use fewer slots or blocks, or smaller pages"
            )

    @classmethod
    def from_mapping(cls, data: Any, where: str = "hardware") -> HardwareConfig:
        """Build a configuration from a parsed YAML mapping, rejecting unknown keys."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {quote(unknown[0])}; "
                f"known keys are: {', '.join(sorted(known))}"
            )
        return cls(**_settings(data))

    def to_mapping(self) -> dict[str, Any]:
        """The settings as plain data (YAML, JSON): what :meth:`from_mapping` reads back."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {key: list(v) if isinstance(v, tuple) else v for key, v in values.items()}

    def replace(self, **changes: Any) -> HardwareConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **_settings(changes))


def _settings(data: dict[str, Any]) -> dict[str, Any]:
    """Settings as written (YAML, JSON) made fields: ``level_bits`` a tuple, and
    ``levels`` its count unless given."""
    settings = dict(data)
    split = settings.get("level_bits")
    if isinstance(split, list):
        settings["level_bits"] = tuple(split)
    if isinstance(settings.get("level_bits"), tuple):
        settings.setdefault("levels", len(settings["level_bits"]))
    return settings
