"""The PostgreSQL catalogue: for teams that run PostgreSQL already.

``ELLIPTIO_CATALOGUE=postgresql://user[:password]@host[:port]/database`` (or
``postgres://``; libpq's query parameters such as ``?sslmode=require`` pass through). A
password missing from the URL is found by libpq itself, as every libpq client finds it:
``PGPASSWORD``, then ``~/.pgpass`` (``PGPASSFILE``). The password is never shown:
:attr:`PostgresCatalogue.url` and every message carry the redacted URL, and a driver
message is scrubbed of it before it is quoted.

Connections come from one ``psycopg_pool.ConnectionPool`` (thread-safe; each call borrows
a connection for its statement or transaction), opened on first use — not in the
constructor, so a save whose catalogue is down still succeeds with ``catalogued=False``.
The first use also creates or migrates the schema (:mod:`.postgres_schema`). Connect and
pool-wait timeouts are short (:mod:`.postgres_url`): a dead or
unreachable server is a :class:`~elliptio.errors.CatalogueError` within seconds, never a
hang. Reads run in autocommit; a write is one transaction.

The first claim of an id wins, atomically, by the database and not by a read-then-write:

    INSERT INTO artifacts ... ON CONFLICT (id) DO UPDATE SET ...
        WHERE artifacts.prefix = EXCLUDED.prefix RETURNING id

An id nobody holds is inserted. An id held from the same prefix is updated (the same
artifact again: an idempotent upsert). An id held from another prefix is neither: the row
comes back from no ``RETURNING``, and that absence is the :class:`Conflict` (the held
prefix is then read; the row stays locked by the failed ``DO UPDATE`` until commit).
Two writers inserting one new id at once are serialised by the unique index: the second
waits for the first to commit and then takes the conflict branch, so exactly one of two
different prefixes wins. A batch is written in id order (two batches lock rows in the
same order: no deadlock between them), with one ``INSERT ... SELECT FROM unnest(...)``
for the artifacts and ``COPY`` for their files, tags and parents; the children of an
updated artifact are replaced in the same transaction, under that row's lock.

psycopg errors never leave this module: they become ``CatalogueError`` with one line
saying what failed (unreachable server, wrong credentials, missing database, a server
that died during the call, a missing ``pg_trgm``). Nothing here retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..errors import CatalogueError, ConfigError
from ..query import Query
from ..query.sql_postgres import compile_postgres, escape_like, pg_text
from ..redact import redact_url
from .base import Catalogue, Conflict, IndexFields, holds_own, index_fields, paged_ids
from .postgres_errors import quiet_pool_log, scrub, translate
from .postgres_schema import COUNT_SHARDS, migrate
from .postgres_url import (CONNECT_TIMEOUT, POOL_TIMEOUT, STATEMENT_TIMEOUT,
                           connection_info)

#: connections kept at most (the mount daemon and a web server share one catalogue)
MAX_CONNECTIONS = 16

#: a connection's own staging table for the artifacts of a batch (COPY fills it: the
#: fastest way in, and no text-array quoting of megabytes of metadata). Made by the
#: transaction that uses it if its connection lacks it, so nothing of a session is relied
#: on (PgBouncer's transaction pooling hands each transaction any server connection)
_STAGING = ('CREATE TEMPORARY TABLE IF NOT EXISTS eio_claim'
            ' (LIKE artifacts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS')
_COLUMNS = 'id, "user", created, type, prefix, text, info, metadata'
_UPSERT = f"""
INSERT INTO artifacts ({_COLUMNS})
SELECT {_COLUMNS} FROM eio_claim ORDER BY id
ON CONFLICT (id) DO UPDATE SET
    "user" = EXCLUDED."user", created = EXCLUDED.created, type = EXCLUDED.type,
    text = EXCLUDED.text, info = EXCLUDED.info, metadata = EXCLUDED.metadata
