"""What is PostgreSQL's own in the PostgreSQL catalogue, against a real server the tests
start (``tests/fixtures/postgres.py``); the catalogue contract itself runs in
``test_t2_catalogue_contract.py``.

Passwords as libpq users expect them (URL, ``PGPASSWORD``, ``~/.pgpass``) and never shown;
one clear ``CatalogueError`` for every way the server can be wrong or gone (wrong password,
nothing listening, no such database, no right to create ``pg_trgm``, a server killed
during a search); the schema's versions and its migration; first-claim-wins and no lost
or duplicated rows under 8 concurrent writer processes; the indexes the planner really
uses for the globs that matter (``*dataset*``, ``*.nomatch``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from elliptio.catalogue import open_catalogue
from elliptio.catalogue import postgres as pg_module
from elliptio.catalogue.postgres import PostgresCatalogue
from elliptio.catalogue.postgres_schema import GLOB_STATISTICS, SCHEMA_VERSION, STEPS, migrate
from elliptio.errors import CatalogueError, ConfigError
from elliptio.ids import new_id
from elliptio.query import Query
from elliptio.query.sql_postgres import compile_postgres

from .catalogue_corpus import T0, make_metadata
from .fixtures.postgres import PostgresServer
from .fixtures.ports import free_port


def _db(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _execute(url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _one_line_without(exc: BaseException, *secret_values: str) -> str:
    text = str(exc)
    assert "\n" not in text, text
    for s in secret_values:
        assert s not in text, text
    return text


@pytest.fixture
def cat(pg_url: str) -> Iterator[PostgresCatalogue]:
    c = open_catalogue(pg_url)
    assert isinstance(c, PostgresCatalogue)
    yield c
    c.close()


@pytest.fixture
def role(postgres: PostgresServer, pg_url: str) -> Iterator[tuple[str, str]]:
    """A login role that is neither superuser nor owner of the test's database, and may
    create tables in its ``public`` schema but not extensions in the database."""
    name, password = f"r_{secrets.token_hex(4)}", "pw-" + secrets.token_hex(8)
    postgres.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    postgres.sql(f"GRANT CREATE ON SCHEMA public TO {name}", database=_db(pg_url))
    yield name, password
    with contextlib.suppress(Exception):
        postgres.sql(f"DROP OWNED BY {name}", database=_db(pg_url))
    postgres.drop_database(_db(pg_url))
    with contextlib.suppress(Exception):
        postgres.sql(f"DROP ROLE {name}")


# -- URLs and passwords ----------------------------------------------------------------
def test_url_forms_and_the_password_is_never_shown(postgres: PostgresServer, pg_url: str):
    alt = pg_url.replace("postgresql://", "postgres://", 1)
    for url in (pg_url, alt, pg_url + "?sslmode=disable"):
        c = open_catalogue(url)
        try:
            assert postgres.password not in c.url and postgres.password not in repr(c.url)
            c.upsert(make_metadata())
            line = c.check()
            assert "PostgreSQL catalogue" in line and f"schema version {SCHEMA_VERSION}" in line
            assert postgres.password not in line
        finally:
            c.close()
    c = open_catalogue(pg_url)
    assert c.count(Query()) == 3  # one database, three URLs
    c.close()
    with pytest.raises(ConfigError, match="postgresql://"):
        open_catalogue("postgresq://x/y")  # the unknown-scheme message names this one
    with pytest.raises(ConfigError, match="port must be a number") as info:
        open_catalogue("postgresql://eio:hunter2secret@host:notaport/db")
    _one_line_without(info.value, "hunter2secret")
    with pytest.raises(ConfigError) as info:
        open_catalogue("postgresql://eio:hunter2secret@host/db?bogus=1")
    _one_line_without(info.value, "hunter2secret")


def test_the_constructor_does_not_connect():
    """A save whose catalogue is down still succeeds (catalogued=False): opening the
    catalogue costs nothing, its first call is what fails."""
    t = time.monotonic()
    c = open_catalogue(f"postgresql://eio:pw@127.0.0.1:{free_port()}/db")
    assert time.monotonic() - t < 1
    with pytest.raises(CatalogueError):
        c.get(new_id())
    c.close()


def test_password_from_pgpassword(postgres: PostgresServer, pg_url: str, monkeypatch):
    monkeypatch.delenv("PGPASSFILE", raising=False)
    bare = pg_url.replace(f":{postgres.password}@", "@", 1)
    assert postgres.password not in bare
    monkeypatch.delenv("PGPASSWORD", raising=False)
    c = open_catalogue(bare)
    with pytest.raises(CatalogueError, match="credentials") as info:
        c.check()
    _one_line_without(info.value, postgres.password)
    c.close()
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    c = open_catalogue(bare)
    try:
        c.upsert(make_metadata())
        assert c.count(Query()) == 1
        assert postgres.password not in c.check() and postgres.password not in c.url
    finally:
        c.close()


def test_password_from_pgpass(postgres: PostgresServer, pg_url: str, monkeypatch, tmp_path):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"{postgres.host}:{postgres.port}:{_db(pg_url)}:eio:{postgres.password}\n")
    pgpass.chmod(0o600)
    bare = pg_url.replace(f":{postgres.password}@", "@", 1)
    c = open_catalogue(bare)
    try:
        c.upsert(make_metadata())
        assert c.count(Query()) == 1
    finally:
        c.close()


# -- one clear error for each way it goes wrong ------------------------------------------
def test_wrong_password(postgres: PostgresServer, pg_url: str):
    wrong = "not-the-" + secrets.token_hex(6)
    c = open_catalogue(pg_url.replace(postgres.password, wrong, 1))
    with pytest.raises(CatalogueError, match="refused the credentials") as info:
        c.find(Query())
    _one_line_without(info.value, wrong, postgres.password)
    c.close()


def test_nothing_listening(postgres: PostgresServer):
    port = free_port()
    c = open_catalogue(f"postgresql://eio:{postgres.password}@127.0.0.1:{port}/db")
    t = time.monotonic()
    with pytest.raises(CatalogueError, match="cannot reach") as info:
        c.upsert(make_metadata())
    assert time.monotonic() - t < 10
    text = _one_line_without(info.value, postgres.password)
    assert str(port) in text
    c.close()


def test_missing_database(postgres: PostgresServer):
    c = open_catalogue(postgres.url("no_such_db_" + secrets.token_hex(3)))
    with pytest.raises(CatalogueError, match="does not exist") as info:
        c.count(Query())
    _one_line_without(info.value, postgres.password)
    c.close()


def test_pg_trgm_missing_and_not_creatable(postgres: PostgresServer, pg_url: str, role):
    """pg_trgm is a trusted extension (PostgreSQL >= 13): anyone with CREATE on the
    database may create it. A role without that gets one line saying what to run, and
    nothing is left half made; once an administrator has run it, the role's catalogue
    works."""
    name, password = role
    url = postgres.url(_db(pg_url), user=name, password=password)
    assert not _execute(pg_url, "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    c = open_catalogue(url)
    with pytest.raises(CatalogueError, match="pg_trgm") as info:
        c.upsert(make_metadata())
    text = _one_line_without(info.value, password, postgres.password)
    assert "CREATE EXTENSION pg_trgm;" in text and _db(pg_url) in text
    assert _execute(pg_url, "SELECT to_regclass('artifacts')") == [(None,)]  # rolled back
    postgres.sql("CREATE EXTENSION pg_trgm", database=_db(pg_url))
    md = make_metadata(tags=["dataset"])
    c.upsert(md)
    assert [m["id"] for m in c.find(Query.parse("tag=*data*"))] == [md["id"]]
    c.close()


def test_pg_trgm_is_created_when_allowed(postgres: PostgresServer, pg_url: str, role):
    name, password = role
    postgres.sql(f'GRANT CREATE ON DATABASE "{_db(pg_url)}" TO {name}')
    c = open_catalogue(postgres.url(_db(pg_url), user=name, password=password))
    c.upsert(make_metadata())
    c.close()
    assert _execute(pg_url, "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'") == [(1,)]


def test_server_killed_during_a_search(pg_server: PostgresServer, monkeypatch):
    """The postmaster is SIGKILLed while a search runs on the server (held there by
    pg_sleep): that search, and every call after it, is a CatalogueError within seconds."""
    c = open_catalogue(pg_server.url())
    c.upsert_many([make_metadata() for _ in range(20)])
    assert len(c.find(Query())) == 20
    real = pg_module.compile_postgres

    def slow(q, *, count=False):
        sql, params = real(q, count=count)
        return f"SELECT s.* FROM ({sql}) s, (SELECT pg_sleep(30)) z", params

    monkeypatch.setattr(pg_module, "compile_postgres", slow)
    outcome: list[BaseException | object] = []

    def search() -> None:
        try:
            outcome.append(c.find(Query()))
        except BaseException as exc:
            outcome.append(exc)

    th = threading.Thread(target=search)
    th.start()
    time.sleep(1.0)  # the search is sleeping on the server now
    t = time.monotonic()
    pg_server.kill()
    th.join(timeout=20)
    assert not th.is_alive(), "the search hangs after the server died"
    assert time.monotonic() - t < 20
    assert len(outcome) == 1 and isinstance(outcome[0], CatalogueError), outcome
    _one_line_without(outcome[0], pg_server.password)
    monkeypatch.setattr(pg_module, "compile_postgres", real)
    for call in (lambda: c.find(Query()), lambda: c.upsert(make_metadata())):
        t = time.monotonic()
        with pytest.raises(CatalogueError, match="cannot reach") as info:
            call()
        # the pool holds no connection now: a refused connect, not the pool's timeout
        assert time.monotonic() - t < 2
        _one_line_without(info.value, pg_server.password)
    c.close()


# -- the schema ------------------------------------------------------------------------
def _indexes(url: str) -> set[str]:
    return {r[0] for r in _execute(url, "SELECT indexname FROM pg_indexes"
                                        " WHERE schemaname = current_schema()")}


def _statistics_targets(url: str) -> dict[tuple[str, str], int]:
    """(table, column) -> statistics target, of the columns set to other than the default."""
    return {(t, c): n for t, c, n in _execute(
        url, "SELECT c.relname::text, a.attname::text, a.attstattarget FROM pg_attribute a"
             " JOIN pg_class c ON c.oid = a.attrelid WHERE a.attstattarget > 0"
             " AND c.relnamespace = current_schema()::regnamespace")}


def test_schema_versions(pg_url: str):
    """A new database gets every step; one left at version 1 (tables, b-trees, jsonb)
    is migrated to the newest on open, its rows kept; a newer one is refused."""
    assert SCHEMA_VERSION == len(STEPS) == 5
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, "test", upto=1) == 0  # a database made by version 1
    assert _execute(pg_url, "SELECT version FROM schema") == [(1,)]
    assert "tags_tag_trgm" not in _indexes(pg_url) and "artifacts_info" in _indexes(pg_url)
    old = make_metadata(tags=["raw-dataset"], files=["x.nomatch"])
    typed = make_metadata(info={"type": "dataset_list"})
    for md, type_ in ((old, None), (typed, "dataset_list")):
        _execute(pg_url, "INSERT INTO artifacts (id, \"user\", created, type, prefix, text,"
                 " info, metadata) VALUES (%s, %s, %s, %s, %s, %s, '{}', %s)",
                 (md["id"], md["user"], md["created"], type_, md["prefix"], md["id"].lower(),
                  json.dumps(md)))
    _execute(pg_url, "INSERT INTO tags VALUES (%s, 'raw-dataset')", (old["id"],))
    c = open_catalogue(pg_url)
    try:
        # version 3 made the type a row of tags: the type is one of the tags
        assert [m["id"] for m in c.find(Query.parse("tag=*dataset*"))] == [typed["id"], old["id"]]
        assert [m["id"] for m in c.find(Query.parse("tag=dataset_list"))] == [typed["id"]]
        assert c.distinct("tag") == ["dataset_list", "raw-dataset"]
        assert c.get(typed["id"]) == typed
        assert c.count(Query()) == 2  # version 4 counted the rows it found
        assert _execute(pg_url, "SELECT version FROM schema") == [(SCHEMA_VERSION,)]
        assert {"tags_tag_trgm", "files_name_trgm", "files_path_trgm", "artifacts_text_trgm",
                "artifacts_type_trgm"} <= _indexes(pg_url)
        # version 5: the columns globs match have finer statistics
        assert _statistics_targets(pg_url) == {
            ("files", "name"): GLOB_STATISTICS, ("files", "path"): GLOB_STATISTICS,
            ("tags", "tag"): GLOB_STATISTICS, ("artifacts", "text"): GLOB_STATISTICS,
            ("artifacts", "info"): GLOB_STATISTICS}
    finally:
        c.close()
    _execute(pg_url, "UPDATE schema SET version = %s", (SCHEMA_VERSION + 1,))
    c = open_catalogue(pg_url)
    with pytest.raises(CatalogueError, match="schema version") as info:
        c.check()
    _one_line_without(info.value)
    c.close()


def test_concurrent_first_opens_do_not_race(pg_url: str):
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def first_open() -> None:
        c = open_catalogue(pg_url)
        try:
            barrier.wait()
            c.upsert(make_metadata())
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=first_open) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert _execute(pg_url, "SELECT version FROM schema") == [(SCHEMA_VERSION,)]
    assert _execute(pg_url, "SELECT count(*) FROM artifacts") == [(8,)]


# -- concurrency -----------------------------------------------------------------------
WRITERS = 8
OWN = 60
CONTESTED = 40


def _writer(url: str, n: int, contested: list[str], start, results) -> None:
    """One writer process: its own artifacts in batches of 10, and a claim of every
    contested id from its own prefix, in an order of its own."""
    import random

    c = open_catalogue(url)
    won: list[str] = []
    try:
        mine = [make_metadata(user=f"w{n}", tags=[f"w{n}", "all"], ms=T0 + n * 10**7 + i,
                              files=[f"f{i}.txt", f"d/g{i}.bin"]) for i in range(OWN)]
        claims = [make_metadata(aid=aid, user=f"w{n}", tags=[f"w{n}"], files=[f"c{n}.txt"])
                  for aid in contested]
        random.Random(n).shuffle(claims)
        start.wait()
        for i in range(0, OWN, 10):
            batch = mine[i:i + 10] + claims[i // 10 * 7:(i // 10 + 1) * 7]
            _written, conflicts = c.claim_many(batch)
            refused = {x.id for x in conflicts}
            won += [md["id"] for md in batch if md["id"] in contested and md["id"] not in refused]
            assert all(x.refused.split("/")[3] == f"w{n}" for x in conflicts)
            c.upsert(mine[i])  # again: idempotent under contention
        results.put((n, won, None))
    except BaseException as exc:
        results.put((n, won, repr(exc)))
    finally:
        c.close()


def test_eight_writer_processes_no_lost_or_duplicated_rows(pg_url: str):
    contested = sorted(new_id(T0 + 10**9 + i) for i in range(CONTESTED))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(pg_url, n, contested, start, results))
             for n in range(WRITERS)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert [err for _n, _won, err in got if err] == []
    winner: dict[str, int] = {}
    for n, won, _err in got:
        for aid in won:
            assert aid not in winner, f"{aid} won by w{winner[aid]} and w{n}"
            winner[aid] = n
    assert sorted(winner) == contested  # every contested id has exactly one winner
    rows = dict(_execute(pg_url, "SELECT id, \"user\" FROM artifacts WHERE id = ANY(%s)",
                         (contested,)))
    assert rows == {aid: f"w{n}" for aid, n in winner.items()}
    tags = dict(_execute(pg_url, "SELECT artifact, array_agg(tag) FROM tags"
                         " WHERE artifact = ANY(%s) GROUP BY artifact", (contested,)))
    assert tags == {aid: [f"w{n}"] for aid, n in winner.items()}  # children not mixed
    assert _execute(pg_url, "SELECT count(*) FROM artifacts") == [(WRITERS * OWN + CONTESTED,)]
    assert _execute(pg_url, "SELECT count(*), count(DISTINCT (artifact, path)) FROM files") == \
        [(WRITERS * OWN * 2 + CONTESTED,) * 2]
    assert _execute(pg_url, "SELECT count(*) FROM tags WHERE tag = 'all'") == [(WRITERS * OWN,)]
    c = open_catalogue(pg_url)
    try:
        assert c.count(Query()) == WRITERS * OWN + CONTESTED  # the sharded count agrees
        for n in range(WRITERS):
            assert c.count(Query.build(user=f"w{n}")) == OWN + list(winner.values()).count(n)
    finally:
        c.close()


def test_threads_share_a_small_pool(pg_url: str):
    """More threads than connections: calls wait for a free one, none is lost."""
    c = PostgresCatalogue(pg_url, max_connections=3)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(0, 30, 3):
                c.upsert_many([make_metadata(user=f"u{t}", ms=T0 + t * 10**6 + i + k)
                               for k in range(3)])
                c.count(Query.build(user=f"u{t}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert not errors, errors
        assert c.count(Query()) == 300
    finally:
        c.close()


# -- PostgreSQL's own text rules ----------------------------------------------------------
def test_like_characters_and_nul_mean_themselves(cat: PostgresCatalogue):
    """``%``, ``_`` and ``\\`` are LIKE's, never a glob's; NUL (which PostgreSQL text
    cannot hold) is stored and found."""
    a = make_metadata(files=["a_b.txt", "50%.csv", "back\\slash.dat"], tags=["x_y"],
                      info={"note": "nul\x00inside", "k\x00ey": 1})
    b = make_metadata(files=["axb.txt", "50x.csv", "backxslash.dat"], tags=["xzy"])
    cat.upsert_many([a, b])
    assert cat.get(a["id"]) == a

    def found(text: str) -> list[str]:
        return [m["id"] for m in cat.find(Query.parse(text))]

    assert found("file=a_b*") == [a["id"]]
    assert found("file=50%*") == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(files="back\\*"))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(tags="x_*"))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(tags="x?y"))] == [b["id"], a["id"]]
    assert [m["id"] for m in cat.find(Query.build(text="a_b"))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(text="50%"))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(info={"note": "nul\x00inside"}))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(info={"k\x00ey": 1}))] == [a["id"]]
    assert [m["id"] for m in cat.find(Query.build(text="nul\x00in"))] == [a["id"]]


def test_distinct_prefix_is_exact(cat: PostgresCatalogue):
    """A prefix is a prefix for every character (SQLite's range stops before U+FFFF)."""
    mds = [make_metadata(user=u, tags=[t]) for u, t in
           (("a\U0001f600", "t\U0001f600"), ("a_b", "t%"), ("ab", "tb"), ("b", "u"))]
    cat.upsert_many(mds)
    assert cat.distinct("user", prefix="a") == ["a_b", "ab", "a\U0001f600"]
    assert cat.distinct("user", prefix="a_") == ["a_b"]
    assert cat.distinct("tag", prefix="t") == ["t%", "tb", "t\U0001f600"]
    assert cat.distinct("tag", prefix="t%") == ["t%"]
    assert cat.distinct("user", after="ab", limit=1) == ["a\U0001f600"]
    assert cat.ids_with_prefix(mds[0]["id"][:3] + "%") == []


# -- the indexes the planner uses ------------------------------------------------------------
def test_explain_uses_the_indexes(cat: PostgresCatalogue, pg_url: str):
    """On a few thousand artifacts (ANALYZEd), the globs that match nothing and the
    substring globs are answered from the pg_trgm indexes, prefixes from the b-trees,
    info from the jsonb GIN; no table behind a glob is scanned whole. VACUUM as
    autovacuum would: it moves the GIN indexes' pending lists (fastupdate, which keeps
    bulk loads fast) into the index proper, and until then the planner rightly prefers a
    scan of a table this small."""
    mds = []
    for i in range(3000):
        tags = [f"batch{i % 50}", f"run-{i}", "raw", "team-a", "q1"] + \
               (["my-dataset"] if i % 100 == 0 else [])
        mds.append(make_metadata(
            ms=T0 + i * 1000, user="zelda" if i % 300 == 0 else f"user{i % 20}",
            files=[f"part-{i}-{k}.parquet" for k in range(6)] + [f"logs/run-{i}.log", "x.csv"]
            + ([f"part-{i}-0.h5"] if i % 30 == 0 else []),  # 0.4 %, among the others
            tags=tags, info={"type": "dataset_list" if i % 150 == 0 else f"model-{i % 60}",
                             "epochs": i % 40}))
    for i in range(0, len(mds), 500):
        cat.upsert_many(mds[i:i + 500])
    _execute(pg_url, "VACUUM ANALYZE")
    expected = {
        "file=*.nomatch": ["files_name_trgm"],
        "file=logs/*.nomatch": ["files_path_trgm"],
        "tag=*dataset*": ["tags_tag_trgm"],  # the type is a row of tags (version 3)
        "tag=*nomatch*": ["tags_tag_trgm"],
        "type=*list*": ["artifacts_type_trgm"],
        "text=nomatchword": ["artifacts_text_trgm"],
        "info.epochs=7": ["artifacts_info"],
        "user=zel*": ["artifacts_user"],
        "file=part-42-*": ["files_name"],
    }
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for text, indexes in expected.items():
            for count in (False, True):
                sql, params = compile_postgres(Query.parse(text), count=count)
                plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
                for index in indexes:
                    assert f" on {index} " in plan or f" using {index} " in plan, \
                        f"{text}: {index} not used\n{plan}"
                for table in ("files", "tags"):
                    assert f"Seq Scan on {table}" not in plan, f"{text}:\n{plan}"
        # a glob that few files match is estimated from the histogram's share of matches:
        # with the default statistics (100 entries) none of them matches here (the table
        # is small enough for ANALYZE to read it whole: the same histogram every time),
        # the estimate is the floor, 2 of 100, where 1,000 entries give 63; at 1M the
        # floor made the planner fetch every match for a page (schema version 5)
        (plan,) = conn.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM files"
                               " WHERE name LIKE '%.h5'").fetchone()  # type: ignore[misc]
        (files,) = conn.execute("SELECT count(*) FROM files").fetchone()  # type: ignore[misc]
        assert plan[0]["Plan"]["Plan Rows"] >= 0.001 * files, plan
    assert [m["id"] for m in cat.find(Query.parse("tag=*dataset*", limit=None))] == \
        [m["id"] for m in reversed(mds) if "my-dataset" in m["tags"]
         or m["info"]["type"] == "dataset_list"]
    assert cat.find(Query.parse("file=*.nomatch")) == []


