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

    Readers re-check (docs/mount.md, "Refused files"): every file and log entry is held to
    :func:`elliptio.layout.entry_problem`, whatever catalogue holds it. One whose path is
    not one a save writes (``../x``, ``/abs``, ``.eio/...``) is not listed; one whose path
    is fine but whose object, size or digest breaks the rules is listed with its
    ``problem`` and no object, so its open answers EIO. One WARNING line per artifact.
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

        refused: list[str] = []
        for f in md.get("files") or []:
            record = self._checked(md, f, "file", refused)
            if record is not None:
                add(record["path"], record)
        try:
            empty = stored_dirs(md, f"artifact {self.id}")
        except IntegrityError as exc:
            log.warning("%s: its empty directories are not shown", exc)
            empty = []
        for d in empty:
            add(d, None)
        # metadata.yaml has no recorded digest: its key is served only when the prefix
        # it is derived from is the artifact's own (the rule's prefix half)
        prefix_problem = layout.entry_problem(md, _probe(self.prefix, "metadata.yaml"))
        add(layout.METADATA, {"path": layout.METADATA, "size": -1, "sha256": None,
                              "object": layout.metadata_key(self.prefix)}
            if prefix_problem is None else _refused(layout.METADATA, {}, prefix_problem))
        add(".eio/logs", None)
        logs = md.get("logs")
        for rec in (logs.values() if isinstance(logs, Mapping) else ()):
            record = self._checked(md, rec, "log", refused)
            if record is not None:
                add(record["path"], record)
        self.dirs = dirs
        if refused or prefix_problem is not None:
            _warn_once(self.id, len(refused), refused[0] if refused else prefix_problem)

    def _checked(self, md: Mapping[str, Any], entry: Any, kind: str,
                 refused: list[str]) -> dict[str, Any] | None:
        """The record the view keeps of one file or log *entry*: None when its path is
        not listable, ``problem`` set (and no object) when it is listed but refused."""
        path = entry.get("path") if isinstance(entry, Mapping) else None
        # the rule asked of the path alone: a probe entry that breaks nothing else
        not_listable = layout.entry_problem(md, _probe(self.prefix, path), kind)
        problem = not_listable or layout.entry_problem(md, entry, kind)
        if problem is not None:
            refused.append(problem)
        if not_listable is not None:
            return None
        assert isinstance(entry, Mapping) and isinstance(path, str)
        if problem is not None:
            return _refused(path, entry, problem)
        return {"path": path, "size": entry["size"], "sha256": entry["sha256"],
                "object": entry["object"]}

    def node(self, sub: tuple[str, ...], record: dict[str, Any] | None) -> Node:
        path = ("artifacts", self.id, *sub)
        if record is None:
            return Node(Kind.ADIR, path, mtime_ns=self.created_ns, artifact=self.id,
                        user=self.user)
        return Node(Kind.AFILE, path, size=int(record["size"]), mtime_ns=self.created_ns,
                    artifact=self.id, user=self.user, sha256=record.get("sha256"),
                    object=record["object"], problem=record.get("problem"))


def _probe(prefix: Any, path: Any) -> dict[str, Any]:
    """An entry at *path* that breaks no rule of :func:`layout.entry_problem` but maybe its
    path (or the artifact's prefix): its own object, a byte count, a digest."""
    return {"path": path, "object": f"{prefix}/{path}", "size": 0, "sha256": "0" * 64}


def _refused(path: str, entry: Mapping[str, Any], problem: str) -> dict[str, Any]:
    """A listed entry that is never served: nothing of it but its path and a plausible
    size reaches a node (no object to read, no digest or URL to show)."""
    size = entry.get("size")
    ok = isinstance(size, int) and not isinstance(size, bool) and size >= 0
    return {"path": path, "size": size if ok else 0, "sha256": None, "object": None,
            "problem": problem}


def _warn_once(artifact_id: str, count: int, first: str | None) -> None:
    if _WARNED.recent(artifact_id) is not None:
        return
    _WARNED.put(artifact_id, True)
    log.warning("artifact %s breaks the store's rules, %d of its entries are not served "
                "(someone must look at it; eio fsck): %s", artifact_id, count, first)



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


#: artifacts already warned about (views are rebuilt after eviction and by scans)
_WARNED = LRU(4096)
