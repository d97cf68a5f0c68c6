"""The documented examples work as printed: every YAML, JSON, assembly and shell example in
README.md and docs/ is extracted and loaded, compared with what the code produces, or run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pagingcheck.checks import config as checkconfig
from pagingcheck.checks import traces
from pagingcheck.checks.cli import cli
from pagingcheck.checks.output import JSON_SCHEMA, RESULTS_SCHEMA
from pagingcheck.model.asm import assemble
from tests.tiny import TINY

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def examples(language: str) -> list[tuple[str, str, str]]:
    """(page, heading above it, text) of every fenced block in ``language``."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match[1] == language:
                headings = re.findall(r"^#+ (.*)$", text[: match.start()], re.M)
                found.append((page.name, headings[-1] if headings else "", match[2]))
    return found


def test_the_pages_have_examples_of_each_kind() -> None:
    for language in ("yaml", "json", "sh", "asm"):
        assert examples(language), language


@pytest.mark.parametrize(
    "example",
    [e for e in examples("yaml") if "pagingcheck_trace" not in e[2]],
    ids=lambda e: f"{e[0]}:{e[1]}",
)
def test_a_configuration_example_loads(example: tuple[str, str, str]) -> None:
    _, _, text = example
    data = yaml.safe_load(text)
    if "workload" not in data:  # a fragment: it goes into a whole configuration
        data = {**checkconfig.load(None).raw, **data}
    checkconfig.parse_config(data)


def test_the_trace_format_example_names_every_section_a_trace_has(tmp_path: Path) -> None:
    (example,) = [e for e in examples("yaml") if "pagingcheck_trace" in e[2]]
    documented = yaml.safe_load(example[2])
    written = yaml.safe_load(_written_trace(tmp_path).read_text())
    assert list(documented) == list(written)
    assert set(documented["workload"]) == set(written["workload"])
    assert set(documented["workload"]["programs"][0]) == set(written["workload"]["programs"][0])
    assert set(documented["violation"]) == set(written["violation"])
    program = documented["workload"]["programs"][0]
    assert program["text"] == assemble("MOV #3, r1\nSYS 0")


def _written_trace(folder: Path) -> Path:
    from pagingcheck.checks.mutants import mutant_config
    from pagingcheck.checks.runner import run_choices
    from pagingcheck.impl.mutants import BY_NAME, factory

    mutant = BY_NAME["reuse_busy_frame"]
    config = mutant_config(checkconfig.load(None), mutant)
    result = run_choices(config, factory(mutant), [("run", 1)])
    trace = traces.from_run(config, f"pagingcheck.impl.mutants:{mutant.name}", [("run", 1)], result)
    return traces.write(trace, folder, "t")


def _written_log(folder: Path) -> Path:
    from pagingcheck.checks import logs
    from pagingcheck.checks.runner import REFERENCE_KERNEL, resolve_factory

    path = folder / "run.log"
    with path.open("w") as stream:
        logs.write_log(
            checkconfig.load_reference("pair"), resolve_factory(REFERENCE_KERNEL), stream
        )
    return path


@pytest.mark.parametrize("example", examples("asm"), ids=lambda e: f"{e[0]}:{e[1]}")
def test_an_assembly_example_assembles(example: tuple[str, str, str]) -> None:
    assert assemble(example[2])


_SCHEMA: dict[str, Any] = json.loads(RESULTS_SCHEMA.read_text())
RESULTS = jsonschema.Draft202012Validator(_SCHEMA)
VIOLATION = jsonschema.Draft202012Validator(
    {"$defs": _SCHEMA["$defs"], "$ref": "#/$defs/violation"}
)


def _actual_json(command: str, folder: Path) -> dict[str, object]:
    """What ``pagingcheck COMMAND --json`` prints on a tiny case."""
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    common = ["--config", str(config), "--traces", str(folder)]
    if command == "replay":
        args = ["replay", str(_written_trace(folder))]
    elif command == "simulate":
        args = ["simulate", "-p", "lru", "-n", "3", "--refs", "1,2,3"]
    elif command == "validate":
        args = ["validate", "--impl", "pagingcheck.impl.minimal:MinimalKernel", *common]
    elif command == "check-log":
        args = ["check-log", str(_written_log(folder))]
    elif command == "prove":
        args = ["prove"]
    elif command == "mutants":
        args = ["mutants", "--only", "reuse_busy_frame", *common]
    else:
        args = [command, *common]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code in (0, 1), result.stderr
    printed: dict[str, object] = json.loads(result.stdout)
    RESULTS.validate(printed)  # the shipped schema of every command's output
    assert printed["command"] == command and printed["schema"] == JSON_SCHEMA
    return printed