def test_a_batch_claimed_again_replaces_its_children(cat: PostgresCatalogue, pg_url: str):
    """The reindex's batches of 500, twice: the second claim updates every row and
    replaces its files, tags and parents (none doubled, none left over)."""
    batch = [make_metadata(tags=["a", "b"], based_on=[new_id()], files=["x.txt", "y.txt"])
             for _ in range(500)]
    assert cat.claim_many(batch) == (500, [])
    changed = [{**md, "tags": ["c"], "files": md["files"][:1]} for md in batch]
    assert cat.claim_many(changed) == (500, [])
    assert cat.count(Query()) == 500 and cat.count(Query.build(tags="a")) == 0
    assert cat.count(Query.build(tags="c")) == 500 and cat.count(Query.build(files="y.txt")) == 0
    counts = _execute(pg_url, "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM tags),"
                              " (SELECT count(*) FROM based_on)")
    assert counts == [(500, 500, 500)]


def test_environment_password_is_scrubbed_from_messages(monkeypatch, postgres):
    secret = "env-" + secrets.token_hex(6)
    monkeypatch.setenv("PGPASSWORD", secret)
    c = PostgresCatalogue(f"postgresql://eio@127.0.0.1:{postgres.port}/db")
    assert c._scrub(f"x {secret} y") == "x *** y"
    c.close()
    assert os.environ["PGPASSWORD"] == secret


