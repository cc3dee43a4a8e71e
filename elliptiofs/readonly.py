"""The lake's side of the mount, read-only and without pyfuse3: the tree's lookups and
listings run inline or on the catalogue workers, sizes learned from the store, and an
artifact's file opened with its read recorded (lineage) and told to the scan-ahead.

:class:`~elliptiofs.ops.Operations` calls it for every node not under ``outbox/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from elliptio.errors import IntegrityError

from .nodes import Entry, Kind, Node
from .reader import Reader
from .readlog import ReadLog, ReadLogError, scope_for
from .scan import ScanAhead
from .tree import Tree
from .workers import Workers

log = logging.getLogger(__name__)


class ReadOnly:
    """The tree, the reader, the read log and the scan-ahead, as the operations use them."""

    def __init__(self, tree: Tree, reader: Reader, readlog: ReadLog | None,
                 catalogue_workers: Workers, *, scope: str, inline_catalogue: bool,
                 scan: ScanAhead | None) -> None:
        self.tree = tree
        self.reader = reader
        self.readlog = readlog
        self.scope = scope
        self.inline_catalogue = inline_catalogue
        self.scan = scan
        self.catalogue_workers = catalogue_workers

    async def cat(self, fn: Callable[..., Any], *args: Any, heavy: bool = False) -> Any:
        """Run a catalogue call: inline on the trio thread when the catalogue is a local
        SQLite file and the call is an indexed lookup (~5 µs, less than a thread hop);
        in a worker thread for network catalogues and for searches."""
        if self.inline_catalogue and not heavy:
            return fn(*args)
        return await self.catalogue_workers.run(fn, *args)

    async def lookup(self, parent: Node, name: str) -> Node | None:
        heavy = parent.kind is Kind.TOP and parent.path == ("search",)
        node: Node | None = await self.cat(self.tree.lookup, parent, name, heavy=heavy)
        return node

    async def list_dir(self, node: Node, after: str | None, limit: int) -> list[Entry]:
        heavy = node.kind is Kind.GROUP and node.path[0] == "search"
        entries: list[Entry] = await self.cat(self.tree.list_dir, node, after, limit,
                                              heavy=heavy)
        return entries

    async def sized(self, node: Node) -> Node:
        """*node* with a known size (metadata.yaml's is learned from the store once)."""
        if node.kind is Kind.AFILE and node.size < 0:
            cached = self.tree.cached_metadata(node)
            if cached is not None:
                node.size = len(cached)
            else:
                await self.reader.run(self.tree.metadata_bytes, node)  # a store read
        return node

    async def open(self, node: Node, pid: int, uid: int) -> int:
        """Open the artifact file *node* for reading by process *pid* of *uid*: its read
        recorded and told to the scan-ahead; the reader's handle.

        A refused file (``node.problem``: its entry breaks the store's rules,
        :mod:`elliptiofs.views`) raises ``IntegrityError`` (EIO) before anything is read
        or recorded."""
        if node.problem is not None:
            raise IntegrityError(f"{node.artifact}/{'/'.join(node.path[2:])}: refused: "
                                 f"{node.problem}")
        node = await self.sized(node)
        if node.user_file and (self.readlog is not None or self.scan is not None):
            scope = scope_for(pid, uid, self.scope)  # the reader, for both
            if self.readlog is not None:
                self._record_read(node, scope, pid, uid)
            if self.scan is not None:
                self.scan.opened(scope, node)
        assert node.object is not None
        return self.reader.open(node.object, node.size, node.sha256)

    def _record_read(self, node: Node, scope: str, pid: int, uid: int) -> None:
        assert self.readlog is not None and node.artifact is not None
        try:
            self.readlog.record(scope, node.artifact, pid=pid, uid=uid)
        except ReadLogError as exc:
            # reading must not fail because lineage cannot be written; someone must act
            log.warning("lineage of a read is lost: %s", exc)
