"""Executable images: what a program brings to process creation.

A program's virtual address space, in pages::

    vpn 0 ..                  text   (read + execute, shared by every process
                                      running the same program)
    then                      data   (read + write, initialised from the image)
    then                      heap   (read + write, zero-filled)
    va_pages-stack_pages ..   stack  (read + write, zero-filled)

plus any shared segments, each attached at its own vpn. Pages outside these
ranges are invalid: touching them is an error the kernel signals.

The heap may be resized by the SBRK system call (:func:`heap_break`): a
program with ``max_heap_pages`` above ``heap_pages`` reserves the pages after
its heap up to that size, and pages the heap grows by get a frame and a swap
slot only when first touched.

The stack may grow (:meth:`Program.stack_growth`): a program with
``max_stack_pages`` above ``stack_pages`` reserves the pages below its stack
down to ``va_pages-max_stack_pages``, and an access there that lies no more
than ``stack_reach`` words below the stack pointer grows the stack down to the
accessed page with zero-filled pages; any other access there is invalid.

Execution starts at ``entry`` with every register zero except r7, the stack
pointer, which holds the first address past the stack.

An :class:`Image` is a program as installed on the disk before boot, the
way an executable file is: its text pages, then its data pages, in
consecutive blocks of the image area. Kernels page text and data in from
there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pagingcheck.model.bits import EXEC, READ, USER, WRITE
from pagingcheck.model.errors import UserError

STACK_POINTER = 7
#: Words below the stack pointer within which an access grows the stack, unless a program
#: says otherwise: room for the pushes of one instruction and a small frame.
DEFAULT_STACK_REACH = 8


def pages_for(words: int, page_words: int) -> int:
    """Pages needed for ``words`` words (a text, a data segment, a file)."""
    return -(-words // page_words)


def page_of(words: tuple[int, ...], index: int, page_words: int) -> tuple[int, ...]:
    """Page ``index`` of ``words``, padded with zeros to ``page_words`` words."""
    piece = words[index * page_words : (index + 1) * page_words]
    return piece + (0,) * (page_words - len(piece))


def stack_growth(va: int, sp: int, lowest: int, floor: int, reach: int, page_words: int) -> range:
    """The pages an access to ``va`` grows a stack by: empty when it does not.

    ``sp`` is the stack pointer at the start of the accessing instruction (the
    instruction is restarted after growing, so it is the one it will run with),
    ``lowest`` the stack's lowest page now, ``floor`` the lowest page it may ever
    have and ``reach`` how many words below ``sp`` an access may be. The access
    grows the stack when its page lies below ``lowest`` but not below ``floor``,
    and ``va`` is at most ``reach`` words below ``sp``; the stack then reaches
    down to that page. The one rule kernels and the spec both follow.
    """
    vpn = va // page_words
    if va < 0 or not floor <= vpn < lowest or va < sp - reach:
        return range(0)
    return range(vpn, lowest)


def heap_break(brk: int, change: int, start: int, limit: int) -> int | None:
    """The heap's break (its first page past the end) after SBRK asks to move it from
    ``brk`` by ``change`` pages; None when the heap would start before ``start`` or
    outgrow ``limit`` pages (the call fails and nothing changes). The one rule kernels
    and the spec both follow."""
    new = brk + change
    return new if start <= new <= start + limit else None


def signed(word: int) -> int:
    """A 32-bit word read as a two's-complement number."""
    return word - (1 << 32) if word & (1 << 31) else word


@dataclass(frozen=True)
class SharedSegment:
    """A read-write segment shared by every process that attaches ``name``.

    Every process attaching the same name sees the same ``pages`` pages,
    at its own ``vpn``.
    """

    name: str
    vpn: int
    pages: int
    writable: bool = True


#: What a valid page is: a part of the program's layout, or a page of a file an MMAP mapped
#: (``file`` shared, ``private_file`` private: copy-on-write over the file).
PageKind = Literal["text", "data", "heap", "stack", "shared", "file", "private_file"]


