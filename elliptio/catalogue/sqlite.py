"""The SQLite catalogue: the embedded default. Zero set-up, WAL mode, one file.

One connection per thread (sqlite3 objects must not cross threads), each closed when its
thread ends or when the catalogue closes (:class:`~elliptio.connections.PerThread`); writers
wait up to
``BUSY_TIMEOUT`` seconds for a lock held by another process, then fail with a clear
:class:`~elliptio.errors.CatalogueError`. The schema is created by :func:`create_tables`
and its version checked on every open; a version-1 file (before the search index) is
migrated then, once (:mod:`.sqlite_search` builds the index from the rows).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlparse

from ..connections import PerThread, open_wal
from ..errors import CatalogueError, ConfigError
from ..query import Query, id_floor, is_glob
from ..query.sql import CANDIDATES, SQLiteCompiler
from ..query.trigrams import match_expression
from ..redact import redact_url
from . import sqlite_search as search
from .base import Catalogue, Conflict, holds_own, index_fields, paged_ids

#: 1: the tables; 2: and the trigram search index (:mod:`.sqlite_search`)
SCHEMA_VERSION = 2
BUSY_TIMEOUT = 10.0
#: page cache per connection, KiB
CACHE_KIB = 256 * 1024


def create_tables(db: sqlite3.Connection) -> None:
    """The tables, as version 1 made them; :func:`upgrade` adds what later versions do
    (2: the search index), on a new file as on an old one. Every query field has an index;
    ids are ULID-like, so the primary key orders by creation time and doubles as the time
    index."""
    db.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS artifacts (
            id       TEXT PRIMARY KEY,  -- artifact id (time-ordered); sort and keyset key
            user     TEXT NOT NULL,     -- who saved it (store layout segment)
            created  TEXT NOT NULL,     -- ISO-8601 UTC creation time, for display
            type     TEXT,              -- info.type, the most common filter
            prefix   TEXT NOT NULL,     -- store key prefix YYYY/MM/DD/<user>/<id>
            text     TEXT NOT NULL,     -- lower-cased words for free-text search
            metadata TEXT NOT NULL      -- metadata.yaml as JSON, verbatim
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS artifacts_user ON artifacts(user, id);
        CREATE INDEX IF NOT EXISTS artifacts_type ON artifacts(type, id);

        CREATE TABLE IF NOT EXISTS files (
            artifact TEXT NOT NULL,     -- artifacts.id
            path     TEXT NOT NULL,     -- relative path inside the artifact
            name     TEXT NOT NULL,     -- last component of path (file globs without '/')
            size     INTEGER NOT NULL,  -- bytes
            sha256   TEXT NOT NULL,     -- hex digest of the content
            object   TEXT NOT NULL,     -- store key of the bytes (another artifact's if dedup)
            PRIMARY KEY (artifact, path)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS files_name ON files(name, artifact);
        CREATE INDEX IF NOT EXISTS files_sha ON files(sha256, size);

        CREATE TABLE IF NOT EXISTS tags (
            artifact TEXT NOT NULL,     -- artifacts.id
            tag      TEXT NOT NULL,     -- one tag as saved (queries match artifacts.type too)
            PRIMARY KEY (artifact, tag)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag, artifact);

        CREATE TABLE IF NOT EXISTS info (
            artifact TEXT NOT NULL,     -- artifacts.id
            key      TEXT NOT NULL,     -- dotted path of a leaf of info
            value    TEXT NOT NULL,     -- canonical JSON of the leaf value
            PRIMARY KEY (artifact, key, value)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS info_kv ON info(key, value, artifact);

        CREATE TABLE IF NOT EXISTS based_on (
            child  TEXT NOT NULL,       -- artifacts.id of the newer artifact
            parent TEXT NOT NULL,       -- an id it was based on (may be absent from this catalogue)
            PRIMARY KEY (child, parent)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS based_on_parent ON based_on(parent, child);

        CREATE TABLE IF NOT EXISTS schema (
            version INTEGER NOT NULL    -- 1 as created; SCHEMA_VERSION once upgraded
        );
        INSERT INTO schema(version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema);
        """
    )


