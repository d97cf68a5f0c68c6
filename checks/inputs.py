"""Reading what a user hands pagingcheck: files and YAML, validated before use.

Every user file goes through :func:`read_text` (exists, is a file, not too
large, UTF-8) and every YAML document through :func:`load_yaml`, a safe
loader that also refuses what would exhaust the checker rather than inform
it: nesting too deep, aliases that expand past a bound (a "billion laughs"
of a few hundred bytes), integers of absurd length. Each refusal is a
:class:`~pagingcheck.model.errors.UserError` of one line naming the file,
the line and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pagingcheck.model.errors import UserError

#: The largest configuration or trace read, in bytes.
MAX_FILE_BYTES = 64 << 20
#: How deep YAML collections may nest (a configuration needs 6).
MAX_DEPTH = 64
#: How many values a document may hold once its aliases are expanded.
MAX_VALUES = 1_000_000
#: Digits in an integer: words are 32 bits, and nothing pagingcheck reads needs more.
MAX_DIGITS = 40


def read_text(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The text of the user's file ``path`` (``what`` it is, for messages)."""
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not {what}")
        with path.open("rb") as stream:
            raw = stream.read(limit + 1)
    except OSError as error:
        raise UserError(f"{path}: cannot read {what}: {error.strerror or error}") from error
    if len(raw) > limit:
        raise UserError(f"{path}: {what} is larger than {limit >> 20} MiB; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); "
            f"save {what} as UTF-8"
        ) from error


class _Refused(Exception):
    """A document the loader will not build; carries the line it is about."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with the nesting depth and integer length bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise _Refused(line, f"collections nest more than {MAX_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _bounded_int(loader: _BoundedLoader, node: ScalarNode) -> int:
    digits = sum(char.isalnum() for char in str(node.value))
    if digits > MAX_DIGITS:
        raise _Refused(
            node.start_mark.line + 1,
            f"an integer of {digits} digits; no value pagingcheck reads needs more than "
            f"{MAX_DIGITS}",
        )
    return int(loader.construct_yaml_int(node))


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


def _values(node: Node, seen: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias expanded (shared nodes counted once
    per use, computed once each)."""
    key = id(node)
    if key not in seen:
        seen[key] = 1  # a node under construction counts as one; composers forbid cycles
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(_values(item, seen) for item in node.value)
        elif isinstance(node, MappingNode):
            total += sum(_values(k, seen) + _values(v, seen) for k, v in node.value)
        seen[key] = min(total, MAX_VALUES + 1)
    return seen[key]


def load_yaml(text: str, source: str) -> Any:
    """The one YAML document in ``text`` (None when empty), built safely and boundedly."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as error:  # the reader refuses the characters at once
        raise UserError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _values(node, {}) > MAX_VALUES:
            raise _Refused(
                node.start_mark.line + 1,
                f"its aliases (*name) expand to more than {MAX_VALUES} values; "
                "write the values out, or alias less",
            )
        return loader.construct_document(node)
    except _Refused as error:
        raise UserError(f"{source}: line {error.line}: {error}") from None
    except yaml.MarkedYAMLError as error:
        raise UserError(f"{source}: not valid YAML: {_one_line(error)}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise UserError(f"{source}: the YAML nests too deeply to read") from None
    finally:
        loader.dispose()


def _one_line(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = error.problem or error.context or "malformed"
    return where + " ".join(problem.split())
