"""The instruction set: encoding, decoding and pure execution semantics.

This module is shared by the hardware (``model.cpu``) and the abstract spec,
which runs the same instructions against ideal memory, so it imports no
hardware: every memory access goes through a :class:`MemoryPort`.

Machine: 32-bit words, word addresses, registers r0..r7, flags Z and N,
and a PC. Arithmetic wraps modulo 2**32; Z is set when a result is zero, N
when its bit 31 (the sign of the signed 32-bit result) is set.

Encoding. An instruction is one to three words: word 0 below, then one
extension word for each operand in mode IMM or ABS, the first operand's
before the second's::

     31        24 23   21 20   18 17   15 14   12 11                  0
    +------------+-------+-------+-------+-------+---------------------+
    |   opcode   | amode | areg  | bmode | breg  |   number (SYS only) |
    +------------+-------+-------+-------+-------+---------------------+

    opcode  which instruction (:class:`Op`); 0x00 and 0x10..0xFF are
            illegal, so a zero word or a freed-frame pattern traps at once
    amode   mode of the first operand as written (:class:`Mode`)
    areg    register of the first operand (zero unless the mode names one)
    bmode   mode of the second operand
    breg    register of the second operand
    number  the system call number of SYS, the register list of PUSHM (bit i
            pushes ri); zero in every other instruction

Every instruction spells out its operands' modes, even where the opcode
allows only one (``LOAD`` is always REG, ABS), so the length of an
instruction is known from word 0 alone. A word 0 whose fields break the
rules of :data:`OPERAND_MODES` or :func:`illegal_reason` does not decode.

Execution order, and the name of each point where an access can fault:

1. ``fetch0``: fetch word 0 at ``pc``;
2. ``fetch1``, ``fetch2``: fetch each extension word at ``pc+1``, ``pc+2``
   (they may lie on the next page, so fetching can fault part-way);
3. ``src``: evaluate the source operand: auto-increment / auto-decrement
   changes its register first, then the READ;
4. ``dst``: evaluate the destination operand: its register change, then
   the WRITE, the instruction's last action.

PUSHM is the one instruction that writes more than once: ``PUSHM rS, {list}``
stores each listed register, highest register first, in the words just below
``rS`` (the highest register in the word at ``rS - 1``, the lowest in the word
at ``rS - n`` for ``n`` registers), then sets ``rS`` to ``rS - n``. Every one
of its writes is fault point ``push``; a fault at any of them leaves the words
already written in memory and every register as it was (the stack register
moves only once all the writes are done), so running the instruction again
from its start rewrites those words with the same values.

A fault leaves the side effects made so far (register changes from steps
3-4, the writes a PUSHM made) in the returned outcome; what the CPU does
with them is its restart variant (``model.cpu``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from pagingcheck.model.errors import InternalError, UserError
from pagingcheck.model.traps import Access, Fault

WORD_MASK = 0xFFFF_FFFF
REGISTERS = 8

FLAG_Z = 1 << 0  # the result was zero
FLAG_N = 1 << 1  # bit 31 of the result was set (negative as a signed word)

# -- word 0 fields ----------------------------------------------------------------

OPCODE_SHIFT = 24
AMODE_SHIFT = 21
AREG_SHIFT = 18
BMODE_SHIFT = 15
BREG_SHIFT = 12
FIELD3_MASK = 0x7
NUMBER_BITS = 12
NUMBER_MASK = (1 << NUMBER_BITS) - 1

#: The exit system call; status in r0. Other numbers mean what the kernel says.
SYS_EXIT = 0
#: Move the heap's break by r1 pages (a signed word): r0 becomes the old break's address,
#: or all ones when the heap cannot be that size (``model.program.heap_break``).
SYS_SBRK = 1
#: What SBRK returns in r0 when it fails.
SBRK_FAILED = 0xFFFF_FFFF
#: Print a character: the low byte of r1 goes to the console; no register changes.
SYS_PUTC = 2
#: Print a buffer: the low byte of each of the r2 words from virtual address r1 goes to
#: the console, and r0 becomes r2; or, when the buffer is not within one page the process
#: may read (``buffer_page``), nothing is printed and r0 becomes :data:`WRITE_FAILED`.
SYS_WRITE = 3
#: What WRITE returns in r0 when it fails.
WRITE_FAILED = 0xFFFF_FFFF
#: Fork: a new process (the child) runs a copy of the caller's address space and
#: registers; the caller's r0 becomes the child's pid, the child's r0 becomes 0. When the
#: kernel cannot make the child, nothing else changes and r0 becomes :data:`FORK_FAILED`.
SYS_FORK = 4
#: What FORK returns in r0 when it fails.
FORK_FAILED = 0xFFFF_FFFF
#: Exec: the caller's address space and registers are replaced by a fresh start of the
#: workload's program number r1 (its pid stays). When r1 names no program, or the kernel
#: cannot build the new space, nothing changes and r0 becomes :data:`EXEC_FAILED`.
SYS_EXEC = 5
#: What EXEC returns in r0 when it fails.
EXEC_FAILED = 0xFFFF_FFFF
#: Wait for a child: r0 becomes the pid of a child that has exited and was not yet waited
#: for, r1 its exit status (its r0 at EXIT, or :data:`KILLED`), and the child is
#: forgotten. While the caller's children are all alive it blocks, and runs the call again
#: when one exits. With no children at all, r0 becomes :data:`WAIT_FAILED` at once.
SYS_WAIT = 6
#: What WAIT returns in r0 when the caller has no children.
WAIT_FAILED = 0xFFFF_FFFF
#: Read from the console: each of the r2 words from virtual address r1 gets the next byte
#: of the console's input, in order, until the input runs out; r0 becomes the number of
#: words filled (0 once the input is exhausted; the words after them keep what they held).
#: When the buffer is not within one page the process may write (``buffer_page``),
#: nothing is read and r0 becomes :data:`READ_FAILED`.
SYS_READ = 7
#: What READ returns in r0 when it fails.
READ_FAILED = 0xFFFF_FFFF
#: Map a file: the workload's file number r1, all its pages, at virtual address r2 (page
#: aligned), shared with every process mapping it when bit 0 of r3 (:data:`MAP_SHARED`) is
#: set, else private (copy-on-write over the file: the process's first write to a page
#: copies it). r0 becomes r2, or, when r1 names no file, the pages are not all within the
#: program's map area (``Program.map_area``) and invalid now, or the kernel cannot map
#: them, :data:`MMAP_FAILED` with nothing changed.
SYS_MMAP = 8
#: What MMAP returns in r0 when it fails.
MMAP_FAILED = 0xFFFF_FFFF
#: The flag bit of MMAP's r3 that shares the mapping (with the file and its other mappers).
MAP_SHARED = 1
#: Unmap the r2 pages from virtual address r1 (page aligned), every one of them a page an
#: MMAP mapped: r0 becomes 0, or :data:`MUNMAP_FAILED` with nothing changed.
SYS_MUNMAP = 9
#: What MUNMAP returns in r0 when it fails.
MUNMAP_FAILED = 0xFFFF_FFFF
#: The exit status of a process that did not exit by itself (killed, or signalled): a
#: program that exits with this status cannot be told from one killed.
KILLED = 0xFFFF_FFFF


def buffer_page(va: int, count: int, page_words: int) -> int | None:
    """The vpn of a READ or WRITE buffer of ``count`` words from ``va``: one to a page's
    worth of words, all on one page; None for any other buffer (the call fails)."""
    if not 1 <= count <= page_words or (va + count - 1) // page_words != va // page_words:
        return None
    return va // page_words


#: The most distinct pages one instruction can touch: its words (up to three) on two
#: pages, a source operand and a destination operand; or a PUSHM's one word and the up
#: to seven words it writes, on at most three pages of at least four words. A
#: software-refilled TLB with fewer entries, or fewer user frames than this, can leave an
#: instruction unable ever to finish.
MAX_PAGES_PER_INSTRUCTION = 4

FETCH_POINTS = ("fetch0", "fetch1", "fetch2")
#: Where an instruction can fault: a fetch, its source, its destination, or any one of
#: a PUSHM's writes.
FAULT_POINTS = (*FETCH_POINTS, "src", "dst", "push")

SideEffects = tuple[tuple[int, int], ...]


class Op(Enum):
    """Opcodes (the value is the opcode field)."""

    NOP = 0x01
    LOAD = 0x02  # LOAD rd, @addr
    STORE = 0x03  # STORE rs, @addr
    MOV = 0x04  # MOV src, dst
    ADD = 0x05  # ADD rd, rs      rd := rd + rs, flags
    SUB = 0x06  # SUB rd, rs      rd := rd - rs, flags
    ADDI = 0x07  # ADDI rd, #imm  rd := rd + imm, flags
    CMP = 0x08  # CMP ra, rb      flags of ra - rb
    BEQ = 0x09  # branch if Z
    BNE = 0x0A  # branch if not Z
    BLT = 0x0B  # branch if N
    BGE = 0x0C  # branch if not N
    JMP = 0x0D  # branch always
    SYS = 0x0E  # SYS n           system call n
    PUSHM = 0x0F  # PUSHM rs, {..}  push the listed registers below rs, then move rs


class Mode(Enum):
    """Operand modes (the value is the 3-bit mode field); 7 is illegal."""

    NONE = 0  # no operand in this position
    REG = 1  # rN
    IND = 2  # (rN): the word at address rN
    INC = 3  # (rN)+: address rN, then rN += 1
    DEC = 4  # -(rN): rN -= 1, then address rN
    IMM = 5  # #imm: the extension word itself (source only)
    ABS = 6  # @addr: the word at the address in the extension word


#: Modes whose operand is a memory word.
MEMORY_MODES = frozenset({Mode.IND, Mode.INC, Mode.DEC, Mode.ABS})
#: Modes that take an extension word.
EXTENSION_MODES = frozenset({Mode.IMM, Mode.ABS})
#: Modes that change their register, and by how much.
STEP: dict[Mode, int] = {Mode.INC: 1, Mode.DEC: -1}

_NONE = frozenset({Mode.NONE})
_REG = frozenset({Mode.REG})
_SOURCES = frozenset({Mode.REG, Mode.IND, Mode.INC, Mode.DEC, Mode.IMM, Mode.ABS})
_DESTINATIONS = frozenset({Mode.REG, Mode.IND, Mode.INC, Mode.DEC, Mode.ABS})
_BRANCHES = frozenset({Op.BEQ, Op.BNE, Op.BLT, Op.BGE, Op.JMP})
_MOVES = frozenset({Op.LOAD, Op.STORE, Op.MOV})

#: The modes each opcode allows for its first and second operand as written.
OPERAND_MODES: dict[Op, tuple[frozenset[Mode], frozenset[Mode]]] = {
    Op.NOP: (_NONE, _NONE),
    Op.LOAD: (_REG, frozenset({Mode.ABS})),
    Op.STORE: (_REG, frozenset({Mode.ABS})),
    Op.MOV: (_SOURCES, _DESTINATIONS),
    Op.ADD: (_REG, _REG),
    Op.SUB: (_REG, _REG),
    Op.ADDI: (_REG, frozenset({Mode.IMM})),
    Op.CMP: (_REG, _REG),
    **{op: (frozenset({Mode.ABS}), _NONE) for op in _BRANCHES},
    Op.SYS: (_NONE, _NONE),
    Op.PUSHM: (_REG, _NONE),
}

#: The opcodes whose word 0 has a number field, and the values it may take.
NUMBERED: dict[Op, range] = {Op.SYS: range(NUMBER_MASK + 1), Op.PUSHM: range(1, 1 << REGISTERS)}


# -- values -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchState:
    """Architectural state of one process: registers r0..r7, PC and flags (Z, N bits)."""

    regs: tuple[int, ...]
    pc: int
    flags: int

    def __post_init__(self) -> None:
        if len(self.regs) != REGISTERS:
            raise InternalError(f"ArchState: {len(self.regs)} registers, expected {REGISTERS}")


@dataclass(frozen=True)
class Operand:
    """One operand: its mode, its register (REG..DEC) and its extension word (IMM, ABS)."""

    mode: Mode
    reg: int = 0
    value: int = 0

    @property
    def words(self) -> int:
        """Extension words this operand takes."""
        return 1 if self.mode in EXTENSION_MODES else 0


NO_OPERAND = Operand(Mode.NONE)


def reg(n: int) -> Operand:
    """Operand ``rN``."""
    return Operand(Mode.REG, n)


def ind(n: int) -> Operand:
    """Operand ``(rN)``."""
    return Operand(Mode.IND, n)


def inc(n: int) -> Operand:
    """Operand ``(rN)+``."""
    return Operand(Mode.INC, n)


def dec(n: int) -> Operand:
    """Operand ``-(rN)``."""
    return Operand(Mode.DEC, n)


def imm(value: int) -> Operand:
    """Operand ``#value`` (taken modulo 2**32, so ``imm(-1)`` is 0xFFFFFFFF)."""
    return Operand(Mode.IMM, 0, value & WORD_MASK)


