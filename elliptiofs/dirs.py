"""An open directory, paged: a FUSE offset maps to an entry of a page fetched by keyset
cursor, never to a list index of the whole directory (memory does not grow with it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .nodes import Entry, Node

#: directory entries fetched from the catalogue per page
PAGE = 1000


class OpenDir:
    """An open directory: the current page of entries and the cursors of page starts."""

    __slots__ = ("node", "page", "page_off", "starts")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.page: list[Entry] = []
        self.page_off = 0
        self.starts: dict[int, str | None] = {0: None}

    async def entry_at(self, off: int,
                       fetch: Callable[[Node, str | None, int], Awaitable[list[Entry]]]
                       ) -> Entry | None:
        """The entry at FUSE offset *off*: from the current page, the next page (keyset:
        after the current page's last cursor), or, after a seekdir, the page that holds
        it (refetched from the nearest page start). *fetch(node, after, limit)* lists
        one page."""
        if self.page_off <= off < self.page_off + len(self.page):
            return self.page[off - self.page_off]
        end = self.page_off + len(self.page)
        cursor: str | None
        if off == end and self.page:
            if len(self.page) < PAGE:
                return None  # the last page was short: no more entries
            start, cursor = end, self.page[-1].cursor
        else:
            start = max(s for s in self.starts if s <= off)
            cursor = self.starts[start]
        while True:
            page = await fetch(self.node, cursor, PAGE)
            self.page, self.page_off = page, start
            self.starts[start] = cursor
            if off < start + len(page):
                return page[off - start]
            if len(page) < PAGE:
                return None
            start, cursor = start + len(page), page[-1].cursor
