"""``python -m pagingcheck``: the same command line as ``pagingcheck``."""

from pagingcheck.checks.cli import main

main()
