"""What ``pagingcheck COMMAND --help`` says beyond the options: a one-line summary that
the command list shows whole, examples, and the exit codes.

Kept in one table so every command's help has the same parts; the test suite parses
every example against its command's options, so an example cannot name an option that
does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import click


@dataclass(frozen=True)
class Help:
    """A command's summary, examples and what exit status 1 means for it."""

    summary: str
    examples: tuple[str, ...]
    violated: str | None  # what exit 1 means; None when the command never exits 1


HELP: dict[str, Help] = {
    "verify": Help(
        "The main job: every check on a configuration.",
        (
            "pagingcheck verify",
            "pagingcheck verify --config my.yaml -x -j 2",
            "pagingcheck verify --variant hashed-decode-lru --seed 7",
            "pagingcheck verify --json > report.json",
        ),
        "a property was violated or a required paging situation never reached",
    ),
    "validate": Help(
        "Check your own kernel, in Python or any language.",
        (
            "pagingcheck validate --impl mykernel:Kernel",
            "pagingcheck validate --exec ./kernel --config conformance.yaml -x",
            "pagingcheck validate --impl mykernel:Kernel --variant linear-state-register-fifo -v",
        ),
        "a property was violated or a required paging situation never reached",
    ),
    "replay": Help(
        "Re-run a counterexample trace, step by step.",
        (
            "pagingcheck replay traces/base-tlb_agrees.yaml",
            "pagingcheck replay traces/base-tlb_agrees.yaml --exec ./kernel",
            "pagingcheck replay traces/base-tlb_agrees.yaml --write-log run.log",
            "pagingcheck replay traces/base-tlb_agrees.yaml --html failure.html",
        ),
        "the trace still fails",
    ),
    "view": Help(
        "A counterexample trace as a page to step through.",
        (
            "pagingcheck view traces/base-tlb_agrees.yaml",
            "pagingcheck view traces/base-tlb_agrees.yaml --out failure.html --open",
        ),
        "the trace still fails",
    ),
    "explore": Help(
        "Every reachable state of a small configuration.",
        (
            "pagingcheck explore",
            "pagingcheck explore --reference pair --json",
            "pagingcheck explore --config my.yaml --max-states 50000 --workers 2",
        ),
        "a property was violated, or the system makes no progress",
    ),
    "mutants": Help(
        "Run the checker on every seeded-bug kernel.",
        ("pagingcheck mutants", "pagingcheck mutants --only reuse_busy_frame --json"),
        "some mutant survived",
    ),
    "prove": Help(
        "z3 proofs about the reference kernel's transitions.",
        ("pagingcheck prove", "pagingcheck prove --json"),
        "some obligation was not proved",
    ),
    "check-log": Help(
        "Check a kernel's own log against every property.",
        ("pagingcheck check-log run.log", "pagingcheck check-log run.log --reference pair --json"),
        "no behaviour of the system fits the log",
    ),
    "config": Help(
        "Print a configuration to start your own from.",
        ("pagingcheck config --default > my.yaml", "pagingcheck config --reference pair"),
        None,
    ),
    "schema": Help(
        "Print the JSON Schema of the protocol or the results.",
        ("pagingcheck schema > protocol.json", "pagingcheck schema --results > results.json"),
        None,
    ),
    "docs": Help(
        "Print a topic of the manual, or list them.",
        ("pagingcheck docs", "pagingcheck docs validate", "pagingcheck docs protocol | less"),
        None,
    ),
    "simulate": Help(
        "Count page faults of a replacement policy.",
        (
            "pagingcheck simulate -p lru -n 3 --refs 7,0,1,2,0,3,0,4",
            "pagingcheck simulate -p clock -n 64 --refs-file trace.txt --json",
            "pagingcheck simulate -p opt -n 16 --refs-file ls.lackey --lackey",
        ),
        None,
    ),
}


def epilog(entry: Help) -> str:
    """The text after the options: examples, then the exit codes (``\\b`` keeps click from
    rewrapping the lines)."""
    examples = "\n".join(f"  {example}" for example in entry.examples)
    codes = [("0", "done" if entry.violated is None else "done, nothing violated")]
    if entry.violated is not None:
        codes.append(("1", entry.violated))
    codes += [("2", "bad usage or input"), ("3", "a bug in pagingcheck, never the kernel's")]
    codes += [("130", "interrupted (Ctrl-C)"), ("143", "terminated (SIGTERM)")]
    listed = "\n".join(f"  {code:<4} {meaning}" for code, meaning in codes)
    return f"\b\nExamples:\n{examples}\n\n\b\nExit codes:\n{listed}"


def document(command: click.Command) -> None:
    """Give ``command`` its summary and epilog from :data:`HELP`."""
    entry = HELP[command.name or ""]
    command.short_help = entry.summary
    command.epilog = epilog(entry)
