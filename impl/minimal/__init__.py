"""A small paging kernel written from the documentation alone: a starting point for your own.

``MinimalKernel(hardware, kernel=None)`` runs on every hardware variant
(each page-table format, TLB kind and restart variant) using only the
hardware port and the kernel library. See :mod:`.kernel` for its design.
"""

from pagingcheck.impl.minimal.kernel import MinimalKernel

__all__ = ["MinimalKernel"]
