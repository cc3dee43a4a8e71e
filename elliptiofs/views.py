"""One artifact's file tree as the mount shows it, and the bounded LRU cache that keeps
the parsed trees (and metadata.yaml bytes) of :class:`~elliptiofs.tree.Tree`.

Plain Python; :class:`LRU` is locked because worker threads fill it (metadata reads, a
scan's views).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from elliptio import layout
from elliptio.artifact import stored_dirs
from elliptio.errors import IntegrityError
from elliptio.ids import id_time

from .nodes import Kind, Node, to_ns

log = logging.getLogger(__name__)


class ArtifactView:
    """The directories of one artifact, built once from its metadata.

    ``dirs`` maps a directory path inside the artifact (``""`` = its root, ``.eio``,
    ``.eio/logs``, ``data/raw``) to ``{name: file record or None for a sub-directory}``.
    The directories come from the file paths and the metadata's ``dirs`` (the empty
    ones); a ``dirs`` list save would not have written is left out as a whole.
    """

    __slots__ = ("id", "user", "created_ns", "prefix", "dirs")

    def __init__(self, md: Mapping[str, Any]) -> None:
        self.id: str = md["id"]
        self.user: str = md["user"]
        self.created_ns = to_ns(id_time(self.id))
        self.prefix: str = md["prefix"]
        dirs: dict[str, dict[str, dict[str, Any] | None]] = {"": {}}

        def add(path: str, record: dict[str, Any] | None) -> None:
            parent, _, name = path.rpartition("/")
            if parent not in dirs:
                add(parent, None)
                dirs[parent] = {}
            if record is None and path not in dirs:
                dirs[path] = {}
            dirs[parent][name] = record

        for f in md.get("files") or []:
            add(f["path"], f)
        try:
            empty = stored_dirs(md, f"artifact {self.id}")
        except IntegrityError as exc:
            log.warning("%s: its empty directories are not shown", exc)
            empty = []
        for d in empty:
            add(d, None)
        add(layout.METADATA, {"path": layout.METADATA, "size": -1, "sha256": None,
                              "object": layout.metadata_key(self.prefix)})
        add(".eio/logs", None)
        for rec in (md.get("logs") or {}).values():
            path = rec["path"] if rec["path"].startswith(".eio/logs/") else \
                ".eio/logs/" + rec["path"].rsplit("/", 1)[-1]
            add(path, {**rec, "path": path})
        self.dirs = dirs

    def node(self, sub: tuple[str, ...], record: dict[str, Any] | None) -> Node:
        path = ("artifacts", self.id, *sub)
        if record is None:
            return Node(Kind.ADIR, path, mtime_ns=self.created_ns, artifact=self.id,
                        user=self.user)
        return Node(Kind.AFILE, path, size=int(record["size"]), mtime_ns=self.created_ns,
                    artifact=self.id, user=self.user, sha256=record.get("sha256"),
                    object=record["object"])



class LRU(OrderedDict[str, Any]):
    """At most *size* values by key; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()  # worker threads fill it (metadata, a scan's views)

    def recent(self, key: str) -> Any | None:
        """The value kept for *key* (now the most recently used), or None."""
        with self.lock:
            value = self.get(key)
            if value is not None:
                self.move_to_end(key)
            return value

    def fetch(self, key: str, make: Callable[[], Any]) -> Any:
        value = self.recent(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)
