"""The catalogue backends bench_catalogue.py compares, each behind the catalogue's public
interface (``open_catalogue``, ``claim_many``, ``find``, ``count``) plus what only a
benchmark asks of the database itself: statistics after a bulk load, its size on disk,
a few rows of raw SQL to pick query arguments, and the plan of a query that missed.

Loaded corpora are kept between runs under the cache directory, keyed by N, the seed,
the backend's schema version and the corpus version: SQLite's as a file, PostgreSQL's as
a database of a cluster kept there too (its password beside it), run by
``tests.fixtures.postgres.PostgresServer`` — started by the benchmark, stopped by its PID.
A marker beside each records the clock the corpus was generated with, how long its load
took and the fingerprint of its schema (tables, columns, indexes, triggers); a corpus is
reused only when that is the schema this code creates in an empty catalogue (a schema
changed without a version bump is loaded again), and a load that did not finish, having
no marker, is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import elliptio
from elliptio.catalogue import Catalogue, open_catalogue
from elliptio.query import Query

from bench.catalogue_corpus_gen import CORPUS_VERSION


def cache_key(n: int, seed: int, schema: int) -> str:
    return f"{n}-{seed}-s{schema}-c{CORPUS_VERSION}"


def fingerprint(rows: list[tuple[Any, ...]]) -> str:
    """A short digest of a database's schema (its tables, columns, indexes, triggers), to
    compare a cached corpus with what this code creates in an empty catalogue."""
    return hashlib.sha256(json.dumps(sorted(map(list, rows)), default=str).encode()
                          ).hexdigest()[:16]


class NotCached(Exception):
    """A corpus that would have to be loaded, where the caller said it may not be."""


class Backend:
    """One loaded (or to-be-loaded) corpus on one kind of catalogue."""

    name: str
    catalogue: Catalogue
    #: True when the corpus must still be loaded into :attr:`catalogue`
    needs_load = True
    load_seconds: float | None = None
    meta: dict[str, Any]
    marker: Path

    #: :func:`fingerprint` of the schema this code creates
    schema_print = ""

    def _cached(self, held: str) -> bool:
        """Whether the corpus held, of schema fingerprint *held*, can be reused: its load
        finished (the marker) and its schema is the one this code makes."""
        meta = json.loads(self.marker.read_text()) if self.marker.exists() else {}
        if meta and meta.get("schema") == held == self.schema_print:
            self.meta, self.needs_load, self.load_seconds = meta, False, meta["load_seconds"]
        else:
            self.meta, self.needs_load = {}, True
        return not self.needs_load

    def loaded(self, now_ms: int, seed: int, seconds: float) -> None:
        """Record a finished load: later runs with the same key reuse it."""
        self.load_seconds = seconds
        self.meta = {"now_ms": now_ms, "seed": seed, "load_seconds": seconds,
                     "schema": self.schema_print}
        self.marker.write_text(json.dumps(self.meta))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def analyze(self) -> float:
        """Statistics for the planner after the load; seconds it took."""
        raise NotImplementedError

    def size(self) -> tuple[int, str]:
        """(bytes the catalogue takes, what was measured)."""
        raise NotImplementedError

    def plan(self, query: Query, count: bool) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """The schema version the loaded catalogue records, and the settings that weigh."""
        return f"schema {self.rows('SELECT max(version) FROM schema')[0][0]}"

    def close(self) -> None:
        self.catalogue.close()


class SQLiteBackend(Backend):
    name = "SQLite"

    def __init__(self, cache_dir: Path, n: int, seed: int, may_load: bool = True) -> None:
        from elliptio.catalogue.sqlite import SCHEMA_VERSION

        cache_dir.mkdir(parents=True, exist_ok=True)
        stem = f"catalogue-{cache_key(n, seed, SCHEMA_VERSION)}"
        self.path = cache_dir / f"{stem}.sqlite"
        self.marker = cache_dir / f"{stem}.json"
        empty = cache_dir / f"empty-{os.getpid()}.sqlite"
        try:
            open_catalogue(f"sqlite:///{empty}").close()
            self.schema_print = self._schema(empty)
        finally:
            for p in cache_dir.glob(f"{empty.name}*"):
                p.unlink()
        if not (self.path.exists() and self._cached(self._schema(self.path))):
            if not may_load:
                raise NotCached(f"{self.path} is not a finished load of this schema")
            # a partial load, or files of this N from another schema or corpus
            for p in cache_dir.glob(f"catalogue-{n}-*"):
                p.unlink()
        self.catalogue = open_catalogue(f"sqlite:///{self.path}")

    @staticmethod
    def _schema(path: Path) -> str:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return fingerprint(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                          " WHERE name NOT LIKE 'sqlite%'").fetchall())

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            return db.execute(sql, list(params)).fetchall()

    def analyze(self) -> float:
        t = time.perf_counter()
        self.rows("ANALYZE")
        return time.perf_counter() - t

    def describe(self) -> str:
        mode = self.rows("PRAGMA journal_mode")[0][0]
        return f"{super().describe()}; journal_mode={mode}, synchronous=NORMAL (the catalogue's)"

    def size(self) -> tuple[int, str]:
        main = self.path.stat().st_size
        wal = Path(f"{self.path}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        return main + wal_size, f"file {main / 2**20:,.0f} MiB + WAL {wal_size / 2**20:,.0f} MiB"

    def plan(self, query: Query, count: bool) -> str:
        """As the catalogue answers (``SQLiteCatalogue._answer``): with trigrams, the
        search index's candidates and the statement run on each chunk of them, and the
        plain statement it falls back to past the index's budget; else the plain one."""
        from elliptio.catalogue import sqlite_search
        from elliptio.query.sql import CANDIDATES, SQLiteCompiler
        from elliptio.query.trigrams import match_expression

        out = []
        compiler = SQLiteCompiler(query, count=count, search=True)
        sql, params = compiler.compile()
        if compiler.trigrams:
            match = match_expression(compiler.trigrams)
            (buckets,), = self.rows("SELECT count(*) FROM search WHERE search MATCH ?", [match])
            out += [f"search index: MATCH {match!r}: {buckets:,} candidate buckets in all "
                    f"(the catalogue gives up after {sqlite_search.BUDGET:,} unless the limit "
                    "is reached first)", "per chunk of candidates:",
                    self._eqp(sql, ["[]" if p is CANDIDATES else p for p in params]),
                    "plain statement (without the index, or after giving up):"]
        out.append(self._eqp(*SQLiteCompiler(query, count=count).compile()))
        return "\n".join(out)

    def _eqp(self, sql: str, params: list[Any]) -> str:
        depth = {0: -1}
        out = []
        for node, parent, _unused, detail in self.rows(f"EXPLAIN QUERY PLAN {sql}", params):
            depth[node] = depth.get(parent, -1) + 1  # a tree: indent by depth
            out.append("  " * (depth[node] + 1) + detail)
        return "\n".join(out)