def upgrade(db: sqlite3.Connection, path: str) -> None:
    """Bring a version-1 file to :data:`SCHEMA_VERSION` in one transaction: 2 adds the
    search index (:mod:`.sqlite_search`), built from the rows. A reader meanwhile sees
    version 1 and waits; an interrupted build leaves version 1, to be built again."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        if _version(db) != 1:  # another process upgraded it while this one waited
            return
        db.execute(search.DDL)
        search.build(db, path)
        db.execute("UPDATE schema SET version = ?", (SCHEMA_VERSION,))


def _version(db: sqlite3.Connection) -> int | None:
    row = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema'"
    ).fetchone()
    if row is None:
        return None
    v = db.execute("SELECT version FROM schema").fetchone()
    return v[0] if v else None


def _path_of(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ConfigError(f"not an SQLite URL: {redact_url(url)}")
    path = unquote(url[len("sqlite://"):])
    if path in ("/:memory:", ":memory:"):
        return ":memory:"
    if not path.startswith("/"):
        raise ConfigError("SQLite catalogue path must be absolute (sqlite:////abs/path): "
                          f"{redact_url(url)}")
    return path


class SQLiteCatalogue(Catalogue):
    """See the module docstring."""

    def __init__(self, url: str, *, cache_kib: int = CACHE_KIB) -> None:
        self.url = url
        self.cache_kib = cache_kib
        self.path = _path_of(url)
        self._connections = PerThread(self._connect, f"SQLite catalogue {self.path}")
        self._memory: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._db()  # open now: a bad path or corrupt file is reported at once

    def _db(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            with self._lock:
                if self._memory is None:
                    self._memory = sqlite3.connect(":memory:", check_same_thread=False)
                    create_tables(self._memory)
                    upgrade(self._memory, self.path)
                return self._memory
        return self._connections.get()

    def _connect(self) -> sqlite3.Connection:
        try:
            return open_wal(self.path, BUSY_TIMEOUT, self._set_up)
        except sqlite3.Error as exc:
            raise self._translate(exc, "open") from exc
        except OSError as exc:
            raise CatalogueError(f"cannot open catalogue {self.path}: {exc.strerror}") from exc

    def _set_up(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA foreign_keys=OFF")
        # the default 2 MB page cache thrashes on the secondary indexes of a large
        # catalogue (bulk reindex slowed 4x by 250k artifacts); pages are allocated
        # only as used
        db.execute(f"PRAGMA cache_size=-{int(self.cache_kib)}")
        version = _version(db)
        if version is None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                create_tables(db)
            version = 1
        if version == 1:
            upgrade(db, self.path)
        elif version != SCHEMA_VERSION:
            raise CatalogueError(
                f"catalogue {self.path} has schema version {version}, this ElliptIO "
                f"needs {SCHEMA_VERSION}: rebuild it with `eio reindex` into a new file"
            )

    def _translate(self, exc: sqlite3.Error, what: str) -> CatalogueError:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            return CatalogueError(
                f"catalogue {self.path} is locked by another process (waited "
                f"{BUSY_TIMEOUT:.0f}s during {what})"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in msg or "malformed" in msg or "corrupt" in msg
        ):
            return CatalogueError(
                f"catalogue {self.path} is corrupt ({msg}); move it aside and rebuild it "
                "from the store with `eio reindex`"
            )
        return CatalogueError(f"catalogue {self.path}: {what} failed: {msg}")

    # -- writing -------------------------------------------------------------------------
    def _insert(self, db: sqlite3.Connection, md: Mapping[str, Any]) -> Conflict | None:
        f = index_fields(md)
        try:
            bucket = search.Bucket(f.id)
        except ValueError as exc:
            raise CatalogueError(f"catalogue {self.path}: {exc}") from None
        # the artifacts sharing the id's search document (almost always none or itself)
        members = dict(db.execute("SELECT id, prefix FROM artifacts WHERE id >= ? AND id < ?",
                                  (bucket.lo, bucket.hi)).fetchall())
        held = members.get(f.id)
        if held is not None and held != f.prefix:
            return Conflict(f.id, held, f.prefix)
        if members:  # the document as the rows make it still, before they change
            search.forget(db, bucket)
        for table, col in (("files", "artifact"), ("tags", "artifact"), ("info", "artifact"),
                           ("based_on", "child")):
            db.execute(f"DELETE FROM {table} WHERE {col} = ?", (f.id,))
        db.execute(
            "INSERT OR REPLACE INTO artifacts(id, user, created, type, prefix, text, metadata)"
            " VALUES (?,?,?,?,?,?,?)",
            (f.id, f.user, f.created, f.type, f.prefix, f.text,
             json.dumps(md, ensure_ascii=False, default=str)),
        )
        db.executemany(
            "INSERT INTO files(artifact, path, name, size, sha256, object) VALUES (?,?,?,?,?,?)",
            [(f.id, *row) for row in f.files],
        )
        db.executemany("INSERT INTO tags(artifact, tag) VALUES (?,?)",
                       [(f.id, t) for t in f.tags])
        db.executemany("INSERT INTO info(artifact, key, value) VALUES (?,?,?)",
                       [(f.id, k, v) for k, v in f.info])
        db.executemany("INSERT INTO based_on(child, parent) VALUES (?,?)",
                       [(f.id, p) for p in f.based_on])
        if members.keys() - {f.id}:
            search.add(db, bucket)
        else:
            search.add_one(db, bucket, f)
        return None

    def claim_many(self, items: Iterable[Mapping[str, Any]]) -> tuple[int, list[Conflict]]:
        items = list(items)
        conflicts: list[Conflict] = []
        db = self._db()
        try:
            with self._lock if self._memory is not None else contextlib.nullcontext():
                # IMMEDIATE: the check of who holds an id and the write are one step
                db.execute("BEGIN IMMEDIATE")
                try:
                    for md in items:
                        c = self._insert(db, md)
                        if c is not None:
                            conflicts.append(c)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._translate(exc, "upsert") from exc
        return len(items) - len(conflicts), conflicts

    # -- reading -------------------------------------------------------------------------
    def _rows(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, list(params)).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc, "query") from exc

    def get(self, artifact_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT metadata FROM artifacts WHERE id = ?", [artifact_id])
        return json.loads(rows[0][0]) if rows else None

    def find(self, query: Query) -> list[dict[str, Any]]:
        return [json.loads(md) for _id, md in self._answer(query, count=False)]

    def count(self, query: Query, at_most: int | None = None) -> int:
        return self._answer(query, count=True, at_most=at_most)

    def _answer(self, q: Query, *, count: bool, at_most: int | None = None) -> Any:
        """The rows (or the count) of *q*: narrowed by the search index when a glob or the
        text gives it trigrams and the index finds few enough candidates (unless a rare
        user makes the plain statement cheaper); else the plain statement
        (:mod:`.sqlite_search` says when)."""
        compiler = SQLiteCompiler(q, count=count, at_most=at_most, search=True)
        sql, params = compiler.compile()
        if compiler.trigrams:
            if not self._few_of_user(q):
                lo, hi = search.bounds(
                    None if q.since is None else id_floor(q.since),
                    None if q.until is None else id_floor(q.until),
                    q.after, q.order == "newest")
                try:
                    found = search.find(
                        self._db(), sql, params, params.index(CANDIDATES),
                        match_expression(compiler.trigrams), lo=lo, hi=hi,
                        newest=q.order == "newest", limit=at_most if count else q.limit,
                        count=count)
                except sqlite3.Error as exc:
                    raise self._translate(exc, "query") from exc
                if found is not None:
                    return found
            sql, params = SQLiteCompiler(q, count=count, at_most=at_most).compile()
        rows = self._rows(sql, params)
        return rows[0][0] if count else rows

    def _few_of_user(self, q: Query) -> bool:
        """Whether *q* names one user with fewer than :data:`.sqlite_search.BUDGET`
        artifacts in its time range: the plain statement walks just those (by the
        ``artifacts_user`` index), cheaper than the search index's candidates when the
        user is rare and the patterns common."""
        if q.user is None or is_glob(q.user):
            return False
        rows = self._rows(
            "SELECT count(*) FROM (SELECT 1 FROM artifacts WHERE user = ? AND id >= ?"
            " AND id < ? LIMIT ?)",
            [q.user, "" if q.since is None else id_floor(q.since),
             "~" if q.until is None else id_floor(q.until), search.BUDGET])
        return rows[0][0] < search.BUDGET

    def existing(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows = self._rows(
                f"SELECT id FROM artifacts WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def all_ids(self) -> Iterator[str]:
        return paged_ids(lambda after, size: [r[0] for r in self._rows(
            "SELECT id FROM artifacts WHERE id > ? ORDER BY id LIMIT ?", [after, size])])

    def holds_object(self, artifact_id: str, obj: str, sha256: str, size: int
                     ) -> bool | None:
        rows = self._rows(
            "SELECT a.prefix, f.path FROM artifacts a LEFT JOIN files f ON f.artifact = a.id"
            " AND f.object = ? AND f.sha256 = ? AND f.size = ? WHERE a.id = ?",
            [obj, sha256, size, artifact_id])
        return holds_own(rows, obj) if rows else None

    def find_objects(self, sha256: str, size: int, limit: int = 4) -> list[str]:
        rows = self._rows(
            "SELECT object FROM files WHERE sha256 = ? AND size = ? GROUP BY object"
            " ORDER BY MIN(artifact) LIMIT ?", [sha256, size, limit])
        return [r[0] for r in rows]

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        rows = self._rows(
            "SELECT id FROM artifacts WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            [prefix, prefix + "\uffff", limit],
        )
        return [r[0] for r in rows]

    def distinct(self, field: str, prefix: str | None = None, limit: int = 1000,
                 after: str | None = None) -> list[str]:
        # the type is one of the tags (elliptio.query): "tag" is the union of both
        # columns; a compound SELECT with ORDER BY merges the two index walks, so a
        # page stops after *limit* values
        sources = {"user": [("artifacts", "user")], "type": [("artifacts", "type")],
                   "tag": [("tags", "tag"), ("artifacts", "type")]}[field]
        selects, params = [], []
        for table, col in sources:
            where = [f"{col} IS NOT NULL"]
            if after is not None:
                where.append(f"{col} > ?")
                params.append(after)
            if prefix:
                where.append(f"{col} >= ? AND {col} < ?")
                params += [prefix, prefix + "\uffff"]
            selects.append(f"SELECT DISTINCT {col} FROM {table} WHERE {' AND '.join(where)}")
        rows = self._rows(" UNION ".join(selects) + " ORDER BY 1 LIMIT ?", params + [limit])
        return [r[0] for r in rows]

    def check(self) -> str:
        self._rows("SELECT count(*) FROM schema", [])
        return f"SQLite catalogue at {self.path}"

    def close(self) -> None:
        """Close every thread's connection (an in-memory catalogue is gone then); a later
        call opens a new one."""
        self._connections.close()
        with self._lock:
            memory, self._memory = self._memory, None
        if memory is not None:
            memory.close()
