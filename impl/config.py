"""Kernel configuration: the paging choices a kernel makes on top of the hardware.

Settings (the YAML ``kernel:`` section uses the same names)::

    policy            replacement policy name (see impl.replacement.POLICY_NAMES);
                      "opt" is refused: it needs the future reference string,
                      which a running kernel cannot know
    allocation        "local": a fault replaces one of the faulting process's own
                      frames (when it has one); "global": any in-use frame
    prepage           "none"; "pc": on a process's first dispatch, start the
                      page-in of the page its PC points at; or a list of vpns
                      to page in on first dispatch
    cleaner           on each timer tick, write back one dirty page ahead of need
    cleaner_threshold the cleaner works only while fewer than this many frames
                      are free
    seed              seed for the randomised policies
    tau               the working-set window of "working-set" and "wsclock", in
                      kernel time units (one per trap and per timer tick)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from pagingcheck.impl.lib.replacement import POLICY_NAMES
from pagingcheck.model.errors import ConfigError, quote

Allocation = Literal["local", "global"]
Prepage = Literal["none", "pc"] | tuple[int, ...]


@dataclass(frozen=True)
class KernelConfig:
    """The reference kernel's settings; validated when built."""

    policy: str = "fifo"
    allocation: Allocation = "global"
    prepage: Prepage = "none"
    cleaner: bool = False
    cleaner_threshold: int = 1
    seed: int = 0
    tau: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str) or self.policy not in POLICY_NAMES:
            raise ConfigError(
                f"kernel.policy: {quote(self.policy)} is not one of: {', '.join(POLICY_NAMES)}"
            )
        if self.policy == "opt":
            usable = ", ".join(name for name in POLICY_NAMES if name != "opt")
            raise ConfigError(
                "kernel.policy: 'opt' needs the future reference string, which a running "
                f"kernel cannot know; choose one of: {usable}"
            )
        if self.allocation not in ("local", "global"):
            raise ConfigError(
                f"kernel.allocation: {quote(self.allocation)} is not one of: local, global"
            )
        self._check_prepage()
        if not isinstance(self.cleaner, bool):
            raise ConfigError(f"kernel.cleaner: expected true or false, got {quote(self.cleaner)}")
        for name, least in (("cleaner_threshold", 0), ("seed", None), ("tau", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"kernel.{name}: expected an integer, got {quote(value)}")
            if least is not None and value < least:
                raise ConfigError(f"kernel.{name}: {value} must be at least {least}")

    def _check_prepage(self) -> None:
        value = self.prepage
        if isinstance(value, str):
            if value not in ("none", "pc"):
                raise ConfigError(
                    f"kernel.prepage: {quote(value)} is not 'none', 'pc' or a list of page numbers"
                )
            return
        if not isinstance(value, tuple) or not all(
            isinstance(vpn, int) and not isinstance(vpn, bool) and vpn >= 0 for vpn in value
        ):
            raise ConfigError(
                f"kernel.prepage: {quote(value)} is not 'none', 'pc' or a list of page numbers "
                "(non-negative integers)"
            )

    @classmethod
    def from_mapping(cls, data: Any, where: str = "kernel") -> KernelConfig:
        """Build a configuration from a parsed YAML mapping, rejecting unknown keys.

        A list given for ``prepage`` becomes a tuple. Raises ConfigError naming
        the key for an unknown key or a value of the wrong type.
        """
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {quote(unknown[0])}; "
                f"known keys are: {', '.join(sorted(known))}"
            )
        return cls(**_listed(data))

    def replace(self, **changes: Any) -> KernelConfig:
        """A copy with some settings changed (validated again; a list is a tuple)."""
        return dataclasses.replace(self, **_listed(changes))


def _listed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a list (as YAML gives ``prepage``) made a tuple."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