@dataclass(frozen=True)
class LayoutPage:
    """One valid page of a program's address space.

    ``shared_key`` names the shared object the page belongs to
    (``"text:<program>"`` or ``"segment:<name>"``) and ``index`` is the page's
    position inside it; private pages have no key. ``initial`` is the page's
    contents at creation.
    """

    vpn: int
    kind: PageKind
    prot: int
    shared_key: str | None
    index: int
    initial: tuple[int, ...]


@dataclass(frozen=True)
class Program:
    """An executable image: text and data words, and the sizes of the rest."""

    name: str
    text: tuple[int, ...]
    data: tuple[int, ...] = ()
    heap_pages: int = 0
    stack_pages: int = 1
    entry: int = 0
    shared: tuple[SharedSegment, ...] = field(default=())
    #: How many pages SBRK may grow the heap to; None: at most ``heap_pages``.
    max_heap_pages: int | None = None
    #: How many pages the stack may grow to; None: it stays at ``stack_pages``.
    max_stack_pages: int | None = None
    #: How far below the stack pointer (in words) an access may be and still grow the stack.
    stack_reach: int = DEFAULT_STACK_REACH

    def text_pages(self, page_words: int) -> int:
        """Pages of text."""
        return max(1, pages_for(len(self.text), page_words))

    def data_pages(self, page_words: int) -> int:
        """Pages of initialised data."""
        return pages_for(len(self.data), page_words)

    @property
    def heap_limit(self) -> int:
        """The most pages the heap may have."""
        return self.heap_pages if self.max_heap_pages is None else self.max_heap_pages

    def heap_start(self, page_words: int) -> int:
        """The heap's first page: right after text and data."""
        return self.text_pages(page_words) + self.data_pages(page_words)

    @property
    def stack_limit(self) -> int:
        """The most pages the stack may have."""
        return self.stack_pages if self.max_stack_pages is None else self.max_stack_pages

    def validate(self, page_words: int, va_pages: int) -> None:
        """Raise UserError if the image cannot fit an address space of ``va_pages`` pages."""
        low = self.heap_start(page_words) + self.heap_limit
        if self.stack_pages < 0 or self.heap_pages < 0:
            raise UserError(f"program {self.name!r}: page counts must not be negative")
        if self.heap_limit < self.heap_pages:
            raise UserError(
                f"program {self.name!r}: max_heap_pages ({self.heap_limit}) is below "
                f"heap_pages ({self.heap_pages})"
            )
        if self.stack_limit < self.stack_pages:
            raise UserError(
                f"program {self.name!r}: max_stack_pages ({self.stack_limit}) is below "
                f"stack_pages ({self.stack_pages})"
            )
        if self.stack_reach < 0:
            raise UserError(f"program {self.name!r}: stack_reach must not be negative")
        if low + self.stack_limit > va_pages:
            raise UserError(
                f"program {self.name!r}: {low + self.stack_limit} pages do not fit "
                f"an address space of {va_pages} pages"
            )
        taken = set(range(low)) | set(range(va_pages - self.stack_limit, va_pages))
        for segment in self.shared:
            span = set(range(segment.vpn, segment.vpn + segment.pages))
            if segment.pages < 1 or segment.vpn < 0 or segment.vpn + segment.pages > va_pages:
                raise UserError(
                    f"program {self.name!r}: shared segment {segment.name!r} lies outside "
                    f"the address space of {va_pages} pages"
                )
            if span & taken:
                raise UserError(
                    f"program {self.name!r}: shared segment {segment.name!r} overlaps "
                    "another part of the address space"
                )
            taken |= span

    def layout(self, page_words: int, va_pages: int) -> tuple[LayoutPage, ...]:
        """Every valid page of the address space, by vpn: the one source of the layout.

        The kernel builds page tables and swap from it; the spec builds ideal
        memory from it, so both agree on what a program's address space is.
        """
        self.validate(page_words, va_pages)
        zeros = (0,) * page_words

        def chunk(words: tuple[int, ...], index: int) -> tuple[int, ...]:
            return page_of(words, index, page_words)

        pages: list[LayoutPage] = []
        text_key = f"text:{self.name}"
        for index in range(self.text_pages(page_words)):
            pages.append(
                LayoutPage(
                    index, "text", READ | EXEC | USER, text_key, index, chunk(self.text, index)
                )
            )
        vpn = len(pages)
        for index in range(self.data_pages(page_words)):
            pages.append(
                LayoutPage(vpn, "data", READ | WRITE | USER, None, 0, chunk(self.data, index))
            )
            vpn += 1
        for _ in range(self.heap_pages):
            pages.append(LayoutPage(vpn, "heap", READ | WRITE | USER, None, 0, zeros))
            vpn += 1
        for vpn in range(va_pages - self.stack_pages, va_pages):
            pages.append(LayoutPage(vpn, "stack", READ | WRITE | USER, None, 0, zeros))
        for segment in self.shared:
            prot = READ | USER | (WRITE if segment.writable else 0)
            for index in range(segment.pages):
                pages.append(
                    LayoutPage(
                        segment.vpn + index, "shared", prot, f"segment:{segment.name}", index, zeros
                    )
                )
        return tuple(sorted(pages, key=lambda page: page.vpn))

    def map_area(self, page_words: int, va_pages: int) -> frozenset[int]:
        """The vpns an MMAP may map: every page that is no part of the layout and no room
        the heap or the stack may grow into (between the heap's room and the stack's,
        less the shared segments)."""
        low = self.heap_start(page_words) + self.heap_limit
        segments = {s.vpn + i for s in self.shared for i in range(s.pages)}
        return frozenset(range(low, self.stack_floor(va_pages))) - segments

    def initial_stack_pointer(self, page_words: int, va_pages: int) -> int:
        """The value of r7 at entry: the first address past the stack."""
        return va_pages * page_words

    def stack_growth(self, va: int, sp: int, lowest: int, page_words: int, va_pages: int) -> range:
        """The pages an access to ``va`` grows this program's stack by (see
        :func:`stack_growth`)."""
        floor = self.stack_floor(va_pages)
        return stack_growth(va, sp, lowest, floor, self.stack_reach, page_words)

    def stack_floor(self, va_pages: int) -> int:
        """The lowest page the stack may ever have."""
        return va_pages - self.stack_limit


