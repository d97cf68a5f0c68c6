"""Assembler and disassembler for the ISA of ``model.isa``.

Syntax, one statement per line::

    loop:   MOV (r1)+, -(r2)    ; a comment runs to the end of the line
            ADDI r3, #-1
            BNE @loop
            SYS 0
    table:  .word 1, 0x20, loop

* mnemonics are case-insensitive; registers are ``r0`` .. ``r7``;
* operands: ``rN``, ``(rN)``, ``(rN)+``, ``-(rN)``, ``#value``, ``@address``;
* a value is a decimal or ``0x`` hex number (``-`` allowed), a label, or a
  label plus or minus a number; it must fit in 32 bits and is stored
  modulo 2**32;
* ``name:`` defines a label at the address of what follows (``origin`` plus
  the words before it); ``.word v, ...`` places data words;
* branch targets are written ``@target``; ``SYS`` takes a plain number;
* ``PUSHM rS, {r0, r2}`` lists the registers it pushes below ``rS`` in braces
  (in any order; each once).

Mistakes raise :class:`AssemblyError` naming the line and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pagingcheck.model.errors import AssemblyError, quote
from pagingcheck.model.isa import (
    EXTENSION_MODES,
    NO_OPERAND,
    NUMBER_MASK,
    OPERAND_MODES,
    WORD_MASK,
    Instruction,
    Mode,
    Op,
    Operand,
    decode,
    encode,
    illegal_reason,
    length,
)

_LABEL = re.compile(r"\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*:")
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_REGISTER = re.compile(r"[rR](\d+)")
_VALUE = re.compile(r"(?:([A-Za-z_.][A-Za-z0-9_.]*)\s*([+-])\s*)?(-?(?:0[xX][0-9a-fA-F]+|\d+))")
_FORMS = {
    Mode.REG: re.compile(r"[rR](\d+)"),
    Mode.IND: re.compile(r"\(\s*[rR](\d+)\s*\)"),
    Mode.INC: re.compile(r"\(\s*[rR](\d+)\s*\)\s*\+"),
    Mode.DEC: re.compile(r"-\s*\(\s*[rR](\d+)\s*\)"),
}
_SPELLING = {
    Mode.REG: "rN",
    Mode.IND: "(rN)",
    Mode.INC: "(rN)+",
    Mode.DEC: "-(rN)",
    Mode.IMM: "#value",
    Mode.ABS: "@address",
}
_MNEMONICS = {op.name: op for op in Op}


@dataclass(frozen=True)
class _Statement:
    """One instruction or ``.word`` line after the first pass (values unresolved)."""

    line: int
    text: str
    op: Op | None  # None for .word
    operands: tuple[str, ...]
    size: int


def _fail(line: int, text: str, problem: str) -> AssemblyError:
    return AssemblyError(f"line {line} ({quote(text.strip())}): {problem}")


def _split_operands(rest: str) -> tuple[str, ...]:
    rest = rest.strip()
    return tuple(part.strip() for part in rest.split(",")) if rest else ()


def _mode_of(operand: str) -> tuple[Mode, str]:
    """The mode an operand is written in, and its register digits or value text."""
    if operand.startswith("#"):
        return Mode.IMM, operand[1:].strip()
    if operand.startswith("@"):
        return Mode.ABS, operand[1:].strip()
    for mode, form in _FORMS.items():
        match = form.fullmatch(operand)
        if match:
            return mode, match.group(1)
    raise ValueError(operand)


def _first_pass(text: str, origin: int) -> tuple[list[_Statement], dict[str, int]]:
    """Split lines into statements and give every label its address."""
    statements: list[_Statement] = []
    labels: dict[str, int] = {}
    defined_on: dict[str, int] = {}
    address = origin
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split(";", 1)[0]
        while match := _LABEL.match(body):
            name = match.group(1)
            if _REGISTER.fullmatch(name):
                raise _fail(number, raw, f"label {name!r} is spelled like a register; rename it")
            if name in labels:
                raise _fail(
                    number,
                    raw,
                    f"label {name!r} is already defined on line {defined_on[name]}; rename one",
                )
            labels[name] = address & WORD_MASK
            defined_on[name] = number
            body = body[match.end() :]
        body = body.strip()
        if not body:
            continue
        head, *rest = body.split(None, 1)
        operands = _split_operands(rest[0] if rest else "")
        if head.lower() == ".word":
            if not operands or "" in operands:
                raise _fail(number, raw, ".word needs values separated by commas: .word 1, 2")
            statements.append(_Statement(number, raw, None, operands, len(operands)))
            address += len(operands)
            continue
        op = _MNEMONICS.get(head.upper())
        if op is None:
            known = ", ".join([*_MNEMONICS, ".word"])
            raise _fail(number, raw, f"unknown mnemonic {head!r}; the mnemonics are: {known}")
        size = 1 + sum(1 for o in operands if o.startswith(("#", "@")))
        statements.append(_Statement(number, raw, op, operands, size))
        address += size
    return statements, labels


def _label(name: str, labels: dict[str, int], line: int, raw: str) -> int:
    if name not in labels:
        raise _fail(
            line, raw, f"undefined label {name!r}; define it with '{name}:' or fix the name"
        )
    return labels[name]


#: Digits a number may have: enough for any 32-bit word written in binary, with a prefix.
MAX_DIGITS = 34


def _value(text: str, labels: dict[str, int], line: int, raw: str) -> int:
    """A value: number, label, or label +/- number; modulo 2**32."""
    text = text.strip()
    if _NAME.fullmatch(text):
        return _label(text, labels, line, raw)
    match = _VALUE.fullmatch(text)
    if match is None:
        raise _fail(
            line,
            raw,
            f"cannot read the value {quote(text)}; write a number (12, 0x1c), label or label+N",
        )
    name, sign, digits = match.groups()
    if len(digits) > MAX_DIGITS:
        raise _fail(line, raw, f"a number of {len(digits)} digits does not fit a 32-bit word")
    number = int(digits, 0)
    if name is not None:
        offset = number if sign == "+" else -number
        return (_label(name, labels, line, raw) + offset) & WORD_MASK
    if not -(1 << 31) <= number <= WORD_MASK:
        raise _fail(line, raw, f"{digits} does not fit in 32 bits")
    return number & WORD_MASK


def _operand(
    statement: _Statement, index: int, allowed: frozenset[Mode], labels: dict[str, int]
) -> Operand:
    op, raw, line = statement.op, statement.text, statement.line
    assert op is not None
    text = statement.operands[index]
    forms = " or ".join(_SPELLING[m] for m in _SPELLING if m in allowed)
    try:
        mode, body = _mode_of(text)
    except ValueError:
        raise _fail(line, raw, f"cannot read operand {text!r}; write {forms}") from None
    if mode not in allowed:
        hint = " (to go through a register, use MOV)" if op in (Op.LOAD, Op.STORE) else ""
        raise _fail(line, raw, f"{op.name} operand {index + 1} must be {forms}, not {text!r}{hint}")
    if mode in EXTENSION_MODES:
        return Operand(mode, 0, _value(body, labels, line, raw))
    register = int(body)
    if register >= 8:
        raise _fail(line, raw, f"there is no register r{register}; the registers are r0..r7")
    return Operand(mode, register)


def _instruction(statement: _Statement, labels: dict[str, int]) -> Instruction:
    op, raw, line = statement.op, statement.text, statement.line
    assert op is not None
    if op is Op.SYS:
        if len(statement.operands) != 1:
            raise _fail(line, raw, "SYS takes one number: SYS 0")
        number = _value(statement.operands[0], labels, line, raw)
        if number > NUMBER_MASK:
            raise _fail(line, raw, f"system call number {number} is outside 0..{NUMBER_MASK}")
        return Instruction(op, number=number)
    if op is Op.PUSHM:
        return _push(statement, labels)
    modes = [m for m in OPERAND_MODES[op] if m != frozenset({Mode.NONE})]
    if len(statement.operands) != len(modes):
        example = {0: op.name, 1: f"{op.name} @target", 2: f"{op.name} a, b"}[len(modes)]
        raise _fail(
            line,
            raw,
            f"{op.name} takes {len(modes)} operand(s), got {len(statement.operands)}: "
            f"write {example}",
        )
    operands = [_operand(statement, i, allowed, labels) for i, allowed in enumerate(modes)]
    a, b = (*operands, NO_OPERAND, NO_OPERAND)[:2]
    reason = illegal_reason(op, a, b)
    if reason is not None:
        raise _fail(line, raw, f"{reason}; use two different registers")
    return Instruction(op, a, b)


_PUSHED = re.compile(r"\{([^{}]*)\}")


def _push(statement: _Statement, labels: dict[str, int]) -> Instruction:
    """``PUSHM rS, {rA, rB, ...}``: the stack register, then the list in braces."""
    raw, line = statement.text, statement.line
    usage = "write PUSHM r7, {r0, r1}"
    _, *rest = statement.operands or [""]
    listed = _PUSHED.fullmatch(", ".join(rest).strip())
    if listed is None:
        raise _fail(line, raw, f"PUSHM takes a register and a list in braces: {usage}")
    a = _operand(statement, 0, OPERAND_MODES[Op.PUSHM][0], labels)
    mask = 0
    for name in (part.strip() for part in listed.group(1).split(",")):
        found = _REGISTER.fullmatch(name)
        if found is None or int(found.group(1)) >= 8:
            raise _fail(line, raw, f"cannot read register {name!r} in PUSHM's list; {usage}")
        bit = 1 << int(found.group(1))
        if mask & bit:
            raise _fail(line, raw, f"PUSHM lists {name} twice; list each register once")
        mask |= bit
    reason = illegal_reason(Op.PUSHM, a, NO_OPERAND, mask)
    if reason is not None:
        raise _fail(line, raw, reason)
    return Instruction(Op.PUSHM, a, number=mask)


def assemble(text: str, origin: int = 0) -> list[int]:
    """The words of the program ``text``, whose first word sits at address ``origin``.

    Raises AssemblyError naming the line, the problem and the fix.
    """
    statements, labels = _first_pass(text, origin)
    words: list[int] = []
    for statement in statements:
        if statement.op is None:
            words += [_value(v, labels, statement.line, statement.text) for v in statement.operands]
        else:
            words += encode(_instruction(statement, labels))
    return words


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x8000_0000 else value


def format_operand(operand: Operand) -> str:
    """An operand as the assembler reads it (immediates signed, addresses unsigned)."""
    r = operand.reg
    return {
        Mode.NONE: "",
        Mode.REG: f"r{r}",
        Mode.IND: f"(r{r})",
        Mode.INC: f"(r{r})+",
        Mode.DEC: f"-(r{r})",
        Mode.IMM: f"#{_signed(operand.value)}",
        Mode.ABS: f"@{operand.value}",
    }[operand.mode]


def format_instruction(instruction: Instruction) -> str:
    """One instruction as assembly text, e.g. ``MOV (r1)+, -(r2)``."""
    if instruction.op is Op.SYS:
        return f"SYS {instruction.number}"
    if instruction.op is Op.PUSHM:
        listed = ", ".join(f"r{r}" for r in sorted(instruction.pushed))
        return f"PUSHM r{instruction.a.reg}, {{{listed}}}"
    operands = [
        format_operand(o) for o in (instruction.a, instruction.b) if o.mode is not Mode.NONE
    ]
    return f"{instruction.op.name} {', '.join(operands)}".rstrip()


def disassemble(words: Sequence[int], origin: int = 0) -> list[str]:
    """One line per instruction of ``words`` (placed at ``origin``), its address as a comment.

    A word that does not begin a whole instruction becomes ``.word 0x...``.
    ``assemble`` of the lines gives ``words`` back.
    """
    lines: list[str] = []
    index = 0
    while index < len(words):
        instruction = decode(words[index:])
        if instruction is None:
            text, size = f".word {words[index] & WORD_MASK:#010x}", 1
        else:
            text, size = format_instruction(instruction), length(words[index])
        lines.append(f"{text:<24} ; {origin + index}")
        index += size
    return lines