class PostgresBackend(Backend):
    name = "PostgreSQL"

    def __init__(self, server: Any, cache_dir: Path, n: int, seed: int,
                 may_load: bool = True) -> None:
        from elliptio.catalogue.postgres_schema import SCHEMA_VERSION

        key = cache_key(n, seed, SCHEMA_VERSION)
        database = "corpus_" + key.replace("-", "_")
        self.marker = cache_dir / f"postgres-{key}.json"
        empty = server.create_database()
        try:
            self.url = server.url(empty)
            cat = open_catalogue(self.url)
            cat.check()  # creates the schema
            cat.close()
            self.schema_print = self._schema()
        finally:
            server.drop_database(empty)
        self.url = server.url(database)
        held = [r[0] for r in _admin(server, "SELECT datname FROM pg_database WHERE"
                                              " datname LIKE %s", [f"corpus\\_{n}\\_%"])]
        if not (database in held and self._cached(self._schema())):
            if not may_load:
                raise NotCached(f"database {database} is not a finished load of this schema")
            self.marker.unlink(missing_ok=True)
            for stale in {*held, database}:  # another schema or corpus, or a partial load
                server.drop_database(stale)
            server.create_database(database)
        self.catalogue = open_catalogue(self.url)

    def _schema(self) -> str:
        return fingerprint(self.rows(
            "SELECT table_name, column_name, data_type, collation_name FROM"
            " information_schema.columns WHERE table_schema = 'public'"
            " UNION ALL SELECT tablename, indexname, indexdef, '' FROM pg_indexes"
            " WHERE schemaname = 'public' UNION ALL SELECT tgrelid::regclass::text, tgname,"
            " pg_get_triggerdef(oid), '' FROM pg_trigger WHERE NOT tgisinternal"))

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            cur = conn.execute(sql.replace("?", "%s"), list(params))  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def analyze(self) -> float:
        # VACUUM too: it sets the visibility map, without which no index-only scan (a
        # count) is worth it; autovacuum would do the same a little later
        t = time.perf_counter()
        self.rows("VACUUM (ANALYZE)")
        return time.perf_counter() - t

    def size(self) -> tuple[int, str]:
        (total,), = self.rows(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c"
            " JOIN pg_namespace s ON s.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'm') AND s.nspname NOT IN ('pg_catalog',"
            " 'information_schema', 'pg_toast')")
        (db,), = self.rows("SELECT pg_database_size(current_database())")
        return int(total), f"tables + indexes + TOAST (database {db / 2**20:,.0f} MiB)"

    def describe(self) -> str:
        settings = ", ".join(f"{k}={self.rows(f'SHOW {k}')[0][0]}" for k in (
            "server_version", "fsync", "synchronous_commit", "shared_buffers", "work_mem"))
        return f"{super().describe()}; {settings} (tests.fixtures.postgres)"

    def plan(self, query: Query, count: bool) -> str:
        from elliptio.query.sql_postgres import compile_postgres

        sql, params = compile_postgres(query, count=count)
        with self._connect() as conn:
            cur = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            return "\n".join(r[0] for r in cur.fetchall())


