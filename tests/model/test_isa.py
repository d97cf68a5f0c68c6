"""The ISA: encoding, assembler and disassembler, and the semantics of each instruction form."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pagingcheck.model import isa
from pagingcheck.model.asm import assemble, disassemble, format_instruction
from pagingcheck.model.errors import AssemblyError, UserError
from pagingcheck.model.isa import (
    EXTENSION_MODES,
    FLAG_N,
    FLAG_Z,
    NO_OPERAND,
    OPERAND_MODES,
    WORD_MASK,
    ArchState,
    Completed,
    Faulted,
    Illegal,
    Instruction,
    Mode,
    Op,
    Operand,
)
from pagingcheck.model.traps import Access, Fault, TrapKind

# -- strategies -------------------------------------------------------------------------


def operands(modes: frozenset[Mode], values: st.SearchStrategy[int]) -> st.SearchStrategy[Operand]:
    """Operands in one of ``modes``; extension words drawn from ``values``."""

    def of(mode: Mode) -> st.SearchStrategy[Operand]:
        if mode is Mode.NONE:
            return st.just(NO_OPERAND)
        if mode in EXTENSION_MODES:
            return values.map(lambda v: Operand(mode, 0, v))
        return st.integers(0, 7).map(lambda r: Operand(mode, r))

    return st.sampled_from(sorted(modes, key=lambda m: m.value)).flatmap(of)


ANY_WORD = st.integers(0, WORD_MASK)


@st.composite
def instructions(draw: st.DrawFn, values: st.SearchStrategy[int] = ANY_WORD) -> Instruction:
    """Any legal instruction."""
    op = draw(st.sampled_from(list(Op)))
    first, second = OPERAND_MODES[op]
    a = draw(operands(first, values))
    b = draw(operands(second, values))
    number = draw(st.sampled_from(isa.NUMBERED[op])) if op in isa.NUMBERED else 0
    assume(isa.illegal_reason(op, a, b, number) is None)
    return Instruction(op, a, b, number)


# -- an ideal memory port -------------------------------------------------------------


class IdealPort:
    """Memory as a dict; addresses in ``refused`` fault with a page fault."""

    def __init__(self, words: dict[int, int], refused: frozenset[int] = frozenset()) -> None:
        self.words = dict(words)
        self.refused = refused

    def load(self, va: int, access: Access) -> int | Fault:
        if va in self.refused:
            return Fault(TrapKind.PAGE_FAULT, va, access)
        return self.words.get(va, 0)

    def store(self, va: int, value: int) -> Fault | None:
        if va in self.refused:
            return Fault(TrapKind.PAGE_FAULT, va, Access.WRITE)
        self.words[va] = value
        return None


REGS = (0, 10, 20, 5, 0, 0, 0, 0)
DATA = {9: 900, 10: 1000, 11: 1100, 19: 1900, 20: 2000, 100: 4242}


def run(
    source: str,
    regs: tuple[int, ...] = REGS,
    flags: int = 0,
    refused: frozenset[int] = frozenset(),
) -> tuple[isa.Outcome, IdealPort]:
    """Execute the first instruction of ``source`` (assembled at 0) with DATA in memory."""
    words = assemble(source)
    port = IdealPort({**DATA, **dict(enumerate(words))}, refused)
    return isa.execute(ArchState(regs, 0, flags), port), port


def completed(source: str, regs: tuple[int, ...] = REGS, flags: int = 0) -> Completed:
    outcome, _ = run(source, regs, flags)
    assert isinstance(outcome, Completed), outcome
    return outcome


def with_regs(**changes: int) -> tuple[int, ...]:
    regs = list(REGS)
    for name, value in changes.items():
        regs[int(name[1:])] = value
    return tuple(regs)


# -- encoding ---------------------------------------------------------------------------


def test_word0_fields_are_disjoint_and_cover_the_word() -> None:
    fields = [
        0xFF << isa.OPCODE_SHIFT,
        isa.FIELD3_MASK << isa.AMODE_SHIFT,
        isa.FIELD3_MASK << isa.AREG_SHIFT,
        isa.FIELD3_MASK << isa.BMODE_SHIFT,
        isa.FIELD3_MASK << isa.BREG_SHIFT,
        isa.NUMBER_MASK,
    ]
    combined = 0
    for mask in fields:
        assert combined & mask == 0
        combined |= mask
    assert combined == WORD_MASK


def test_encoding_of_a_three_word_mov() -> None:
    words = isa.encode(Instruction(Op.MOV, isa.imm(7), isa.absolute(100)))
    assert words == (0x04_000000 | 5 << 21 | 6 << 15, 7, 100)
    assert isa.length(words[0]) == 3


@given(instructions())
def test_encode_decode_round_trip(instruction: Instruction) -> None:
    words = isa.encode(instruction)
    assert isa.decode(words) == instruction
    assert isa.length(words[0]) == len(words) == instruction.length
    assert isa.decode(words[:-1]) is None  # too short: not a whole instruction
    assert isa.decode((*words, 0xABCD)) == instruction  # trailing words ignored


@given(st.integers(0, 0x10), st.integers(0, 0xFF_FFFF))
def test_decoding_is_canonical(opcode: int, low: int) -> None:
    word0 = opcode << 24 | low
    instruction = isa.decode((word0, 1, 2))
    if instruction is None:
        assert isa.length(word0) == 1
    else:
        assert isa.encode(instruction)[0] == word0


@pytest.mark.parametrize(
    "word0",
    [
        0,  # zeroed memory
        0xDEADBEEF,  # the freed-frame pattern
        0x10 << 24,  # unused opcode
        0x0F << 24 | 1 << 21 | 7 << 18,  # PUSHM r7, {}: no register listed
        0x0F << 24 | 1 << 21 | 7 << 18 | 0x81,  # PUSHM r7, {r0, r7}: its own register
        0x0F << 24 | 1 << 21 | 7 << 18 | 0x101,  # PUSHM r7 with a list bit beyond r7
        0x0F << 24 | 2 << 21 | 7 << 18 | 1,  # PUSHM (r7), {r0}
        0x01 << 24 | 1,  # NOP with a number
        0x01 << 24 | 1 << 21,  # NOP with an operand
        0x04 << 24 | 1 << 21 | 5 << 15,  # MOV r0, #imm: immediate destination
        0x04 << 24 | 3 << 21 | 1 << 18 | 2 << 15 | 1 << 12,  # MOV (r1)+, (r1)
        0x04 << 24 | 2 << 21 | 1 << 18 | 4 << 15 | 1 << 12,  # MOV (r1), -(r1)
        0x04 << 24 | 3 << 21 | 1 << 18 | 3 << 15 | 1 << 12,  # MOV (r1)+, (r1)+
        0x04 << 24 | 7 << 21 | 1 << 15,  # mode 7
        0x0D << 24 | 6 << 21 | 1 << 18,  # JMP @x naming a register
        0x05 << 24 | 1 << 21,  # ADD r0 without its second register
    ],
)
def test_words_that_do_not_decode(word0: int) -> None:
    assert isa.decode((word0, 0, 0)) is None
    assert isa.length(word0) == 1
    outcome = isa.execute(ArchState(REGS, 0, 0), IdealPort({0: word0}))
    assert outcome == Illegal(ArchState(REGS, 0, 0), word0)


def test_mov_register_rule_allows_distinct_and_register_operands() -> None:
    for source in ("MOV (r1)+, (r2)+", "MOV r1, (r1)+", "MOV (r1)+, r1", "MOV -(r1), @5"):
        assert len(assemble(source)) >= 1
    with pytest.raises(UserError, match="auto-increment r1"):
        Instruction(Op.MOV, isa.inc(1), isa.ind(1))


# -- assembler and disassembler ----------------------------------------------------------


@given(st.lists(instructions(), max_size=8), st.integers(0, 1000))
def test_disassemble_assemble_round_trip(program: list[Instruction], origin: int) -> None:
    words = [w for instruction in program for w in isa.encode(instruction)]
    lines = disassemble(words, origin)
    assert len(lines) == len(program)
    assert assemble("\n".join(lines), origin) == words


@given(st.lists(st.integers(0, WORD_MASK), max_size=8))
def test_any_words_survive_disassembly(words: list[int]) -> None:
    assert assemble("\n".join(disassemble(words))) == words


@given(instructions())
def test_formatted_instruction_assembles_to_its_encoding(instruction: Instruction) -> None:
    assert assemble(format_instruction(instruction)) == list(isa.encode(instruction))


def test_labels_comments_and_data() -> None:
    source = """
        ; a countdown
        start:  LOAD r1, @count     ; forward reference
        loop:   ADDI r1, #-1
                BNE @loop
                MOV #start, @count+1
                SYS 0
        count:  .word 3, 0xff, -1
    """
    words = assemble(source, origin=40)
    count = 40 + 2 + 2 + 2 + 3 + 1
    assert words[:2] == list(isa.encode(Instruction(Op.LOAD, isa.reg(1), isa.absolute(count))))
    assert words[4:6] == list(isa.encode(Instruction(Op.BNE, isa.absolute(42))))
    assert words[6:9] == list(isa.encode(Instruction(Op.MOV, isa.imm(40), isa.absolute(count + 1))))
    assert words[-3:] == [3, 0xFF, WORD_MASK]
    assert disassemble(words, 40)[2] == f"{'BNE @42':<24} ; 44"


@pytest.mark.parametrize(
    ("source", "line", "fragment"),
    [
        ("NOP\nMOVE r1, r2", 2, "unknown mnemonic 'MOVE'"),
        ("x: NOP\n\nx: NOP", 3, "already defined on line 1"),
        ("NOP\nBEQ @nowhere", 2, "undefined label 'nowhere'"),
        ("MOV r1, #3", 1, "operand 2 must be rN or (rN) or (rN)+ or -(rN) or @address"),
        ("; ok\nMOV (r1)+, (r1)", 2, "use two different registers"),
        ("ADD r1", 1, "ADD takes 2 operand(s), got 1"),
        ("MOV r9, r1", 1, "no register r9"),
        (".word 4294967296", 1, "does not fit in 32 bits"),
        ("LOAD r1, (r2)", 1, "use MOV"),
        ("SYS 5000", 1, "outside 0..4095"),
        ("r1: NOP", 1, "spelled like a register"),
        ("MOV r1, [r2]", 1, "cannot read operand '[r2]'"),
        ("ADDI r1, #lots", 1, "undefined label 'lots'"),
        (".word", 1, ".word needs values"),
        ("PUSHM r7, {r1, r7}", 1, "may not push r7, the register it pushes below"),
        ("PUSHM r7, {r1, r1}", 1, "lists r1 twice"),
        ("PUSHM r7, r1", 1, "a register and a list in braces"),
        ("PUSHM r7, {r1, 5}", 1, "cannot read register '5'"),
        ("PUSHM #7, {r1}", 1, "PUSHM operand 1 must be rN"),
    ],
)
def test_assembly_errors_name_the_line_and_the_fix(source: str, line: int, fragment: str) -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble(source)
    message = str(caught.value)
    assert message.startswith(f"line {line} ")
    assert fragment in message


# -- semantics ----------------------------------------------------------------------------


def test_nop_and_sys() -> None:
    nop = completed("NOP", flags=FLAG_Z)
    assert nop == Completed(ArchState(REGS, 1, FLAG_Z))
    sys = completed("SYS 3")
    assert sys == Completed(ArchState(REGS, 1, 0), syscall=3)
    assert isa.SYS_EXIT == 0


def test_load_and_store() -> None:
    load = completed("LOAD r3, @100", flags=FLAG_N)
    assert load == Completed(ArchState(with_regs(r3=4242), 2, FLAG_N))  # flags untouched
    outcome, port = run("STORE r2, @100")
    assert outcome == Completed(ArchState(REGS, 2, 0), writes=((100, 20),))
    assert port.words[100] == 20


@pytest.mark.parametrize(
    ("source", "regs", "write", "pc"),
    [
        ("MOV r1, r3", with_regs(r3=10), None, 1),
        ("MOV (r1), r3", with_regs(r3=1000), None, 1),
        ("MOV (r1)+, r3", with_regs(r1=11, r3=1000), None, 1),
        ("MOV -(r1), r3", with_regs(r1=9, r3=900), None, 1),
        ("MOV #-5, r3", with_regs(r3=0xFFFF_FFFB), None, 2),
        ("MOV @100, r3", with_regs(r3=4242), None, 2),
        ("MOV r3, (r2)", REGS, (20, 5), 1),
        ("MOV r3, (r2)+", with_regs(r2=21), (20, 5), 1),
        ("MOV r3, -(r2)", with_regs(r2=19), (19, 5), 1),
        ("MOV r3, @7", REGS, (7, 5), 2),
        ("MOV #7, @100", REGS, (100, 7), 3),
        ("MOV @100, @101", REGS, (101, 4242), 3),
        ("MOV (r1)+, -(r2)", with_regs(r1=11, r2=19), (19, 1000), 1),
        ("MOV -(r1), (r2)+", with_regs(r1=9, r2=21), (20, 900), 1),
        ("MOV r1, (r1)+", with_regs(r1=11), (10, 10), 1),  # source read before the increment
        ("MOV (r1)+, r1", with_regs(r1=1000), None, 1),  # destination written last
        ("MOV -(r0), r3", with_regs(r0=WORD_MASK, r3=0), None, 1),  # wraps; word 2**32-1 is 0
    ],
)
def test_mov_forms(
    source: str, regs: tuple[int, ...], write: tuple[int, int] | None, pc: int
) -> None:
    outcome, port = run(source, flags=FLAG_Z)
    writes = () if write is None else (write,)
    assert outcome == Completed(ArchState(regs, pc, FLAG_Z), writes=writes)
    if write is not None:
        assert port.words[write[0]] == write[1]


@pytest.mark.parametrize(
    ("source", "regs", "result", "flags"),
    [
        ("ADD r1, r2", (0, 10, 20, 5, 0, 0, 0, 0), 30, 0),
        ("ADD r1, r2", (0, WORD_MASK, 1, 0, 0, 0, 0, 0), 0, FLAG_Z),
        ("SUB r1, r2", (0, 1, 2, 0, 0, 0, 0, 0), WORD_MASK, FLAG_N),
        ("SUB r1, r2", (0, 7, 7, 0, 0, 0, 0, 0), 0, FLAG_Z),
        ("ADDI r1, #-11", (0, 10, 0, 0, 0, 0, 0, 0), WORD_MASK, FLAG_N),
        ("ADDI r1, #0x10", (0, 10, 0, 0, 0, 0, 0, 0), 26, 0),
    ],
)
def test_arithmetic_wraps_and_sets_flags(
    source: str, regs: tuple[int, ...], result: int, flags: int
) -> None:
    outcome = completed(source, regs, flags=FLAG_Z | FLAG_N)
    expected = (regs[0], result, *regs[2:])
    assert outcome == Completed(ArchState(expected, isa.length(assemble(source)[0]), flags))


@pytest.mark.parametrize(
    ("a", "b", "flags"), [(5, 5, FLAG_Z), (4, 5, FLAG_N), (6, 5, 0), (0, WORD_MASK, 0)]
)
def test_cmp_sets_flags_and_leaves_registers(a: int, b: int, flags: int) -> None:
    regs = (0, a, b, 0, 0, 0, 0, 0)
    assert completed("CMP r1, r2", regs) == Completed(ArchState(regs, 1, flags))


@pytest.mark.parametrize(
    ("mnemonic", "taken_when"),
    [
        ("BEQ", {FLAG_Z}),
        ("BNE", {0, FLAG_N}),
        ("BLT", {FLAG_N}),
        ("BGE", {0, FLAG_Z}),
        ("JMP", {0, FLAG_Z, FLAG_N}),
    ],
)
def test_branches(mnemonic: str, taken_when: set[int]) -> None:
    for flags in (0, FLAG_Z, FLAG_N):
        outcome = completed(f"{mnemonic} @33", flags=flags)
        assert outcome == Completed(ArchState(REGS, 33 if flags in taken_when else 2, flags))


def test_fault_part_way_leaves_side_effects_and_writes_nothing() -> None:
    outcome, port = run("MOV (r1)+, -(r2)", refused=frozenset({19}))
    assert outcome == Faulted(
        Fault(TrapKind.PAGE_FAULT, 19, Access.WRITE),
        ArchState(with_regs(r1=11, r2=19), 1, 0),
        ((1, 1), (2, -1)),
        "dst",
    )
    assert port.words[19] == DATA[19]
    source_fault, _ = run("MOV -(r1), r3", refused=frozenset({9}))
    assert isinstance(source_fault, Faulted)
    assert (source_fault.fault_point, source_fault.side_effects) == ("src", ((1, -1),))


def test_pushm_writes_highest_register_first_and_moves_its_register_last() -> None:
    outcome, port = run("PUSHM r2, {r3, r0, r1}")
    assert outcome == Completed(ArchState(with_regs(r2=17), 1, 0), ((19, 5), (18, 10), (17, 0)))
    assert [port.words[va] for va in (17, 18, 19, 20)] == [0, 10, 5, DATA[20]]


def test_a_pushm_that_faults_keeps_its_earlier_writes_and_every_register() -> None:
    outcome, port = run("PUSHM r2, {r0, r1, r3}", flags=FLAG_Z, refused=frozenset({18}))
    assert outcome == Faulted(
        Fault(TrapKind.PAGE_FAULT, 18, Access.WRITE),
        ArchState(REGS, 1, FLAG_Z),  # pc past the instruction, registers untouched
        (),
        "push",
        ((19, 5),),
    )
    assert port.words[19] == 5 and 18 not in port.words
    instruction = isa.decode(assemble("PUSHM r2, {r0, r1, r3}"))
    assert instruction is not None and instruction.pushed == (3, 1, 0)
    assert isa.accesses(instruction, ArchState(REGS, 0, 0)) == (
        ("fetch0", 0, Access.FETCH),
        ("push", 19, Access.WRITE),
        ("push", 18, Access.WRITE),
        ("push", 17, Access.WRITE),
    )
    assert isa.replay_side_effects(instruction, "push") == ()


def test_fetch_fault_on_an_extension_word_advances_pc_by_the_words_fetched() -> None:
    outcome, _ = run("MOV #1, @2", refused=frozenset({2}))
    assert outcome == Faulted(
        Fault(TrapKind.PAGE_FAULT, 2, Access.FETCH), ArchState(REGS, 2, 0), (), "fetch2"
    )


def test_accesses_and_replayed_side_effects() -> None:
    instruction = isa.decode(assemble("MOV (r1)+, -(r2)"))
    assert instruction is not None
    start = ArchState(REGS, 0, 0)
    assert isa.accesses(instruction, start) == (
        ("fetch0", 0, Access.FETCH),
        ("src", 10, Access.READ),
        ("dst", 19, Access.WRITE),
    )
    assert isa.replay_side_effects(instruction, "fetch0") == ()
    assert isa.replay_side_effects(instruction, "src") == ((1, 1),)
    assert isa.replay_side_effects(instruction, "dst") == ((1, 1), (2, -1))