def absolute(address: int) -> Operand:
    """Operand ``@address`` (taken modulo 2**32)."""
    return Operand(Mode.ABS, 0, address & WORD_MASK)


def illegal_reason(op: Op, a: Operand, b: Operand, number: int = 0) -> str | None:
    """Why this instruction does not exist (an English sentence), or None if it is legal.

    The one source of the legality rules: decoding, building an
    :class:`Instruction` and the assembler all ask it.

    A PUSHM lists one register or more, and not its stack register: the
    value that would push is neither the old nor the new stack pointer.

    Besides the modes of :data:`OPERAND_MODES`, a MOV may not auto-increment
    or auto-decrement a register that its other operand uses as an address.
    Such an instruction would make the decode restart variant ambiguous: from
    the registers after a fault alone, a kernel could not tell "the source
    faulted" (one change made) from "the destination faulted" (two changes),
    because the two readings put the source at different addresses, and both
    can be consistent with the page tables (``MOV (r1), (r1)+`` with the
    source page missing and the page below it read-only, say).
    """
    allowed = OPERAND_MODES[op]
    for position, operand, modes in (("first", a, allowed[0]), ("second", b, allowed[1])):
        if operand.mode not in modes:
            return f"{op.name} does not allow mode {operand.mode.name} as its {position} operand"
        if operand.mode in (Mode.NONE, Mode.IMM, Mode.ABS) and operand.reg != 0:
            return f"the {position} operand of mode {operand.mode.name} names no register"
        if not 0 <= operand.reg < REGISTERS:
            return f"there is no register r{operand.reg}; the registers are r0..r7"
        if operand.mode not in EXTENSION_MODES and operand.value != 0:
            return f"the {position} operand of mode {operand.mode.name} has no extension word"
        if not 0 <= operand.value <= WORD_MASK:
            return f"extension word {operand.value} does not fit in 32 bits"
    if op is Op.SYS and not 0 <= number <= NUMBER_MASK:
        return f"system call number {number} is outside 0..{NUMBER_MASK}"
    if op is Op.PUSHM and number not in NUMBERED[Op.PUSHM]:
        return f"PUSHM's register list {number:#x} names no register or one beyond r7"
    if op is Op.PUSHM and number >> a.reg & 1:
        return f"PUSHM may not push r{a.reg}, the register it pushes below"
    if op not in NUMBERED and number != 0:
        return f"{op.name} takes no number field"
    for changed, other in ((a, b), (b, a)):
        through_register = other.mode in MEMORY_MODES - {Mode.ABS}
        if changed.mode in STEP and through_register and changed.reg == other.reg:
            verb = "auto-increment" if changed.mode is Mode.INC else "auto-decrement"
            return (
                f"MOV may not both {verb} r{changed.reg} and address memory "
                "through it in the other operand"
            )
    return None


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction: opcode, operands in written order, SYS number.

    Building one that :func:`illegal_reason` rejects raises UserError.
    """

    op: Op
    a: Operand = NO_OPERAND
    b: Operand = NO_OPERAND
    number: int = 0

    def __post_init__(self) -> None:
        reason = illegal_reason(self.op, self.a, self.b, self.number)
        if reason is not None:
            raise UserError(f"illegal instruction: {reason}")

    @property
    def length(self) -> int:
        """Words of the instruction: word 0 plus its extension words."""
        return 1 + self.a.words + self.b.words

    @property
    def source(self) -> Operand | None:
        """The operand data is read from, for LOAD, STORE and MOV; else None."""
        if self.op is Op.LOAD:
            return self.b
        return self.a if self.op in _MOVES else None

    @property
    def destination(self) -> Operand | None:
        """The operand data is written to, for LOAD, STORE and MOV; else None."""
        if self.op is Op.LOAD:
            return self.a
        return self.b if self.op in _MOVES else None

    @property
    def pushed(self) -> tuple[int, ...]:
        """The registers a PUSHM pushes, in the order it writes them (highest first);
        empty for every other instruction."""
        if self.op is not Op.PUSHM:
            return ()
        return tuple(r for r in reversed(range(REGISTERS)) if self.number >> r & 1)


# -- encoding --------------------------------------------------------------------------


def encode(instruction: Instruction) -> tuple[int, ...]:
    """The words of ``instruction``: word 0, then the extension words in operand order."""
    a, b = instruction.a, instruction.b
    word0 = (
        instruction.op.value << OPCODE_SHIFT
        | a.mode.value << AMODE_SHIFT
        | a.reg << AREG_SHIFT
        | b.mode.value << BMODE_SHIFT
        | b.reg << BREG_SHIFT
        | instruction.number
    )
    extension = tuple(operand.value for operand in (a, b) if operand.mode in EXTENSION_MODES)
    return (word0, *extension)


@functools.lru_cache(maxsize=4096)
def _head(word0: int) -> Instruction | None:
    """The instruction word 0 begins, with zero extension words; None if illegal."""
    if not 0 <= word0 <= WORD_MASK:
        return None
    try:
        op = Op(word0 >> OPCODE_SHIFT)
        amode = Mode(word0 >> AMODE_SHIFT & FIELD3_MASK)
        bmode = Mode(word0 >> BMODE_SHIFT & FIELD3_MASK)
    except ValueError:
        return None
    a = Operand(amode, word0 >> AREG_SHIFT & FIELD3_MASK)
    b = Operand(bmode, word0 >> BREG_SHIFT & FIELD3_MASK)
    number = word0 & NUMBER_MASK
    if illegal_reason(op, a, b, number) is not None:
        return None
    return Instruction(op, a, b, number)


def length(word0: int) -> int:
    """Words of the instruction that ``word0`` begins (1 if ``word0`` does not decode)."""
    head = _head(word0)
    return 1 if head is None else head.length


def decode(words: Sequence[int]) -> Instruction | None:
    """The instruction at the start of ``words``, or None.

    None when word 0 does not decode, or ``words`` is shorter than the
    instruction. Words beyond the instruction's length are ignored.
    """
    if not words:
        return None
    if all(type(word) is int for word in words):
        return _decode_known(tuple(words))
    return _decode(words)


@functools.lru_cache(maxsize=4096)
def _decode_known(words: tuple[int, ...]) -> Instruction | None:
    """:func:`_decode` of plain words, kept: a program is a few instructions, decoded at
    every step by the CPU and again by the spec (an instruction is a value, so one
    decoding serves every step)."""
    return _decode(words)


def _decode(words: Sequence[int]) -> Instruction | None:
    """The decoding itself (see :func:`decode`)."""
    head = _head(words[0])
    if head is None or len(words) < head.length:
        return None
    extension = iter(words[1 : head.length])
    operands = []
    for operand in (head.a, head.b):
        if operand.mode in EXTENSION_MODES:
            value = next(extension)
            if not 0 <= value <= WORD_MASK:
                return None
            operand = dataclasses.replace(operand, value=value)
        operands.append(operand)
    return Instruction(head.op, operands[0], operands[1], head.number)


# -- execution ---------------------------------------------------------------------------


class MemoryPort(Protocol):
    """How an instruction reaches memory.

    ``load`` translates ``va`` for ``access`` (FETCH or READ) and returns the
    word there, or the fault. ``store`` translates ``va`` for a WRITE and
    writes ``value``, or returns the fault and writes nothing.
    """

    def load(self, va: int, access: Access) -> int | Fault: ...

    def store(self, va: int, value: int) -> Fault | None: ...


Writes = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Completed:
    """The instruction retired: the new state, its memory writes (va, value) in the order
    made, its SYS number."""

    state: ArchState
    writes: Writes = ()
    syscall: int | None = None


@dataclass(frozen=True)
class Faulted:
    """An access faulted part-way through the instruction.

    ``state`` holds the side effects applied so far, with ``pc`` = start pc
    + words fetched so far; ``side_effects`` lists them as (register, delta)
    in the order applied; ``fault_point`` names the access that faulted
    (one of :data:`FAULT_POINTS`); ``writes`` are the memory writes made
    before it (a PUSHM's), which stay made.
    """

    fault: Fault
    state: ArchState
    side_effects: SideEffects
    fault_point: str
    writes: Writes = ()


@dataclass(frozen=True)
class Illegal:
    """Word 0 (``word``) does not decode; ``state`` is the unchanged start state."""

    state: ArchState
    word: int


Outcome = Completed | Faulted | Illegal


def flags_of(result: int) -> int:
    """Z and N for a 32-bit result."""
    return (FLAG_Z if result == 0 else 0) | (FLAG_N if result & 0x8000_0000 else 0)


def _taken(op: Op, flags: int) -> bool:
    if op is Op.BEQ:
        return bool(flags & FLAG_Z)
    if op is Op.BNE:
        return not flags & FLAG_Z
    if op is Op.BLT:
        return bool(flags & FLAG_N)
    if op is Op.BGE:
        return not flags & FLAG_N
    return True


def _address(operand: Operand, regs: list[int], effects: list[tuple[int, int]]) -> int:
    """The address a memory operand names, applying its register change to ``regs``."""
    if operand.mode is Mode.ABS:
        return operand.value
    r = operand.reg
    if operand.mode is Mode.DEC:
        regs[r] = (regs[r] - 1) & WORD_MASK
        effects.append((r, -1))
        return regs[r]
    address = regs[r]
    if operand.mode is Mode.INC:
        regs[r] = (address + 1) & WORD_MASK
        effects.append((r, 1))
    return address


def _move(instruction: Instruction, state: ArchState, next_pc: int, port: MemoryPort) -> Outcome:
    """LOAD, STORE and MOV: evaluate the source, then the destination."""
    source, destination = instruction.source, instruction.destination
    assert source is not None and destination is not None
    regs = list(state.regs)
    effects: list[tuple[int, int]] = []

    def faulted(fault: Fault, point: str) -> Faulted:
        return Faulted(fault, ArchState(tuple(regs), next_pc, state.flags), tuple(effects), point)

    if source.mode is Mode.REG:
        value = regs[source.reg]
    elif source.mode is Mode.IMM:
        value = source.value
    else:
        loaded = port.load(_address(source, regs, effects), Access.READ)
        if isinstance(loaded, Fault):
            return faulted(loaded, "src")
        value = loaded
    if destination.mode is Mode.REG:
        regs[destination.reg] = value
        return Completed(ArchState(tuple(regs), next_pc, state.flags))
    va = _address(destination, regs, effects)
    refused = port.store(va, value)
    if refused is not None:
        return faulted(refused, "dst")
    return Completed(ArchState(tuple(regs), next_pc, state.flags), ((va, value),))


def _push(instruction: Instruction, state: ArchState, next_pc: int, port: MemoryPort) -> Outcome:
    """PUSHM: every write, highest address first; the stack register moves at the end."""
    stack = instruction.a.reg
    top = state.regs[stack]
    writes: list[tuple[int, int]] = []
    for k, r in enumerate(instruction.pushed, start=1):
        va = (top - k) & WORD_MASK
        refused = port.store(va, state.regs[r])
        if refused is not None:
            advanced = dataclasses.replace(state, pc=next_pc)
            return Faulted(refused, advanced, (), "push", tuple(writes))
        writes.append((va, state.regs[r]))
    bottom = (top - len(writes)) & WORD_MASK
    regs = (*state.regs[:stack], bottom, *state.regs[stack + 1 :])
    return Completed(ArchState(regs, next_pc, state.flags), tuple(writes))


def _perform(instruction: Instruction, state: ArchState, next_pc: int, port: MemoryPort) -> Outcome:
    """Everything after the fetch."""
    op, a, b = instruction.op, instruction.a, instruction.b
    if op in _MOVES:
        return _move(instruction, state, next_pc, port)
    if op is Op.PUSHM:
        return _push(instruction, state, next_pc, port)
    if op in (Op.ADD, Op.SUB, Op.ADDI, Op.CMP):
        left = state.regs[a.reg]
        right = b.value if op is Op.ADDI else state.regs[b.reg]
        result = (left - right if op in (Op.SUB, Op.CMP) else left + right) & WORD_MASK
        regs = state.regs
        if op is not Op.CMP:
            regs = (*regs[: a.reg], result, *regs[a.reg + 1 :])
        return Completed(ArchState(regs, next_pc, flags_of(result)))
    if op in _BRANCHES:
        target = a.value if _taken(op, state.flags) else next_pc
        return Completed(dataclasses.replace(state, pc=target))
    if op is Op.SYS:
        return Completed(dataclasses.replace(state, pc=next_pc), syscall=instruction.number)
    return Completed(dataclasses.replace(state, pc=next_pc))  # NOP


def execute(state: ArchState, port: MemoryPort) -> Outcome:
    """Run the instruction at ``state.pc`` through ``port``.

    Returns Completed (the new state; any memory write has been made through
    ``port.store``), Faulted (see its contract) or Illegal (nothing changed).
    Accesses happen in the order of the module docstring.
    """
    start = state.pc
    word0 = port.load(start, Access.FETCH)
    if isinstance(word0, Fault):
        return Faulted(word0, state, (), "fetch0")
    head = _head(word0)
    if head is None:
        return Illegal(state, word0)
    words = [word0]
    for k in range(1, head.length):
        word = port.load((start + k) & WORD_MASK, Access.FETCH)
        if isinstance(word, Fault):
            return Faulted(
                word, dataclasses.replace(state, pc=(start + k) & WORD_MASK), (), f"fetch{k}"
            )
        words.append(word)
    instruction = decode(words)
    if instruction is None:
        raise InternalError(f"isa.execute: words {words} fetched at {start} do not decode")
    return _perform(instruction, state, (start + head.length) & WORD_MASK, port)


# -- the accesses an instruction makes ---------------------------------------------------


class _Recorder:
    """A port that never faults and records every access (fetches see ``words``)."""

    def __init__(self, pc: int, words: tuple[int, ...]) -> None:
        self.pc = pc
        self.words = words
        self.seen: list[tuple[str, int, Access]] = []
        head = _head(words[0])
        self.write_point = "push" if head is not None and head.op is Op.PUSHM else "dst"

    def load(self, va: int, access: Access) -> int | Fault:
        if access is Access.FETCH:
            k = (va - self.pc) & WORD_MASK
            self.seen.append((f"fetch{k}", va, access))
            return self.words[k]
        self.seen.append(("src", va, access))
        return 0

    def store(self, va: int, value: int) -> Fault | None:
        self.seen.append((self.write_point, va, Access.WRITE))
        return None


def accesses(instruction: Instruction, start: ArchState) -> tuple[tuple[str, int, Access], ...]:
    """Every memory access of ``instruction`` run from ``start``, in order.

    Each is (fault point, va, access). ``start.pc`` is the instruction's
    address. Computed by running :func:`execute` against a port that never
    faults, so it cannot disagree with execution.
    """
    recorder = _Recorder(start.pc, encode(instruction))
    outcome = execute(start, recorder)
    if not isinstance(outcome, Completed):
        raise InternalError(f"isa.accesses: {instruction} did not complete against a clean port")
    return tuple(recorder.seen)


def replay_side_effects(instruction: Instruction, fault_point: str) -> SideEffects:
    """The (register, delta) changes ``instruction`` has made when it faults at ``fault_point``.

    Fetch faults make none, nor do a PUSHM's writes (its register moves last);
    a fault at ``src`` leaves the source operand's change; at ``dst`` the
    source's and then the destination's.
    """
    if fault_point not in FAULT_POINTS:
        raise InternalError(f"isa.replay_side_effects: unknown fault point {fault_point!r}")
    if fault_point in (*FETCH_POINTS, "push"):
        return ()
    evaluated = [instruction.source]
    if fault_point == "dst":
        evaluated.append(instruction.destination)
    return tuple(
        (operand.reg, STEP[operand.mode])
        for operand in evaluated
        if operand is not None and operand.mode in STEP
    )