WHERE artifacts.prefix = EXCLUDED.prefix
RETURNING id, (xmax = 0) AS inserted
"""
# (xmax = 0: the row is new, so it has no children to replace; ORDER BY id: two batches
# take their row locks in the same order)

#: a writing transaction's new artifacts, added to its shard of the count (last, so the
#: row is locked only until the commit)
_COUNT = ("INSERT INTO artifact_count (shard, n) VALUES (pg_backend_pid() %% %s, %s)"
          " ON CONFLICT (shard) DO UPDATE SET n = artifact_count.n + EXCLUDED.n")

_CHILDREN = (("files", "artifact", "artifact, path, name, size, sha256, object"),
             ("tags", "artifact", "artifact, tag"),
             ("based_on", "child", "child, parent"))


def _child_rows(f: IndexFields) -> tuple[list[tuple[Any, ...]], ...]:
    # the type is one of the tags: a row of its own (postgres_schema, version 3)
    tags = dict.fromkeys(pg_text(t) for t in (*f.tags, *([f.type] if f.type else [])))
    return ([(f.id, pg_text(p), pg_text(n), size, sha, pg_text(obj))
             for p, n, size, sha, obj in f.files],
            [(f.id, t) for t in tags],
            [(f.id, p) for p in f.based_on])


def _info_json(f: IndexFields) -> str:
    info: dict[str, list[str]] = {}
    for key, value in f.info:
        info.setdefault(pg_text(key), []).append(pg_text(value))
    return json.dumps(info, ensure_ascii=False)


class PostgresCatalogue(Catalogue):
    """See the module docstring."""

    def __init__(self, url: str, *, max_connections: int = MAX_CONNECTIONS,
                 pool_timeout: float = POOL_TIMEOUT,
                 connect_timeout: int = CONNECT_TIMEOUT,
                 statement_timeout: float = STATEMENT_TIMEOUT) -> None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ConfigError("a postgresql:// catalogue needs psycopg: pip install "
                              "'elliptio[postgresql]'") from exc
        self.url = redact_url(url)
        self._conninfo, self._secrets = connection_info(url, self.url, connect_timeout,
                                                        statement_timeout)
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self._pool: Any = None
        self._migrated = False
        #: the last call lost its connection or waited for one in vain
        self._lost = False
        self._lock = threading.Lock()

    # -- the edge: every call of psycopg goes through here -------------------------------
    def _open_pool(self) -> Any:
        with self._lock:
            if self._pool is not None:
                return self._pool
            import psycopg
            from psycopg_pool import ConnectionPool

            if not self._migrated:
                # the schema on a connection of its own: its errors are the real reason
                # (refused, wrong password, no database), not a pool timeout
                try:
                    with psycopg.connect(self._conninfo, autocommit=True) as conn:
                        migrate(conn, self.url)
                except psycopg.Error as exc:
                    raise self._translate(exc, "open") from exc
                self._migrated = True
            pool = ConnectionPool(
                self._conninfo, min_size=1, max_size=self.max_connections,
                timeout=self.pool_timeout, open=False, name="elliptio-catalogue",
                kwargs={"autocommit": True, "prepare_threshold": None},
                # a connection that died (server restarted) is replaced before use
                check=ConnectionPool.check_connection,
            )
            quiet_pool_log()
            pool.open(wait=False)
            self._pool = pool
            return pool

    @contextmanager
    def _conn(self, what: str) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self._open_pool()
        if self._lost:
            # the last call lost its connection or got none: one direct attempt says at
            # once whether waiting for the pool makes sense, so while the server is down
            # each call costs a refused connect, not the pool's timeout
            problem = self._diagnose()
            if problem is not None:
                raise problem
            self._lost = False
        try:
            with pool.connection() as conn:
                yield conn
        except CatalogueError:
            raise
        except PoolTimeout as exc:
            self._lost = True
            raise self._unavailable(what) from exc
        except psycopg.OperationalError as exc:
            # a cancelled statement is the server answering, not the connection lost
            self._lost = not isinstance(exc, psycopg.errors.QueryCanceled)
            raise self._translate(exc, what) from exc
        except psycopg.Error as exc:
            raise self._translate(exc, what) from exc
        except UnicodeEncodeError as exc:  # a lone surrogate in hand-written metadata
            raise CatalogueError(f"catalogue {self.url}: {what} failed: {exc}") from exc

    def _rows(self, what: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn(what) as conn:
            return conn.execute(sql, list(params)).fetchall()  # type: ignore[no-any-return]

    def _scrub(self, message: str, *secrets: str) -> str:
        return scrub(message, [*secrets, *getattr(self, "_secrets", [])])

    def _translate(self, exc: Exception, what: str) -> CatalogueError:
        return translate(exc, what, self.url, self._secrets)

    def _diagnose(self) -> CatalogueError | None:
        """Why no connection can be made, from one direct attempt (the pool's own
        attempts happen in its threads and their errors stay there); None if one can."""
        import psycopg

        try:
            with psycopg.connect(self._conninfo, connect_timeout=2):
                return None
        except psycopg.Error as exc:
            return self._translate(exc, "open")

    def _unavailable(self, what: str) -> CatalogueError:
        """A pooled connection did not come in time: say why."""
        problem = self._diagnose()
        if problem is not None:
            return problem
        return CatalogueError(
            f"PostgreSQL catalogue {self.url}: no pooled connection within "
            f"{self.pool_timeout:g}s for {what}, though the server answers now: the pool "
            f"is reconnecting after an outage, or all {self.max_connections} connections "
            "are busy; try again")

    # -- writing -------------------------------------------------------------------------
    def claim_many(self, items: Iterable[Mapping[str, Any]]) -> tuple[int, list[Conflict]]:
        entries = [(index_fields(md), md) for md in items]
        if not entries:
            return 0, []
        first: dict[str, str] = {}  # id -> prefix of its first claim in this batch
        for f, _md in entries:
            first.setdefault(f.id, f.prefix)
        with self._conn("upsert") as conn, conn.transaction():
            won, added = self._write(conn, {f.id: (f, md) for f, md in entries
                                            if f.prefix == first[f.id]})
            lost = sorted(set(first) - won)
            held: dict[str, str] = {}
            if lost:
                held = dict(conn.execute("SELECT id, prefix FROM artifacts WHERE id = ANY(%s)",
                                         (lost,)).fetchall())
                # held from a prefix claimed later in this batch: the same artifact again
                again = {f.id: (f, md) for f, md in entries if held.get(f.id) == f.prefix}
                if again:
                    won_again, added_again = self._write(conn, again, again=True)
                    won |= won_again
                    added += added_again
            if added:
                conn.execute(_COUNT, (COUNT_SHARDS, added))
        conflicts = [Conflict(f.id, held[f.id], f.prefix) if f.id in held
                     else Conflict(f.id, first[f.id], f.prefix)
                     for f, _md in entries if f.prefix != held.get(f.id, first[f.id])]
        return len(entries) - len(conflicts), conflicts

    def _write(self, conn: Any, rows: Mapping[str, tuple[IndexFields, Mapping[str, Any]]],
               again: bool = False) -> tuple[set[str], int]:
        """Upsert *rows* (id -> fields, metadata) unless their id is held from another
        prefix; replace the children of those written. Returns the ids written and how
        many of them are new. *again*: the second write of this transaction (the staging
        table still holds the first)."""
        ids = sorted(rows)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM eio_claim" if again else _STAGING)
            with cur.copy(f"COPY eio_claim ({_COLUMNS}) FROM STDIN") as copy:
                for i in ids:
                    f, md = rows[i]
                    copy.write_row((
                        f.id, pg_text(f.user), f.created,
                        pg_text(f.type) if f.type is not None else None, f.prefix,
                        pg_text(f.text), _info_json(f),
                        json.dumps(md, ensure_ascii=False, default=str)))
        result = conn.execute(_UPSERT).fetchall()
        written = {r[0] for r in result}
        updated = sorted(r[0] for r in result if not r[1])
        if updated:
            for table, key, _cols in _CHILDREN:
                conn.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", (updated,))
        children: tuple[list[tuple[Any, ...]], ...] = ([], [], [])
        for i in ids:
            if i in written:
                for acc, part in zip(children, _child_rows(rows[i][0])):
                    acc.extend(part)
        with conn.cursor() as cur:
            for (table, _key, cols), part in zip(_CHILDREN, children):
                if part:
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in part:
                            copy.write_row(row)
        return written, len(result) - len(updated)

    # -- reading -------------------------------------------------------------------------
    def get(self, artifact_id: str) -> dict[str, Any] | None:
        rows = self._rows("get", "SELECT metadata FROM artifacts WHERE id = %s",
                          [pg_text(artifact_id)])
        return json.loads(rows[0][0]) if rows else None

    def find(self, query: Query) -> list[dict[str, Any]]:
        sql, params = compile_postgres(query)
        return [json.loads(md) for _id, md in self._rows("search", sql, params)]

    def count(self, query: Query, at_most: int | None = None) -> int:
        everything = Query()
        if replace(query, limit=everything.limit, after=None, order=everything.order,
                   transitive=everything.transitive, depth=everything.depth) == everything:
            # no condition: the sharded count (postgres_schema), not a scan of every id
            n = int(self._rows("count", "SELECT coalesce(sum(n), 0) FROM artifact_count")
                    [0][0])
            return n if at_most is None else min(n, at_most)
        sql, params = compile_postgres(query, count=True, at_most=at_most)
        return int(self._rows("count", sql, params)[0][0])

    def existing(self, ids: Iterable[str]) -> set[str]:
        wanted = [pg_text(i) for i in ids]
        found: set[str] = set()
        for i in range(0, len(wanted), 5000):
            rows = self._rows("lookup", "SELECT id FROM artifacts WHERE id = ANY(%s)",
                              [wanted[i:i + 5000]])
            found.update(r[0] for r in rows)
        return found

    def all_ids(self) -> Iterator[str]:
        return paged_ids(lambda after, size: [r[0] for r in self._rows(
            "listing", "SELECT id FROM artifacts WHERE id > %s ORDER BY id LIMIT %s",
            [after, size])])

    def holds_object(self, artifact_id: str, obj: str, sha256: str, size: int
                     ) -> bool | None:
        rows = self._rows(
            "lookup",
            "SELECT a.prefix, f.path FROM artifacts a LEFT JOIN files f ON f.artifact = a.id"
            " AND f.object = %s AND f.sha256 = %s AND f.size = %s WHERE a.id = %s",
            [pg_text(obj), pg_text(sha256), size, pg_text(artifact_id)])
        return holds_own(rows, pg_text(obj)) if rows else None

    def find_objects(self, sha256: str, size: int, limit: int = 4) -> list[str]:
        rows = self._rows(
            "dedup lookup",
            "SELECT object FROM files WHERE sha256 = %s AND size = %s GROUP BY object"
            " ORDER BY min(artifact) LIMIT %s", [pg_text(sha256), size, limit])
        return [r[0] for r in rows]

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        rows = self._rows("lookup", "SELECT id FROM artifacts WHERE id LIKE %s"
                          " ORDER BY id LIMIT %s",
                          [escape_like(pg_text(prefix)) + "%", limit])
        return [r[0] for r in rows]

    def distinct(self, field: str, prefix: str | None = None, limit: int = 1000,
                 after: str | None = None) -> list[str]:
        # the type is one of the tags, and a row of ``tags`` (postgres_schema, version 3).
        # The column is walked as a loose index scan (one b-tree probe per distinct
        # value), so a page costs *limit* probes whatever the number of rows
        sources = {"user": [("artifacts", '"user"')], "type": [("artifacts", "type")],
                   "tag": [("tags", "tag")]}[field]
        found: set[str] = set()
        for table, col in sources:
            start, params = (f"{col} >= %s", [""]) if after is None else \
                (f"{col} > %s", [pg_text(after)])
            also, also_params = "", []
            if prefix:
                also, also_params = f" AND {col} LIKE %s", [escape_like(pg_text(prefix)) + "%"]
            step = f"SELECT {col} FROM {table} WHERE {{}}{also} ORDER BY {col} LIMIT 1"
            sql = (f"WITH RECURSIVE v(val) AS (({step.format(start)}) UNION ALL"
                   f" SELECT ({step.format(f'{col} > v.val')}) FROM v"
                   " WHERE v.val IS NOT NULL)"
                   " SELECT val FROM v WHERE val IS NOT NULL LIMIT %s")
            found.update(r[0] for r in self._rows(
                "listing", sql, params + also_params + also_params + [limit]))
        return sorted(found)[:limit]

    def check(self) -> str:
        rows = self._rows("check", "SELECT (SELECT max(version) FROM schema), version()")
        server = str(rows[0][1]).split(" on ")[0]
        return f"PostgreSQL catalogue at {self.url} (schema version {rows[0][0]}, {server})"

    def close(self) -> None:
        """Close the pool's connections and threads; a later call opens a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
