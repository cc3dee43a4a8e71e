"""Read-ahead across artifacts: the next small files of a scan are fetched before they are
opened.

Reading one small file per artifact, artifact after artifact, is the common way a lake is
consumed (``cat artifacts/*/metrics.json``, a loader walking ``by-user/andy/``). Each such
file costs a GET (about 0.7 ms on a nearby server, far more on a remote one) that kernel
read-ahead cannot hide: it never crosses a file. The mount can, because it knows the
order: artifact ids sort by creation time, and every directory of artifacts lists them in
id order (a shell glob sorts them ascending, a listing shows them newest first).

:class:`ScanAhead` watches the opens of small user files (at most :data:`SMALL_MAX`
bytes). Per reader scope (the one lineage uses, ``--scope``: by default the session of
the opening process — one shell loop, one ``cat`` or one job script), once two opens in
a row are the same relative path (``metrics.json``, ``eval/scores.csv``) of two
artifacts in id order, it asks the tree (:meth:`~elliptiofs.tree.Tree.same_file_after`,
one catalogue query) for the next artifacts in that direction (those of the same user
when both were the same user's, as in ``by-user/andy/``) and has the reader fetch that
file of each of them (:meth:`~elliptiofs.reader.Reader.prefetch`). The window starts at
:data:`FIRST_WINDOW` artifacts and doubles up to :data:`MAX_WINDOW` (``elliptiofs
--scan-ahead N``; 0 turns this off); the next window is asked for when the reader is
half-way through the current one. An open out of order, past the window, of another
path, or of a large file ends the scan (and may start a new one).

Prefetched bytes are charged to the reader's memory budget (at most a quarter of it) and
are dropped when not opened soon; an open finds them by store key, so deduplicated files
are found too. Lineage is still recorded by ``open()``: a prefetched file that is never
opened is never a ``based_on``.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from typing import Any

from .nodes import Node
from .reader import Reader
from .tree import Tree
from .workers import Workers

log = logging.getLogger(__name__)

#: files up to this size are read ahead across artifacts
SMALL_MAX = 1 << 20
FIRST_WINDOW = 8
MAX_WINDOW = 64
#: reader scopes tracked at once (least recently active forgotten first)
TRACKED = 256


class _Scan:
    __slots__ = ("last", "rel", "user", "same_user", "order", "window", "planned_to",
                 "refill_at", "planning")

    def __init__(self, node: Node) -> None:
        self.last: str = node.artifact or ""
        self.rel: tuple[str, ...] = node.path[2:]
        self.user = node.user
        self.same_user = True
        self.order: str | None = None  # "oldest" (ascending ids) or "newest"
        self.window = FIRST_WINDOW
        self.planned_to: str | None = None  # the last artifact asked for
        self.refill_at: str | None = None  # ask for the next window once this is opened
        self.planning = False


class ScanAhead:
    """Detects scans (see the module docstring) and has *reader* prefetch ahead of them.

    *tree* answers which artifacts come next (:meth:`Tree.same_file_after`, run on
    *workers*, the catalogue's pool). Call :meth:`opened` on the trio thread for every
    open of a user file, with the reader's scope; it never blocks."""

    def __init__(self, tree: Tree, reader: Reader, workers: Workers, *,
                 max_window: int = MAX_WINDOW) -> None:
        self._tree = tree
        self.max_window = max_window
        self._reader = reader
        self._workers = workers
        self._scans: OrderedDict[str, _Scan] = OrderedDict()

    def opened(self, scope: str, node: Node) -> None:
        if node.artifact is None or not 0 < node.size <= SMALL_MAX:
            self._scans.pop(scope, None)
            return
        s = self._scans.get(scope)
        rel = node.path[2:]
        order = None
        if s is not None and s.rel == rel:
            if node.artifact > s.last:
                order = "oldest"
            elif node.artifact < s.last:
                order = "newest"
        if s is not None and order is not None and s.planned_to is not None and (
                node.artifact > s.planned_to if order == "oldest"
                else node.artifact < s.planned_to):
            order = None  # a jump past the window: a new scan, if it is one
        if s is None or order is None or (s.order is not None and order != s.order):
            self._scans[scope] = _Scan(node)
            self._scans.move_to_end(scope)
            while len(self._scans) > TRACKED:
                self._scans.popitem(last=False)
            return
        self._scans.move_to_end(scope)
        s.order = order
        s.same_user = s.same_user and node.user == s.user
        s.last = node.artifact
        if s.planning:
            return
        if s.planned_to is not None and s.refill_at is not None:
            ahead = (node.artifact < s.refill_at) if order == "oldest" \
                else (node.artifact > s.refill_at)
            if ahead:
                return  # still well inside the window already fetched
            start = s.planned_to  # the next window follows the last one
        else:
            start = node.artifact
        s.planning = True
        query = functools.partial(self._tree.same_file_after, s.rel, start,
                                  order=s.order or "oldest",
                                  user=s.user if s.same_user else None,
                                  limit=min(s.window, self.max_window))
        self._workers.submit(query, (), functools.partial(self._planned, s, start))

    def _planned(self, s: _Scan, start: str, found: Any, error: BaseException | None) -> None:
        """The answer of a planning query (on the trio thread): prefetch what it found."""
        s.planning = False
        if error is not None:  # a hint only: the reads themselves will say what fails
            log.debug("scan read-ahead after %s: %s", start, error)
            found = []
        for _, node in found:
            if node is not None and node.object and 0 < node.size <= SMALL_MAX:
                self._reader.prefetch(node.object, node.size)
        if found:
            s.planned_to = found[-1][0]
            s.refill_at = found[len(found) // 2][0]
            s.window = min(self.max_window, s.window * 2)
        else:
            s.planned_to = s.refill_at = start  # nothing further yet: asked again past it
