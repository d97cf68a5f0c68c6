"""Page-table formats as the hardware sees them: linear, multi-level, hashed and inverted.

Every format implements :class:`PageTableFormat` (see ``base``): a
read-only, total walk over physical memory, plus read-only enumeration of
an address space's entries and table memory for the checks. Rules shared
by all four:

* ``walk`` reads memory only, returns ints, and answers None when there is
  no entry or the PTE word is zero, and for root 0 (no table loaded);
* nothing in a table's contents makes a walk raise: a pointer out of
  memory or an over-long chain ends the walk;
* a vpn outside the address space raises InternalError (the MMU and the
  kernel library compute vpns themselves, so this is a bug of ours).

Creating and editing tables is kernel software: the kernel library's
``pagingcheck.impl.lib.pagetable`` does it for each format. Each module
here draws its memory layout in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.pagetable.base import Entry, PageTableFormat, Reader
from pagingcheck.model.pagetable.hashed import HashedFormat
from pagingcheck.model.pagetable.inverted import InvertedFormat
from pagingcheck.model.pagetable.linear import LinearFormat
from pagingcheck.model.pagetable.multilevel import MultilevelFormat

__all__ = [
    "FORMATS",
    "Entry",
    "HashedFormat",
    "InvertedFormat",
    "LinearFormat",
    "MultilevelFormat",
    "PageTableFormat",
    "Reader",
    "make_format",
]

#: Format class by the name ``HardwareConfig.page_table`` uses.
FORMATS: dict[str, Callable[[HardwareConfig], PageTableFormat]] = {
    "linear": LinearFormat,
    "multilevel": MultilevelFormat,
    "hashed": HashedFormat,
    "inverted": InvertedFormat,
}


def make_format(config: HardwareConfig) -> PageTableFormat:
    """The format ``config.page_table`` names, for ``config``."""
    return FORMATS[config.page_table](config)
