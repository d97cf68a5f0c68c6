"""Creating and editing page tables in every format: the kernel library's half of a format.

:func:`make_editor` gives the editor for the hardware's configured format.
Each editor follows the layout the MMU walks (``pagingcheck.model.pagetable``)
and keeps it as ``layout``; see :mod:`~pagingcheck.impl.lib.pagetable.base`
for the rules all of them share.
"""

from __future__ import annotations

from pagingcheck.impl.lib.pagetable.base import TableEditor
from pagingcheck.impl.lib.pagetable.hashed import HashedEditor
from pagingcheck.impl.lib.pagetable.inverted import InvertedEditor
from pagingcheck.impl.lib.pagetable.linear import LinearEditor
from pagingcheck.impl.lib.pagetable.multilevel import MultilevelEditor
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.pagetable import make_format

__all__ = [
    "EDITORS",
    "HashedEditor",
    "InvertedEditor",
    "LinearEditor",
    "MultilevelEditor",
    "TableEditor",
    "make_editor",
]

#: Editor class by the name ``HardwareConfig.page_table`` uses.
EDITORS: dict[str, type[TableEditor]] = {
    "linear": LinearEditor,
    "multilevel": MultilevelEditor,
    "hashed": HashedEditor,
    "inverted": InvertedEditor,
}


def make_editor(config: HardwareConfig) -> TableEditor:
    """The editor for the format ``config.page_table`` names."""
    return EDITORS[config.page_table](make_format(config))
