"""Paging hardware: physical memory, page-table formats, MMU and TLB, CPU and ISA, disk.

Nothing here depends on the rest of pagingcheck; the kernel (``impl``) and the
checks build on it.
"""