@dataclass(frozen=True)
class Image:
    """``program`` installed on the disk: text pages, then data pages, from block ``first``.

    Block numbers are disk blocks (the image area follows the swap slots).
    """

    program: Program
    first: int
    page_words: int

    @property
    def pages(self) -> int:
        """Blocks the image takes."""
        return self.program.text_pages(self.page_words) + self.program.data_pages(self.page_words)

    def text_block(self, index: int) -> int:
        """The disk block of text page ``index``."""
        return self.first + index

    def data_block(self, index: int) -> int:
        """The disk block of data page ``index``."""
        return self.first + self.program.text_pages(self.page_words) + index

    def block_of(self, page: LayoutPage) -> int | None:
        """The disk block a layout page's first contents come from: its text or data page
        in the image; None for a page that starts as zeros (heap, stack, segments)."""
        if page.kind == "text":
            return self.text_block(page.index)
        if page.kind == "data":
            return self.data_block(page.vpn - self.program.text_pages(self.page_words))
        return None

    def contents(self) -> tuple[tuple[int, ...], ...]:
        """The words of each block, in order (each padded with zeros to a page)."""
        words, program = self.page_words, self.program
        text = [page_of(program.text, i, words) for i in range(program.text_pages(words))]
        data = [page_of(program.data, i, words) for i in range(program.data_pages(words))]
        return tuple(text + data)


def map_range(va: int, pages: int, page_words: int, area: frozenset[int]) -> range | None:
    """The vpns an MMAP or MUNMAP of ``pages`` pages from virtual address ``va`` names: ``va``
    page aligned, at least one page, every one in the map ``area``
    (:meth:`Program.map_area`); None for any other (the call fails)."""
    if va % page_words or pages < 1:
        return None
    vpns = range(va // page_words, va // page_words + pages)
    return vpns if all(vpn in area for vpn in vpns) else None
