"""Executable images: what a program brings to process creation.

A program's virtual address space, in pages::

    vpn 0 ..                  text   (read + execute, shared by every process
                                      running the same program)
    then                      data   (read + write, initialised from the image)
    then                      heap   (read + write, zero-filled)
    va_pages-stack_pages ..   stack  (read + write, zero-filled)

plus any shared segments, each attached at its own vpn. Pages outside these
ranges are invalid: touching them is an error the kernel signals.

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


def page_of(words: tuple[int, ...], index: int, page_words: int) -> tuple[int, ...]:
    """Page ``index`` of ``words``, padded with zeros to ``page_words`` words."""
    piece = words[index * page_words : (index + 1) * page_words]
    return piece + (0,) * (page_words - len(piece))


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


PageKind = Literal["text", "data", "heap", "stack", "shared"]


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

    def pages_of(self, words: int, page_words: int) -> int:
        """Pages needed for ``words`` words."""
        return -(-words // page_words)

    def text_pages(self, page_words: int) -> int:
        """Pages of text."""
        return max(1, self.pages_of(len(self.text), page_words))

    def data_pages(self, page_words: int) -> int:
        """Pages of initialised data."""
        return self.pages_of(len(self.data), page_words)

    def validate(self, page_words: int, va_pages: int) -> None:
        """Raise UserError if the image cannot fit an address space of ``va_pages`` pages."""
        low = self.text_pages(page_words) + self.data_pages(page_words) + self.heap_pages
        if self.stack_pages < 0 or self.heap_pages < 0:
            raise UserError(f"program {self.name!r}: page counts must not be negative")
        if low + self.stack_pages > va_pages:
            raise UserError(
                f"program {self.name!r}: {low + self.stack_pages} pages do not fit "
                f"an address space of {va_pages} pages"
            )
        taken = set(range(low)) | set(range(va_pages - self.stack_pages, va_pages))
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

    def initial_stack_pointer(self, page_words: int, va_pages: int) -> int:
        """The value of r7 at entry: the first address past the stack."""
        return va_pages * page_words


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
