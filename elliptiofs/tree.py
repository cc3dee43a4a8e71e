"""The virtual tree of the mount as plain Python: path -> node, listings, inode table.

Nothing here imports pyfuse3; :mod:`elliptiofs.ops` translates FUSE calls into calls on
:class:`Tree` and :class:`Inodes`. The layout (docs/mount.md, "Layout")::

    artifacts/<id>/...            the artifact: user files, .eio/metadata.yaml, .eio/logs/
    by-user/<user>/<id>           symlink -> ../../artifacts/<id>
    by-tag/<tag>/<id>             symlink
    by-date/YYYY/MM/DD/<id>       symlink -> ../../../../artifacts/<id>
    based-on/<id>/<child-id>      symlink; based-on/ lists every artifact id
    search/<query>/<id>           symlink; search/ lists nothing, any query can be looked up
    outbox/                       the writable staging area (elliptiofs.outbox, not here)

Every method is synchronous. Catalogue calls are cheap indexed lookups (the caller decides
whether to run them inline or in a thread); the only store I/O is
:meth:`Tree.metadata_bytes`, which the caller must run in a worker thread.

Listings are paged from the catalogue with keyset cursors (an id, a user or tag name, a
file name): :meth:`Tree.list_dir` returns at most *limit* entries after a cursor, so memory does
not grow with the lake. The :class:`Inodes` table holds only nodes the kernel references
(lookup counts, released by ``forget``).
"""

from __future__ import annotations

import calendar
import enum
import logging
import os
import pwd
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from elliptio import Lake, layout
from elliptio.artifact import stored_dirs
from elliptio.config import USER_RE
from elliptio.errors import IntegrityError, NotFound
from elliptio.ids import ID_RE, id_time
from elliptio.query import Query

log = logging.getLogger(__name__)

ROOT_INODE = 1
#: names in the root directory, in listing order
TOP = ("artifacts", "by-user", "by-tag", "by-date", "based-on", "search", "outbox")
#: kernel cache lifetime of immutable things (artifact contents, symlinks to artifacts)
IMMUTABLE_TIMEOUT = 3600.0
#: kernel cache lifetime of query directories and of names not found in them
QUERY_TIMEOUT = 1.0
#: artifacts whose parsed file tree is kept (lookups inside one artifact come in bursts;
#: a scan's read-ahead puts the next window's there, up to 64: see same_file_after)
VIEW_CACHE = 128
#: metadata.yaml contents kept in memory (small; read from the store once)
METADATA_CACHE = 256


class Kind(enum.Enum):
    ROOT = "root"
    TOP = "top"  # artifacts/, by-user/, ... (a fixed directory of the root)
    OUTBOX = "outbox"  # outbox/ (delegated to elliptiofs.outbox when there is one)
    GROUP = "group"  # a directory listing artifacts as symlinks (by-user/andy, search/q)
    DATES = "dates"  # by-date/YYYY or by-date/YYYY/MM: lists the next date level
    LINK = "link"  # <group>/<id> -> artifacts/<id>
    ADIR = "adir"  # a directory inside artifacts/<id>/ (including the artifact root)
    AFILE = "afile"  # a file inside an artifact (user file, metadata.yaml, a log)


