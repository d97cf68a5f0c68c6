"""Hypothesis strategies for small random programs.

Random programs are short straight-line sequences of every instruction form,
ending in the exit call. Addresses lean towards the pages a program really
has (text, data, heap, stack) and page boundaries, but also fall on invalid
pages, and stores may hit the read-only text, so the runs include invalid
accesses and protection violations as well as ordinary paging.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from hypothesis import assume
from hypothesis import strategies as st

from pagingcheck.model import isa
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import Instruction, Mode, Op, Operand
from pagingcheck.model.program import Program

MAX_INSTRUCTIONS = 10


@lru_cache(maxsize=64)  # strategies are values; building them costs more than drawing
def addresses(hardware: HardwareConfig) -> st.SearchStrategy[int]:
    """Virtual addresses: mostly in the first pages and the stack, some anywhere."""
    words, pages = hardware.page_words, hardware.va_pages
    likely_pages = st.sampled_from([0, 1, 2, 3, pages - 1])
    offsets = st.one_of(st.integers(0, words - 1), st.sampled_from([0, words - 1]))
    likely = st.builds(lambda vpn, off: vpn * words + off, likely_pages, offsets)
    anywhere = st.integers(0, pages * words - 1)
    beyond = st.integers(pages * words, pages * words + 4 * words)
    return st.one_of(likely, likely, likely, anywhere, beyond)


@lru_cache(maxsize=256)
def operands(hardware: HardwareConfig, modes: frozenset[Mode]) -> st.SearchStrategy[Operand]:
    """An operand of one of ``modes``."""
    registers = st.integers(0, isa.REGISTERS - 1)
    choices: list[st.SearchStrategy[Operand]] = []
    if Mode.REG in modes:
        choices.append(registers.map(isa.reg))
    if Mode.IND in modes:
        choices.append(registers.map(isa.ind))
    if Mode.INC in modes:
        choices.append(registers.map(isa.inc))
    if Mode.DEC in modes:
        choices.append(registers.map(isa.dec))
    if Mode.IMM in modes:
        choices.append(st.one_of(addresses(hardware), st.integers(-4, 4)).map(isa.imm))
    if Mode.ABS in modes:
        choices.append(addresses(hardware).map(isa.absolute))
    if Mode.NONE in modes:
        choices.append(st.just(isa.NO_OPERAND))
    return st.one_of(choices)


_STRAIGHT = [op for op in Op if op not in (Op.BEQ, Op.BNE, Op.BLT, Op.BGE, Op.JMP, Op.SYS)]


@st.composite
def instructions(draw: st.DrawFn, hardware: HardwareConfig) -> Instruction:
    """One legal straight-line instruction (no branches, no system calls)."""
    op = draw(st.sampled_from(_STRAIGHT))
    first, second = isa.OPERAND_MODES[op]
    a = draw(operands(hardware, first))
    b = draw(operands(hardware, second))
    number = draw(st.sampled_from(isa.NUMBERED[op])) if op in isa.NUMBERED else 0
    # e.g. MOV (r1)+, (r1) and PUSHM r7, {r7} do not exist
    assume(isa.illegal_reason(op, a, b, number) is None)
    return Instruction(op, a, b, number)


@st.composite
def programs(draw: st.DrawFn, hardware: HardwareConfig) -> Program:
    """A small program: a few instructions that set up addresses, then accesses, then exit."""
    setup = [
        Instruction(Op.MOV, isa.imm(draw(addresses(hardware))), isa.reg(r))
        for r in draw(st.lists(st.integers(0, 6), max_size=3, unique=True))
    ]
    body = draw(st.lists(instructions(hardware), min_size=1, max_size=MAX_INSTRUCTIONS))
    pad = draw(st.integers(0, 2))  # shifts instructions across page boundaries
    text: list[int] = [w for _ in range(pad) for w in isa.encode(Instruction(Op.NOP))]
    for instruction in (*setup, *body, Instruction(Op.SYS, number=isa.SYS_EXIT)):
        text.extend(isa.encode(instruction))
    data = draw(st.lists(st.integers(0, 255), max_size=hardware.page_words + 2))
    heap = draw(st.integers(0, 1))
    digest = hashlib.blake2b(repr((text, data, heap)).encode(), digest_size=4).hexdigest()
    return Program(f"random-{digest}", tuple(text), tuple(data), heap_pages=heap, stack_pages=1)
