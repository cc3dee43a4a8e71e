"""The catalogue backends bench_catalogue.py compares, each behind the catalogue's public
interface (``open_catalogue``, ``claim_many``, ``find``, ``count``) plus what only a
benchmark asks of the database itself: statistics after a bulk load, its size on disk,
a few rows of raw SQL to pick query arguments, and the plan of a query that missed.

SQLite's corpus is cached between runs in a file keyed by N, the SQLite schema version
and the corpus version (a marker beside it records the clock it was generated with and
how long the load took); PostgreSQL runs on a server the benchmark starts
(``tests.fixtures.postgres.PostgresServer``), loaded afresh every run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from elliptio.catalogue import Catalogue, open_catalogue
from elliptio.catalogue.sqlite import SCHEMA_VERSION
from elliptio.query import Query, compile_sql

from bench.catalogue_corpus_gen import CORPUS_VERSION


class Backend:
    """One loaded (or to-be-loaded) corpus on one kind of catalogue."""

    name: str
    catalogue: Catalogue
    #: True when the corpus must still be loaded into :attr:`catalogue`
    needs_load = True
    load_seconds: float | None = None

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

    def __init__(self, cache_dir: Path, n: int) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        stem = f"catalogue-{n}-s{SCHEMA_VERSION}-c{CORPUS_VERSION}"
        self.path = cache_dir / f"{stem}.sqlite"
        self.marker = cache_dir / f"{stem}.json"
        self.meta: dict[str, Any] = {}
        if self.path.exists() and self.marker.exists():
            self.meta = json.loads(self.marker.read_text())
            self.needs_load = False
            self.load_seconds = self.meta["load_seconds"]
        else:  # a partial load, or files of this N from another schema or corpus
            for p in cache_dir.glob(f"catalogue-{n}-*"):
                p.unlink()
        self.catalogue = open_catalogue(f"sqlite:///{self.path}")

    def loaded(self, now_ms: int, seed: int, seconds: float) -> None:
        """Record a finished load: later runs with the same key reuse the file."""
        self.load_seconds = seconds
        self.meta = {"now_ms": now_ms, "seed": seed, "load_seconds": seconds}
        self.marker.write_text(json.dumps(self.meta))

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
        sql, params = compile_sql(query, count=count)
        lines = self.rows(f"EXPLAIN QUERY PLAN {sql}", params)
        depth = {0: -1}
        out = []
        for node, parent, _unused, detail in lines:  # a tree: indent by depth
            depth[node] = depth.get(parent, -1) + 1
            out.append("  " * depth[node] + detail)
        return "\n".join(out)


class PostgresBackend(Backend):
    name = "PostgreSQL"

    def __init__(self, server: Any, database: str = "eio_bench") -> None:
        server.create_database(database)
        self.url = server.url(database)
        self.catalogue = open_catalogue(self.url)

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


def fresh_catalogue(kind: str, root: Path, server: Any) -> Callable[[], str]:
    """A function returning the URL of a new, empty catalogue of *kind* each call (files
    under *root*, databases on *server*)."""
    made = [0]

    def url() -> str:
        made[0] += 1
        if kind == "sqlite":
            return f"sqlite:///{root}/fresh-{made[0]}.sqlite"
        return server.url(server.create_database())  # a name of its own

    return url