class Node:
    """One path of the tree and what ``stat`` shows of it.

    ``size`` is -1 for ``.eio/metadata.yaml`` until its bytes are fetched (the catalogue
    does not record its size). ``query`` is set on GROUP nodes (what they list).
    """

    __slots__ = ("kind", "path", "size", "mtime_ns", "artifact", "user", "sha256",
                 "object", "query")

    def __init__(self, kind: Kind, path: tuple[str, ...], *, size: int = 0,
                 mtime_ns: int = 0, artifact: str | None = None, user: str | None = None,
                 sha256: str | None = None, object: str | None = None,
                 query: Query | None = None) -> None:
        self.kind = kind
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.artifact = artifact
        self.user = user
        self.sha256 = sha256
        self.object = object
        self.query = query

    def __repr__(self) -> str:
        return f"Node({self.kind.value}, /{'/'.join(self.path)})"

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def is_dir(self) -> bool:
        return self.kind not in (Kind.LINK, Kind.AFILE)

    @property
    def immutable(self) -> bool:
        """Contents and attributes never change (the kernel may cache them long)."""
        return self.kind in (Kind.ADIR, Kind.AFILE, Kind.LINK, Kind.ROOT, Kind.TOP)

    @property
    def in_outbox(self) -> bool:
        return bool(self.path) and self.path[0] == "outbox"

    @property
    def user_file(self) -> bool:
        """A file the user saved (not .eio/metadata.yaml or a log): reads are lineage."""
        return self.kind is Kind.AFILE and len(self.path) > 2 and self.path[2] != ".eio"

    def link_target(self) -> str:
        """The relative symlink target ``../../artifacts/<id>`` of a LINK node."""
        return "../" * (len(self.path) - 1) + "artifacts/" + self.name

    def mode(self) -> int:
        if self.kind is Kind.LINK:
            return 0o120777
        if self.kind is Kind.AFILE:
            return 0o100444
        if self.kind is Kind.OUTBOX:
            return 0o041777  # writable by everyone, sticky (like /tmp): owners are uids
        return 0o040555

    def entry_timeout(self) -> float:
        return IMMUTABLE_TIMEOUT if self.immutable else QUERY_TIMEOUT

    def negative_timeout(self) -> float:
        """How long the kernel may remember that a name does not exist in this directory."""
        return IMMUTABLE_TIMEOUT if self.kind in (Kind.ADIR, Kind.ROOT) else QUERY_TIMEOUT


@dataclass(frozen=True)
class Entry:
    """One listed directory entry: its name, its node, and the cursor that follows it."""

    name: str
    node: Node
    cursor: str


# -- owners ---------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def owner_of(user: str | None) -> tuple[int, int]:
    """(uid, gid) of the local account named *user*, else the daemon's own."""
    if user:
        try:
            pw = pwd.getpwnam(user)
            return pw.pw_uid, pw.pw_gid
        except (KeyError, OSError):
            pass
    return os.getuid(), os.getgid()