@pytest.mark.parametrize("example", examples("json"), ids=lambda e: f"{e[0]}:{e[1]}")
def test_a_json_example_has_the_shape_the_command_prints(
    example: tuple[str, str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page, heading, text = example
    documented = json.loads(text)
    if heading == "JSON shapes":  # the violation object every command's output shares
        VIOLATION.validate(documented)
        return
    named = re.search(r"`([\w-]+) --json`", heading)
    command = named[1] if named else "simulate" if page == "simulate.md" else ""
    assert command, f"{page}: say which command a JSON example is of ({heading!r})"
    if command == "prove":
        request.getfixturevalue("first_proofs")  # the shape, not every proof again
    actual: dict[str, Any] = _actual_json(command, tmp_path)
    assert set(documented) == set(actual)
    for item in documented["results"]:
        assert set(item) <= set(_counterpart(item, actual["results"])) | _CHECK_EXTRAS
    if documented["violation"] is not None:
        VIOLATION.validate(documented["violation"])


def _counterpart(item: dict[str, Any], actual: list[dict[str, Any]]) -> dict[str, Any]:
    """The actual entry of the kind a documented one shows: the check of the same name
    (any ``stateful:`` check for a ``stateful:`` one), else the first."""
    kind = str(item.get("name", "")).split(":")[0]
    same = [a for a in actual if str(a.get("name", "")).split(":")[0] == kind]
    return same[0] if same else actual[0]


# Keys a verify check carries only when it has them (a violation; a coverage shortfall).
_CHECK_EXTRAS = {"violation", "unreached", "unreached_by_variant", "unreached_by_format"}


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for page, _, text in examples("sh"):
        for line in text.splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0]:  # VAR=value before the command
                words = words[1:]
            if ">" in words:  # output redirected: the command is what comes before
                words = words[: words.index(">")]
            if words:
                found.append((page, words))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[1])[:60])
def test_a_shell_example_is_a_command_that_exists_with_those_options(
    command: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, words = command
    monkeypatch.chdir(tmp_path)
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert set(words[1:]) <= set(targets)
    elif words[0] == "valgrind":
        assert "--tool=lackey" in words
    else:
        assert words[0] == "pagingcheck"
        sub = cli.get_command(click.Context(cli), words[1])
        assert sub is not None, words[1]
        sub.make_context(words[1], words[2:])  # a usage error raises here


def test_a_fault_curve_and_traced_steps_fit_the_results_schema() -> None:
    for policy in ("fifo", "lru"):
        args = ["simulate", "-p", policy, "-n", "1-5", "--refs", "1,2,3,4,1,2,5,1,2,3,4,5"]
        result = CliRunner().invoke(cli, [*args, "--json"])
        assert result.exit_code == 0, result.output
        RESULTS.validate(json.loads(result.stdout))
    steps = ["simulate", "-p", "clock", "-n", "2", "--refs", "1,2w,3", "--trace-steps", "--json"]
    result = CliRunner().invoke(cli, steps)
    assert result.exit_code == 0, result.output
    RESULTS.validate(json.loads(result.stdout))


def test_the_simulate_example_prints_what_the_page_shows() -> None:
    (page,) = [p for p in PAGES if p.name == "simulate.md"]
    text = page.read_text()
    line = next(c for p, c in _commands() if p == "simulate.md" and "--refs" in c)
    result = CliRunner().invoke(cli, line[1:])
    assert result.exit_code == 0
    assert result.stdout.strip() in text


def test_the_property_catalog_lists_every_property() -> None:
    from pagingcheck.checks.invariants import INVARIANTS
    from pagingcheck.checks.refinement import STEP_PROPERTIES

    catalog = (ROOT / "docs" / "invariants.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", catalog, re.M))
    assert set(INVARIANTS) | set(STEP_PROPERTIES) <= rows