def test_the_dialect_writes_like_regex_and_containment():
    """What PostgresCompiler writes for each kind of condition (the contract suite proves
    what it finds; this pins the form an index answers)."""
    sql, params = compile_postgres(Query.build(files="50%_x?.txt"))
    assert "f.name LIKE %s" in sql and "50\\%\\_x_.txt" in params
    sql, params = compile_postgres(Query.build(files="data/*"))
    assert "f.path LIKE %s" in sql and "data/%" in params
    sql, params = compile_postgres(Query.build(tags="[ab]*"))
    assert "t.tag ~ %s" in sql and any(str(p).startswith("^[ab]") for p in params)
    sql, params = compile_postgres(Query.build(tags="dataset"))
    assert "t.tag = %s" in sql and "UNION" not in sql  # the type is a row of tags
    sql, params = compile_postgres(Query.build(text="A_b%"))
    assert "a.text LIKE %s" in sql and "%a\\_b\\%%" in params
    sql, params = compile_postgres(Query.build(info={"epochs": 10}))
    assert "a.info @> %s::jsonb" in sql and json.loads(params[0]) == {"epochs": ["10"]}
    sql, _params = compile_postgres(Query.build(user="andy"))
    assert sql.startswith("SELECT p.id, m.metadata FROM (") and "ORDER BY p.id DESC" in sql
    sql, _params = compile_postgres(Query.build(user="andy"), count=True)
    assert sql.startswith("SELECT count(*) FROM artifacts a")


