"""The ``pagingcheck`` command line."""

from __future__ import annotations

from importlib.metadata import version

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("pagingcheck"), prog_name="pagingcheck")
def cli() -> None:
    """Check demand-paging designs and implementations against an abstract spec."""


def main() -> None:
    """Console-script entry point."""
    cli()