def glob_escape(text: str) -> str:
    """*text* as a glob that matches only itself (tags may hold ``*``, ``?``, ``[``)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) * 1000


# -- one artifact's file tree -----------------------------------------------------------------
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
        self.created_ns = _ns(id_time(self.id))
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


class _LRU(OrderedDict[str, Any]):
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


# -- the tree ---------------------------------------------------------------------------------
class Tree:
    """The mount's namespace over one :class:`~elliptio.Lake`."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.started_ns = _ns(datetime.now(UTC))
        self._views = _LRU(VIEW_CACHE)
        self._metadata = _LRU(METADATA_CACHE)

    @property
    def catalogue(self) -> Any:
        return self.lake.catalogue

    def root(self) -> Node:
        return Node(Kind.ROOT, (), mtime_ns=self.started_ns)

    # -- artifacts --------------------------------------------------------------------
    def view(self, artifact_id: str) -> ArtifactView | None:
        """The parsed file tree of *artifact_id*, or None if the catalogue does not know it."""
        if not ID_RE.match(artifact_id):
            return None
        v: ArtifactView | None = self._views.recent(artifact_id)
        if v is None:
            md = self.catalogue.get(artifact_id)
            if md is None:
                return None  # not cached: the artifact may be saved later
            v = ArtifactView(md)
            self._views.put(artifact_id, v)
        return v

    def same_file_after(self, rel: tuple[str, ...], after: str, *, order: str,
                        user: str | None, limit: int) -> list[tuple[str, Node | None]]:
        """The next *limit* artifacts after *after* in id order (``order="oldest"``:
        ascending, ``"newest"``: descending), only *user*'s if given: each one's id and
        the node of its file at *rel* inside it (None where it has none). One catalogue
        query (call it in a thread); read-ahead across artifacts (:mod:`.scan`) uses it.

        The parsed artifacts go into the view cache: the scan's next opens look these
        artifacts up, and find them there instead of reading the catalogue again."""
        *parent, name = rel
        out: list[tuple[str, Node | None]] = []
        for md in self.catalogue.find(Query(user=user, order=order, after=after,
                                            limit=limit)):
            v = ArtifactView(md)
            self._views.put(v.id, v)
            record = v.dirs.get("/".join(parent), {}).get(name)  # None: missing or a dir
            out.append((v.id, v.node(rel, record) if record is not None else None))
        return out

    def metadata_bytes(self, node: Node) -> bytes:
        """The stored ``metadata.yaml`` of *node*'s artifact (store I/O: call in a thread).

        Sets ``node.size``. The bytes are the store's, not a re-serialisation.
        """
        assert node.object is not None and node.artifact is not None
        key = node.object
        data: bytes = self._metadata.fetch(key, lambda: self.lake.store.read_bytes(key))
        node.size = len(data)
        return data

    def cached_metadata(self, node: Node) -> bytes | None:
        with self._metadata.lock:
            return self._metadata.get(node.object or "")

    # -- lookup -----------------------------------------------------------------------
    def lookup(self, parent: Node, name: str) -> Node | None:
        """The child *name* of *parent*, or None if there is none.

        Raises :class:`~elliptio.errors.QueryError` for a malformed ``search/`` name and
        :class:`~elliptio.errors.CatalogueError` when the catalogue fails.
        """
        k, path = parent.kind, parent.path
        child = (*path, name)
        if k is Kind.ROOT:
            if name not in TOP:
                return None
            kind = Kind.OUTBOX if name == "outbox" else Kind.TOP
            return Node(kind, child, mtime_ns=self.started_ns)
        if k is Kind.TOP:
            return self._lookup_top(path[0], name)
        if k is Kind.GROUP:
            assert parent.query is not None
            return self._member(parent, parent.query, name)
        if k is Kind.DATES:
            return self._lookup_date(path, name)
        if k is Kind.ADIR:
            assert parent.artifact is not None
            v = self.view(parent.artifact)
            if v is None:
                return None
            sub = path[2:]
            entries = v.dirs.get("/".join(sub))
            if entries is None or name not in entries:
                return None
            return v.node((*sub, name), entries[name])
        return None  # LINK, AFILE, OUTBOX (the outbox resolves its own names)

    def _lookup_top(self, top: str, name: str) -> Node | None:
        child = ("artifacts" if top == "artifacts" else top, name)
        if top == "artifacts":
            v = self.view(name)
            return v.node((), None) if v else None
        if top == "by-user":
            if not USER_RE.match(name) or not self._exists(Query(user=name, limit=1)):
                return None
            return self._group(child, Query(user=name, limit=None), user=name)
        if top == "by-tag":
            q = Query(tags=(glob_escape(name),), limit=None)
            return self._group(child, q) if self._exists(q) else None
        if top == "based-on":
            if self.view(name) is None:
                return None
            return self._group(child, Query(based_on=name, limit=None))
        if top == "search":
            # a malformed query raises QueryError: the caller reports it (EINVAL + a log line)
            q = Query.parse(name, limit=None)
            return self._group(child, q)
        if top == "by-date":
            return self._lookup_date((top,), name)
        return None

    def _group(self, path: tuple[str, ...], q: Query, user: str | None = None) -> Node:
        return Node(Kind.GROUP, path, mtime_ns=self.started_ns, query=q, user=user)

    def _exists(self, q: Query) -> bool:
        return bool(self.catalogue.find(replace(q, limit=1)))

    def _member(self, parent: Node, q: Query, name: str) -> Node | None:
        if not ID_RE.match(name):
            return None
        found = self.catalogue.find(replace(q, ids=(name,), limit=1, after=None))
        return self._link(parent.path, found[0]) if found else None

    def _link(self, parent_path: tuple[str, ...], md: Mapping[str, Any]) -> Node:
        aid = md["id"]
        return Node(Kind.LINK, (*parent_path, aid), mtime_ns=_ns(id_time(aid)),
                    artifact=aid, user=md.get("user"))

    # -- by-date ------------------------------------------------------------------------
    @staticmethod
    def _date_range(parts: tuple[str, ...]) -> tuple[datetime, datetime] | None:
        """[start, end) of by-date/Y[/M[/D]] or None if the names are not a valid date."""
        try:
            if len(parts) == 1 and re.fullmatch(r"\d{4}", parts[0]):
                y = int(parts[0])
                return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
            if len(parts) == 2 and re.fullmatch(r"\d{2}", parts[1]):
                y, m = int(parts[0]), int(parts[1])
                start = datetime(y, m, 1, tzinfo=UTC)
                days = calendar.monthrange(y, m)[1]
                return start, start + timedelta(days=days)
            if len(parts) == 3 and re.fullmatch(r"\d{2}", parts[2]):
                start = datetime(int(parts[0]), int(parts[1]), int(parts[2]), tzinfo=UTC)
                return start, start + timedelta(days=1)
        except (ValueError, OverflowError):
            return None
        return None

    def _lookup_date(self, parent_path: tuple[str, ...], name: str) -> Node | None:
        parts = (*parent_path[1:], name)
        rng = self._date_range(parts)
        if rng is None:
            return None
        q = Query(since=rng[0], until=rng[1], limit=None)
        if not self._exists(q):
            return None
        path = ("by-date", *parts)
        if len(parts) == 3:
            return self._group(path, q)
        return Node(Kind.DATES, path, mtime_ns=self.started_ns)

    def _date_children(self, parts: tuple[str, ...], after: str | None,
                       limit: int) -> list[Entry]:
        """The years / months / days that hold artifacts, by skip-scanning the id index:
        one indexed probe per existing value, never a scan of the artifacts."""
        level = len(parts)  # 0: years, 1: months, 2: days
        rng = self._date_range(parts) if parts else None
        lo = rng[0] if rng else None
        hi = rng[1] if rng else None
        out: list[Entry] = []
        while len(out) < limit:
            q = Query(since=lo, until=hi, order="oldest", limit=1)
            if after is not None:
                nxt = self._after_value(parts, after)
                if nxt is None:
                    break
                q = replace(q, since=max(lo, nxt) if lo else nxt)
            found = self.catalogue.find(q)
            if not found:
                break
            t = id_time(found[0]["id"])
            value = (f"{t.year:04d}", f"{t.month:02d}", f"{t.day:02d}")[level]
            node_path = ("by-date", *parts, value)
            if level == 2:
                start, end = self._date_range((*parts, value)) or (t, t)
                node = self._group(node_path, Query(since=start, until=end, limit=None))
            else:
                node = Node(Kind.DATES, node_path, mtime_ns=self.started_ns)
            out.append(Entry(value, node, value))
            after = value
        return out

    def _after_value(self, parts: tuple[str, ...], value: str) -> datetime | None:
        rng = self._date_range((*parts, value))
        return rng[1] if rng else None

    # -- listing ------------------------------------------------------------------------
    def list_dir(self, node: Node, after: str | None, limit: int) -> list[Entry]:
        """At most *limit* entries of directory *node* following the cursor *after*."""
        k = node.kind
        if k is Kind.ROOT:
            names = [n for n in TOP if after is None or TOP.index(n) > TOP.index(after)]
            out = []
            for n in names[:limit]:
                child = self.lookup(node, n)
                assert child is not None
                out.append(Entry(n, child, n))
            return out
        if k is Kind.TOP:
            return self._list_top(node, after, limit)
        if k is Kind.GROUP:
            assert node.query is not None
            return self._list_query(node.path, node.query, after, limit)
        if k is Kind.DATES:
            return self._date_children(node.path[1:], after, limit)
        if k is Kind.ADIR:
            assert node.artifact is not None
            v = self.view(node.artifact)
            if v is None:
                raise NotFound(f"artifact {node.artifact} is no longer in the catalogue")
            sub = node.path[2:]
            entries = v.dirs.get("/".join(sub), {})
            names = sorted(n for n in entries if after is None or n > after)[:limit]
            return [Entry(n, v.node((*sub, n), entries[n]), n) for n in names]
        return []  # OUTBOX is listed by the outbox

    def _list_top(self, node: Node, after: str | None, limit: int) -> list[Entry]:
        top = node.path[0]
        if top in ("artifacts", "based-on"):
            items = self.catalogue.find(Query(limit=limit, after=after))
            out = []
            for md in items:
                if top == "artifacts":
                    child = Node(Kind.ADIR, ("artifacts", md["id"]),
                                 mtime_ns=_ns(id_time(md["id"])), artifact=md["id"],
                                 user=md["user"])
                else:
                    child = self._group(("based-on", md["id"]),
                                        Query(based_on=md["id"], limit=None))
                out.append(Entry(md["id"], child, md["id"]))
            return out
        if top in ("by-user", "by-tag"):
            field = "user" if top == "by-user" else "tag"
            values = self.catalogue.distinct(field, after=after, limit=limit)
            out = []
            for v in values:
                if field == "user":
                    q = Query(user=v, limit=None)
                else:
                    if "/" in v or v in (".", ".."):
                        continue  # not representable as a name (refused at save time)
                    q = Query(tags=(glob_escape(v),), limit=None)
                user = v if field == "user" else None
                out.append(Entry(v, self._group((top, v), q, user), v))
            return out
        if top == "by-date":
            return self._date_children((), after, limit)
        return []  # search/: any query can be looked up, none is listed

    def _list_query(self, path: tuple[str, ...], q: Query, after: str | None,
                    limit: int) -> list[Entry]:
        if q.limit is not None:
            # a search that names its own limit: that many at most, bounded by the user
            items = self.catalogue.find(q)
            if after is not None:
                ids = [md["id"] for md in items]
                items = items[ids.index(after) + 1:] if after in ids else []
            return [Entry(md["id"], self._link(path, md), md["id"]) for md in items[:limit]]
        items = self.catalogue.find(replace(q, limit=limit, after=after or q.after))
        return [Entry(md["id"], self._link(path, md), md["id"]) for md in items]

    # -- attributes beyond stat -----------------------------------------------------------
    def xattrs(self, node: Node) -> dict[str, bytes]:
        """``user.eio.*`` extended attributes: id, user, created on everything of an
        artifact; sha256 and url on its files."""
        if node.artifact is None:
            return {}
        out = {
            "user.eio.id": node.artifact.encode(),
            "user.eio.user": (node.user or "").encode(),
            "user.eio.created": id_time(node.artifact).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z").encode(),
        }
        if node.kind is Kind.AFILE:
            if node.sha256:
                out["user.eio.sha256"] = node.sha256.encode()
            if node.object:
                out["user.eio.url"] = self.lake.store.url_for(node.object).encode()
        return out