# -- a server that answers connections but not statements ------------------------------
def test_a_held_lock_is_a_catalogue_error_not_a_hang(pg_url: str):
    """Another session holds every table (ACCESS EXCLUSIVE): a search, a count and a save
    each fail with one CatalogueError once the statement timeout passes, rather than
    waiting for ever (the mount would hang its caller); the same catalogue answers when
    the lock is gone."""
    c = PostgresCatalogue(pg_url, statement_timeout=1.5)
    c.upsert(make_metadata())
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE artifacts, files, tags, based_on, artifact_count"
                        " IN ACCESS EXCLUSIVE MODE")
        for call in (lambda: c.find(Query(tags=("*dataset*",))),
                     lambda: c.count(Query()),
                     lambda: c.upsert(make_metadata())):
            t = time.monotonic()
            with pytest.raises(CatalogueError, match="took too long and was cancelled") as info:
                call()
            assert 1.0 < time.monotonic() - t < 10
            _one_line_without(info.value)
        holder.rollback()
    assert len(c.find(Query())) == 1
    c.close()


def test_the_url_sets_its_own_statement_timeout(pg_url: str):
    c = PostgresCatalogue(pg_url + "?options=-c%20statement_timeout%3D1234")
    with c._conn("test") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
    c.close()
    c = PostgresCatalogue(pg_url)
    with c._conn("test") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
    c.close()


def test_a_short_password_is_scrubbed_without_mangling_words():
    from elliptio.catalogue.postgres_errors import scrub

    assert scrub("connection timeout expired", ["x"]) == "connection timeout expired"
    assert scrub("password=x host=h", ["x"]) == "password=*** host=h"
    assert scrub("postgresql://eio:x@h/db", ["x"]) == "postgresql://***@h/db"
    assert scrub("user 'pw-1' said pw-1", ["pw-1"]) == "user '***' said ***"
