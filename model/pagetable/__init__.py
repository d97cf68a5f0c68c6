"""Page-table formats: linear, multi-level, hashed and inverted.

Every format implements :class:`PageTableFormat` (see ``base``) and keeps
all table state in physical memory. Rules shared by all four:

* ``walk`` reads memory only, returns ints, and answers None when there is
  no entry or the PTE word is zero, and for root 0 (no table loaded);
* ``set_pte`` with a zero PTE is a ``clear`` (the inverted table treats any
  non-present PTE so: it holds resident pages only);
* out of kernel memory, ``boot`` / ``create`` return None and ``set_pte``
  returns False, with memory and the allocator exactly as before;
* a vpn outside the address space, or a root that is not a table, raises
  InternalError: the kernel broke the contract;
* freed table words are filled with ``FREED_PATTERN``.

Each module draws its memory layout in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.pagetable.base import Entry, PageTableFormat
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
