"""The PostgreSQL catalogue's schema: its tables, its indexes, and how it is created and
migrated on open (:func:`migrate`).

The tables are SQLite's (:func:`elliptio.catalogue.sqlite.create_tables`), so the one SQL
compiler serves both; what differs is PostgreSQL's:

- every text column that is compared or sorted is ``COLLATE "C"``: byte order, which for
  UTF-8 is code-point order, SQLite's order (ids, the keyset cursor, ``distinct``), and
  the collation that lets a b-tree answer a prefix ``LIKE``;
- ``info`` is a ``jsonb`` column of the artifact — ``{"dotted.key": ["canonical JSON",
  ...]}``, one entry per leaf of ``info`` (:func:`elliptio.query.flatten_info`; a list
  because ``{"a.b": 1, "a": {"b": 2}}`` has two leaves named ``a.b``) — with a
  ``jsonb_path_ops`` GIN index that answers ``@>``, instead of SQLite's ``info`` table;
- ``pg_trgm`` GIN indexes answer substring globs (``*dataset*``, ``*.nomatch``) and free
  text without a scan, beside the b-trees for equality and prefixes.

Versions: :data:`STEPS` is the history, one entry per version; a new database replays all
of them, an older one the ones it lacks, in one transaction under a transaction-scoped
advisory lock (:data:`LOCK_KEY`), so two processes opening the same new database at once
do not race: the second waits, then finds the schema made. ``schema.version`` says which
step was applied last. Version 1 is the tables with their b-tree and jsonb indexes,
version 2 the ``pg_trgm`` indexes (the part that needs the extension,
:func:`ensure_pg_trgm`), version 3 the type as a row of ``tags`` beside the tags as saved
(the type is one of the tags, :mod:`elliptio.query`; the metadata keeps the tags as
saved), version 4 the sharded count of artifacts (:data:`COUNT_SHARDS`), version 5 finer
statistics for the columns globs and free text search (:data:`GLOB_STATISTICS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import CatalogueError

#: pg_advisory_xact_lock key held while the schema is created or migrated ("EIOS")
LOCK_KEY = 0x45494F53

_TABLES = """
CREATE TABLE artifacts (
    id       text COLLATE "C" PRIMARY KEY, -- artifact id (time-ordered): sort, keyset, time
    "user"   text COLLATE "C" NOT NULL,    -- who saved it (store layout segment)
    created  text NOT NULL,                -- ISO-8601 UTC creation time, for display
    type     text COLLATE "C",             -- info.type as text, the most common filter
    prefix   text COLLATE "C" NOT NULL,    -- store key prefix YYYY/MM/DD/<user>/<id>
    text     text COLLATE "C" NOT NULL,    -- lower-cased words for free-text search
    info     jsonb NOT NULL,               -- {dotted key: [canonical JSON of each leaf]}
    metadata text NOT NULL                 -- metadata.yaml as JSON text, verbatim
);
CREATE INDEX artifacts_user ON artifacts ("user", id);
CREATE INDEX artifacts_type ON artifacts (type, id);
CREATE INDEX artifacts_info ON artifacts USING gin (info jsonb_path_ops);

