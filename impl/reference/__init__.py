"""The reference kernel: demand paging following the seeds' steps (see :mod:`.kernel`)."""

from pagingcheck.impl.reference.kernel import ReferenceKernel

__all__ = ["ReferenceKernel"]