# -- inode numbers ------------------------------------------------------------------------------
class Inodes:
    """Inode numbers for the nodes the kernel holds, with their lookup counts.

    Every entry reply (lookup, each READDIRPLUS entry, create) takes one reference; the
    kernel returns them with ``forget``, and a node whose count reaches zero is dropped:
    the table's size follows the kernel's cache, not the lake. Numbers are never reused.
    """

    def __init__(self, root: Node) -> None:
        self._by_path: dict[tuple[str, ...], int] = {(): ROOT_INODE}
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._refs: dict[int, int] = {ROOT_INODE: 1}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[int]:
        return iter(self._nodes)

    def get(self, ino: int) -> Node:
        """The node of *ino*; ``NotFound`` if the kernel forgot it (a stale handle)."""
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is not known (forgotten)") from None

    def ino_of(self, path: tuple[str, ...]) -> int | None:
        return self._by_path.get(path)

    def ref(self, node: Node) -> int:
        """Take one kernel reference on *node* (allocating its inode); return the inode.

        If the path already has an inode, the known node is kept (so a size learned once,
        like metadata.yaml's, stays)."""
        ino = self._by_path.get(node.path)
        if ino is None:
            ino = self._next
            self._next += 1
            self._by_path[node.path] = ino
            self._nodes[ino] = node
            self._refs[ino] = 1
        else:
            self._refs[ino] += 1
        return ino

    def node_for(self, node: Node) -> Node:
        """The node already in the table for *node*'s path, else *node* itself."""
        ino = self._by_path.get(node.path)
        return self._nodes[ino] if ino is not None else node

    def forget(self, ino: int, count: int) -> None:
        if ino == ROOT_INODE or ino not in self._refs:
            return
        left = self._refs[ino] - count
        if left > 0:
            self._refs[ino] = left
            return
        node = self._nodes.pop(ino)
        del self._refs[ino]
        del self._by_path[node.path]


def check_integrity(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise IntegrityError(f"{what}: store returned {len(data)} bytes, expected {expected}")