def _admin(server: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        return conn.execute(sql, list(params) or None).fetchall()  # type: ignore[arg-type]


@contextlib.contextmanager
def postgres_server(cache_dir: Path) -> Any:
    """The benchmark's PostgreSQL cluster under *cache_dir*/postgres, started here and
    stopped by its PID on exit; databases other than the cached corpora (those of the
    saves and reindex parts) are dropped when it stops."""
    from tests.fixtures.postgres import PostgresServer

    cache_dir.mkdir(parents=True, exist_ok=True)
    root, secret = cache_dir / "postgres", cache_dir / "postgres.password"
    server = PostgresServer(root)
    if (root / "data" / "PG_VERSION").exists() and secret.exists():
        server.password = secret.read_text().strip()
    elif root.exists():
        shutil.rmtree(root)  # a cluster whose password is lost: make a new one
    with server:
        secret.write_text(server.password)
        secret.chmod(0o600)
        try:
            yield server
        finally:
            for (name,) in _admin(server, "SELECT datname FROM pg_database WHERE datname"
                                          " NOT LIKE 'corpus\\_%' AND NOT datistemplate"
                                          " AND datname <> 'postgres'"):
                server.drop_database(name)


def fresh_catalogue(kind: str, root: Path, server: Any) -> Callable[[], str]:
    """A function returning the URL of a new, empty catalogue of *kind* each call (files
    under *root*, databases on *server*)."""
    def url() -> str:
        if kind == "sqlite":  # a name of its own: *root* is shared by every caller
            return f"sqlite:///{root}/fresh-{secrets.token_hex(6)}.sqlite"
        return server.url(server.create_database())  # a name of its own

    return url