CREATE TABLE files (
    artifact text COLLATE "C" NOT NULL,    -- artifacts.id
    path     text COLLATE "C" NOT NULL,    -- relative path inside the artifact
    name     text COLLATE "C" NOT NULL,    -- last component of path (globs without '/')
    size     bigint NOT NULL,              -- bytes
    sha256   text COLLATE "C" NOT NULL,    -- hex digest of the content
    object   text COLLATE "C" NOT NULL,    -- store key of the bytes (another's if dedup)
    PRIMARY KEY (artifact, path)
);
CREATE INDEX files_name ON files (name, artifact);
CREATE INDEX files_sha ON files (sha256, size);

CREATE TABLE tags (
    artifact text COLLATE "C" NOT NULL,    -- artifacts.id
    tag      text COLLATE "C" NOT NULL,    -- a tag as saved, or the type (from version 3)
    PRIMARY KEY (artifact, tag)
);
CREATE INDEX tags_tag ON tags (tag, artifact);

CREATE TABLE based_on (
    child  text COLLATE "C" NOT NULL,      -- artifacts.id of the newer artifact
    parent text COLLATE "C" NOT NULL,      -- an id it was based on (may be uncatalogued)
    PRIMARY KEY (child, parent)
);
CREATE INDEX based_on_parent ON based_on (parent, child);
"""

_TRIGRAMS = """
CREATE INDEX artifacts_type_trgm ON artifacts USING gin (type gin_trgm_ops);
CREATE INDEX artifacts_text_trgm ON artifacts USING gin (text gin_trgm_ops);
CREATE INDEX files_name_trgm ON files USING gin (name gin_trgm_ops);
CREATE INDEX files_path_trgm ON files USING gin (path gin_trgm_ops);
CREATE INDEX tags_tag_trgm ON tags USING gin (tag gin_trgm_ops);
"""


#: the type is one of the tags (elliptio.query): a row of ``tags`` too, so one table with
#: its own statistics answers a tag condition (the union of two tables made the planner
#: guess 200 matches and sort every one of 25,000 for a page of ``*dataset*``)
_TYPE_AS_TAG = """
INSERT INTO tags (artifact, tag) SELECT id, type FROM artifacts WHERE type IS NOT NULL
ON CONFLICT DO NOTHING
"""


#: how many artifacts there are, for the count of everything (the web's landing page)
#: without a scan of a million ids: each writing transaction adds what it inserted to
#: the row of its shard (its backend pid modulo :data:`COUNT_SHARDS`), so concurrent
#: writers seldom wait for one another, and the count is the sum of a few rows. Rows of
#: ``artifacts`` are never deleted, so the sum only grows, in step with them.
COUNT_SHARDS = 16
_COUNTS = """
CREATE TABLE artifact_count (
    shard integer PRIMARY KEY,             -- pg_backend_pid() % COUNT_SHARDS of the writer
    n     bigint NOT NULL                  -- artifacts that writers of this shard inserted
);
INSERT INTO artifact_count (shard, n) SELECT 0, count(*) FROM artifacts
"""


#: the statistics target of the columns that globs and free text match with ``LIKE``, and
#: of ``info``, matched with ``@>`` (PostgreSQL's default is 100). The planner estimates
#: ``name LIKE '%.h5'`` and ``info @> '{...}'`` by the share of the column's histogram
#: that matches; with 100 entries a condition that 1 % of the rows meet misses every
#: entry in a third of the ANALYZEs (0.99^101), the estimate falls to the floor (0.01 %:
#: 297 of 3 million files at 1M artifacts, 30,093 real), and the planner fetches every
#: match for a page of 100: 290-340 ms instead of 11-19 ms for ``file=*.h5``, 175-200 ms
#: for an info equality that 2 % meet (bench_catalogue, 1M). With 1,000 entries that is 1
#: in 20,000, at the cost of an ANALYZE that samples 300,000 rows instead of 30,000 (5 s
#: instead of 1 s for ``files`` at 1M; autovacuum runs it, never a query)
GLOB_STATISTICS = 1000
_STATISTICS = "\n".join(
    f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {GLOB_STATISTICS};"
    for table, column in (("files", "name"), ("files", "path"), ("tags", "tag"),
                          ("artifacts", "text"), ("artifacts", "info")))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _script(script: str) -> Callable[[Any, str], None]:
    """The step that runs each statement of *script*."""
    def step(conn: Any, where: str) -> None:
        for statement in _statements(script):
            conn.execute(statement)

    return step


def _trigrams(conn: Any, where: str) -> None:
    ensure_pg_trgm(conn, where)
    for statement in _statements(_TRIGRAMS):
        conn.execute(statement)


def _type_as_tag(conn: Any, where: str) -> None:
    conn.execute(_TYPE_AS_TAG)


#: the schema's history: STEPS[n] takes a database from version n to n + 1
STEPS: list[Callable[[Any, str], None]] = [_script(_TABLES), _trigrams, _type_as_tag,
                                           _script(_COUNTS), _script(_STATISTICS)]
SCHEMA_VERSION = len(STEPS)


def version(conn: Any) -> int | None:
    """The schema version of the database, or None when it has no catalogue yet."""
    # pg_class read through the statement's snapshot, not to_regclass: the catalogue
    # cache is not refreshed by taking an advisory lock, so after waiting for another
    # process's migration it would still say "no such table"
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'schema'"
                       " AND relnamespace = current_schema()::regnamespace)").fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT max(version) FROM schema").fetchone()
    return row[0] if row and row[0] is not None else 0


def migrate(conn: Any, where: str, *, upto: int = SCHEMA_VERSION) -> int:
    """Create or migrate the schema on *conn* (autocommit) to version *upto*; returns the
    version found. Refuses a database newer than this code. *where* names the catalogue
    in messages."""
    found = version(conn)
    if found == upto:
        return found
    _refuse_newer(found, where)
    with conn.transaction():
        # building an index of a large catalogue takes what it takes: not a stuck call
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        found = version(conn)  # again: another process may have done it meanwhile
        if found == upto:
            return found
        _refuse_newer(found, where)
        if found is None:
            conn.execute("CREATE TABLE schema (version integer NOT NULL)"
                         " -- the last of STEPS applied")
        for step in STEPS[found or 0:upto]:
            step(conn, where)
        conn.execute("DELETE FROM schema")
        conn.execute("INSERT INTO schema (version) VALUES (%s)", (upto,))
    return found if found is not None else 0


def _refuse_newer(found: int | None, where: str) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise CatalogueError(
            f"PostgreSQL catalogue {where} has schema version {found}, this ElliptIO knows "
            f"only up to {SCHEMA_VERSION}: upgrade ElliptIO (or rebuild into a new database "
            "with `eio reindex --to`)"
        )


def ensure_pg_trgm(conn: Any, where: str) -> None:
    """Create the ``pg_trgm`` extension unless it exists; when this user may not (it is a
    trusted extension from PostgreSQL 13 on, so CREATE on the database suffices), one
    clear :class:`CatalogueError` with what an administrator must run."""
    import psycopg

    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone():
        return
    try:
        with conn.transaction():  # a savepoint: the error names the real cause
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.errors.InsufficientPrivilege as exc:
        who = conn.execute("SELECT current_user, current_database()").fetchone()
        raise CatalogueError(
            f"PostgreSQL catalogue {where} needs the extension pg_trgm, and user "
            f"{who[0]!r} may not create it in database {who[1]!r}: an administrator must "
            f'run `CREATE EXTENSION pg_trgm;` in database "{who[1]}" once'
        ) from exc
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported,
            psycopg.errors.UndefinedObject) as exc:
        raise CatalogueError(
            f"PostgreSQL catalogue {where} needs the extension pg_trgm, which this server "
            "does not have: install PostgreSQL's contrib modules on the server (Debian's "
            "postgresql package ships them), then run `CREATE EXTENSION pg_trgm;`"
        ) from exc
