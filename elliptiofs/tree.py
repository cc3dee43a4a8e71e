"""The virtual tree of the mount as plain Python: path -> node, and directory listings.

Nothing here imports pyfuse3; :mod:`elliptiofs.ops` translates FUSE calls into calls on
:class:`Tree`. The nodes are :mod:`elliptiofs.nodes`'; one artifact's file tree and the
caches of them are :mod:`elliptiofs.views`'. The layout (docs/mount.md, "Layout")::

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
not grow with the lake. The inode table (:mod:`elliptiofs.inodes`) holds only nodes the
kernel references (lookup counts, released by ``forget``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from elliptio import Lake
from elliptio.config import USER_RE
from elliptio.errors import NotFound
from elliptio.ids import ID_RE, id_time
from elliptio.query import Query

from .nodes import TOP, Entry, Kind, Node, to_ns
from .views import LRU, ArtifactView

#: artifacts whose parsed file tree is kept (lookups inside one artifact come in bursts;
#: a scan's read-ahead puts the next window's there, up to 64: see same_file_after)
VIEW_CACHE = 128
#: metadata.yaml contents kept in memory (small; read from the store once)
METADATA_CACHE = 256


def glob_escape(text: str) -> str:
    """*text* as a glob that matches only itself (tags may hold ``*``, ``?``, ``[``)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


# -- the tree ---------------------------------------------------------------------------------
class Tree:
    """The mount's namespace over one :class:`~elliptio.Lake`."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.started_ns = to_ns(datetime.now(UTC))
        self._views = LRU(VIEW_CACHE)
        self._metadata = LRU(METADATA_CACHE)

    @property
    def catalogue(self) -> Any:
        return self.lake.catalogue

    def root(self) -> Node:
        return Node(Kind.ROOT, (), mtime_ns=self.started_ns)

    # -- artifacts --------------------------------------------------------------------
    def view(self, artifact_id: str) -> ArtifactView | None:
        """The parsed file tree of *artifact_id*, or None if the catalogue does not know it."""
        if not ID_RE.fullmatch(artifact_id):
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
        child = (top, name)
        if top == "artifacts":
            v = self.view(name)
            return v.node((), None) if v else None
        if top == "by-user":
            if not USER_RE.fullmatch(name) or not self._exists(Query(user=name, limit=1)):
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
        if not ID_RE.fullmatch(name):
            return None
        found = self.catalogue.find(replace(q, ids=(name,), limit=1, after=None))
        return self._link(parent.path, found[0]) if found else None

    def _link(self, parent_path: tuple[str, ...], md: Mapping[str, Any]) -> Node:
        aid = md["id"]
        return Node(Kind.LINK, (*parent_path, aid), mtime_ns=to_ns(id_time(aid)),
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
                                 mtime_ns=to_ns(id_time(md["id"])), artifact=md["id"],
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

