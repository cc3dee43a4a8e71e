"""A lake whose catalogue is PostgreSQL, end to end against a real server (issue 18): the
library (save, load, search), the CLI, ``eio reindex`` into it and ``eio reindex --to`` onto
it from an embedded lake (resumable, with progress, counts that match), ``eio fsck``, the
trust rules (first claim wins, quarantine) through reindex, a server killed during a search
and during a save, and what a user gets wrong in the URL (unreachable server, wrong
password, missing database, a server that never answers).

The catalogue contract itself is tests/test_t2_catalogue_contract.py; this is the rest of
ElliptIO on top of it. One session server (``postgres``, a fresh database per test); a
server of the test's own (``pg_server``) only where a test kills it. The password of every
server is random, and no output of any command may contain it.

The helpers at the top (locks that hold a statement on the server, a restart on the same
port, the CLI with a terminal on stderr) are used by the mount's and the web page's
PostgreSQL tests too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import elliptio as eio
from elliptio import Lake, Settings, indexer
from elliptio.catalogue import open_catalogue
from elliptio.errors import CatalogueError
from elliptio.query import Query
from elliptio.redact import redact_url

from .catalogue_corpus import make_metadata
from .fixtures import postgres as pgfix
from .fixtures.postgres import PostgresServer
from .fixtures.terminal import eio_on_a_terminal
from .test_t3_hostile_store import event, plant
from .test_t3_indexer import put_artifact, synthetic

#: how long a failure of the server may take to reach the caller (an error, not a hang)
BOUND = 20.0
#: exit code of a CatalogueError (elliptio/errors.py)
EXIT_CATALOGUE = 7


# -- helpers ------------------------------------------------------------------------------
def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextlib.contextmanager
def holding_locks(server: PostgresServer, database: str, mode: str) -> Iterator[None]:
    """Every table of *database* locked in *mode* by another session until the block ends:
    ``ACCESS EXCLUSIVE`` makes every statement of the catalogue wait (a search in flight),
    ``SHARE`` only its writes (a save that got as far as the catalogue). The server may be
    dead when the block ends."""
    import psycopg

    conn = psycopg.connect(server.url(database))
    try:
        # a catalogue session idle in a transaction would make the lock wait: fail instead
        conn.execute("SET lock_timeout = '10s'")
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall()
        assert tables, "the catalogue made no tables"
        for (name,) in tables:
            conn.execute(f"LOCK TABLE {name} IN {mode} MODE")  # type: ignore[arg-type]
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def wait_for_lock_waiters(server: PostgresServer, database: str, n: int = 1,
                          timeout: float = 15.0) -> None:
    """Until *n* sessions of *database* wait for a lock (the call under test is in flight
    on the server)."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(server.url(), autocommit=True) as conn:
        while True:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'", (database,)).fetchone()  # type: ignore[misc]
            if waiting >= n:
                return
            assert time.monotonic() < deadline, "the call never reached the server"
            time.sleep(0.05)


def killed_in_flight(server: PostgresServer, database: str, mode: str,
                     call: Callable[[], Any]) -> tuple[Any, float]:
    """What *call* (run in a thread) returned or raised when the server died under it,
    and how long after the kill: the tables are held in lock *mode* (see
    :func:`holding_locks`) until the call waits at the server, then the server is killed.
    Fails when the call is still running ``BOUND + 10`` seconds later (a hang)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - what the caller got
            outcome.append(exc)

    with holding_locks(server, database, mode):
        t = threading.Thread(target=run)
        t.start()
        wait_for_lock_waiters(server, database)
        killed = time.monotonic()
        server.kill()
        t.join(BOUND + 10)
        took = time.monotonic() - killed
    assert not t.is_alive(), "the call hangs after the server died"
    (result,) = outcome
    return result, took


def checkpoint(server: PostgresServer) -> None:
    """Make what is committed survive a kill: the test server runs with
    ``synchronous_commit=off`` and ``fsync=off``, so a commit of the last few hundred
    milliseconds is lost with the postmaster otherwise."""
    server.sql("CHECKPOINT")


def restart_on_the_same_port(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start a killed server again on its port (so the URLs already handed out work)."""
    port = server.port
    monkeypatch.setattr(pgfix, "free_port", lambda: port)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.start()
            return
        except RuntimeError:
            # the killed postmaster's backends may hold its shared memory for a moment
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def eio_cli(env: dict[str, str], *args: str, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "elliptio", *args], capture_output=True,
                          text=True, env=full, cwd=cwd, timeout=timeout)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *secrets: str,
                          code: int = EXIT_CATALOGUE) -> str:
    """The CLI failed as a user mistake or an outage must: exit *code*, nothing on stdout,
    one line ``eio: error: ...`` on stderr, no traceback, none of *secrets* anywhere."""
    for s in secrets:
        assert s not in proc.stdout and s not in proc.stderr, (s, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eio: error: "), proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    return lines[0]


def answered(call: Callable[[], Any], timeout: float, message: str) -> Any:
    """What *call* returns once it stops raising CatalogueError (within *timeout*)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except CatalogueError:
            assert time.monotonic() < deadline, message
            time.sleep(0.2)


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def pg_lake(pg_env: dict[str, str]) -> Iterator[Lake]:
    lk = Lake(Settings.load())
    yield lk
    lk.close()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    (d / "train.txt").write_text("a,b\n1,2\n")
    (d / "test.txt").write_text("a,b\n3,4\n")
    (d / "notes.md").write_text("not data\n")
    monkeypatch.chdir(d)
    return d


@pytest.fixture
def own_server_env(pg_server: PostgresServer, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A lake (local store) whose catalogue is a database on the test's own server."""
    url = pg_server.url(pg_server.create_database())
    env = {"ELLIPTIO_STORE": f"file://{tmp_path}/store", "ELLIPTIO_CATALOGUE": url,
           "ELLIPTIO_USER": "andy"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


# -- the library ----------------------------------------------------------------------------
def test_save_load_search_on_postgres(pg_env, work, postgres):
    """The seed's save (a type, no tags) and Brenda's exact search, on PostgreSQL; the rows
    are the server's (another connection sees them), load takes an id prefix, lineage and
    counts answer from the server."""
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    model = eio.save(["train.txt"], info={"type": "model", "epochs": 10}, tags=["v1"],
                     based_on=[a.id])
    # (based_on=[]: the model's parent is in this process's lineage now)
    notes = eio.save(["notes.md"], info={"type": "dataset_list"}, based_on=[])  # no *.txt
    with Lake(Settings.load(user="dora")) as dora:
        theirs = dora.save(["train.txt"], info={"type": "dataset_list"}, based_on=[])
    assert all(x.catalogued for x in (a, model, notes, theirs))

    found = eio.search(user="andy", since="10d", files="*.txt", tags="*dataset*")
    assert [x.id for x in found] == [a.id]
    assert found[0].tags == [] and found[0].type == "dataset_list"
    assert found[0].metadata == a.metadata
    # the type is a tag, exactly and by glob; a prefix glob too
    assert [x.id for x in eio.search(tags="dataset_list", user="andy")] == [notes.id, a.id]
    assert [x.id for x in eio.search(tags="data*", files="train.*")] == [theirs.id, a.id]
    assert [x.id for x in eio.search(files="*.nomatch")] == []
    assert [x.id for x in eio.search(info={"epochs": 10})] == [model.id]
    assert [x.id for x in eio.search(text="cool-meth")] == [a.id]
    assert [x.id for x in eio.search(based_on=a.id)] == [model.id]
    report = eio.save(["notes.md"], info={"type": "evaluation_report"}, based_on=[model.id])
    assert [x.id for x in eio.search(based_on=a.id, transitive=True)] == [report.id, model.id]

    lake = eio.api.default_lake()
    assert lake.catalogue.url.startswith("postgresql://")
    assert postgres.password not in lake.catalogue.url
    assert lake.catalogue.count(Query.parse("user=andy")) == 4
    # what another connection to the server sees: the rows are in PostgreSQL
    other = open_catalogue(pg_env["ELLIPTIO_CATALOGUE"])
    try:
        assert other.get(a.id) == a.metadata
        assert other.existing([a.id, model.id, "0" * 26]) == {a.id, model.id}
    finally:
        other.close()

    b = eio.load(a.id[:10])
    assert b.id == a.id and b.files["train.txt"].read_bytes() == b"a,b\n1,2\n"
    assert b.info["stratification"] == "new-cool-method"
    assert eio.load(model.id).based_on == [a.id]


def test_the_cli_on_postgres(pg_env, work, postgres):
    """eio save/search/show/config/init on PostgreSQL, the password in none of it."""
    saved = json.loads(eio_cli(pg_env, "save", "train.txt", "test.txt", "-t", "dataset_list",
                               "--json", cwd=work).stdout)
    assert saved["catalogued"] is True
    res = eio_cli(pg_env, "search", "user=andy,since=10d,file=*.txt,tag=*dataset*", "--json")
    assert res.returncode == 0, res.stderr
    assert [x["id"] for x in json.loads(res.stdout)] == [saved["id"]]
    assert eio_cli(pg_env, "search", "--count", "--type", "dataset_list").stdout.strip() == "1"
    shown = eio_cli(pg_env, "show", saved["id"][:8])
    assert shown.returncode == 0 and saved["id"] in shown.stdout and "train.txt" in shown.stdout
    outputs = [res, shown]
    for args in (("config",), ("config", "--json"), ("init",)):
        out = eio_cli(pg_env, *args)
        assert out.returncode == 0, out.stderr
        assert "postgresql://***@127.0.0.1" in out.stdout
        outputs.append(out)
    for out in outputs:
        assert postgres.password not in out.stdout + out.stderr


# -- reindex, migration, fsck ------------------------------------------------------------------
def test_eio_reindex_into_postgres(pg_env, pg_lake, work, postgres):
    """`eio reindex` with ELLIPTIO_CATALOGUE on PostgreSQL rebuilds it from the store:
    everything, then nothing again; what it found answers queries."""
    saved = pg_lake.save(["train.txt"], info={"type": "dataset_list"})
    synth = synthetic(pg_lake, 30, tags=["t"])
    out = eio_cli(pg_env, "reindex")
    assert out.returncode == 0, out.stderr
    assert postgres.password not in out.stdout + out.stderr
    assert out.stdout.startswith("reindexed 30 of 31 artifact(s) from file://")
    assert f"into {redact_url(pg_env['ELLIPTIO_CATALOGUE'])}" in out.stdout
    assert "(1 already there)" in out.stdout
    assert pg_lake.catalogue.count(Query()) == 31
    assert [m.id for m in pg_lake.search("tag=t", limit=None)] == \
        [m["id"] for m in reversed(synth)]
    again = json.loads(eio_cli(pg_env, "reindex", "--json").stdout)
    assert (again["scanned"], again["indexed"], again["skipped"]) == (31, 0, 31)
    full = json.loads(eio_cli(pg_env, "reindex", "--full", "--json").stdout)
    assert (full["indexed"], full["skipped"]) == (31, 0)
    assert pg_lake.catalogue.count(Query()) == 31
    assert pg_lake.catalogue.get(saved.id) == saved.metadata


def test_reindex_to_postgres_migrates_an_embedded_lake(lake, lake_env, pg_url, postgres, work):
    """The move from the embedded SQLite catalogue to PostgreSQL: interrupted after the first
    batch, resumed by `eio reindex --to` (progress on the terminal, the rest indexed, what
    was there skipped), then nothing left to do; the same ids and answers as SQLite's."""
    n = indexer.BATCH + 150
    synth = synthetic(lake, n, tags=["t"])
    saved = lake.save(["train.txt", "test.txt"], info={"type": "dataset_list"})
    indexer.reindex(lake)
    assert lake.catalogue.count(Query()) == n + 1

    class Interrupted(Exception):
        pass

    def stop_after_the_first_batch(_n: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        indexer.migrate(lake, pg_url, progress=stop_after_the_first_batch)
    pg = open_catalogue(pg_url)
    try:
        assert pg.count(Query()) == indexer.BATCH

        code, out, tty = eio_on_a_terminal(lake_env, "reindex", "--to", pg_url)
        assert code == 0, tty
        assert postgres.password not in out + tty
        assert redact_url(pg_url) == (f"postgresql://***@127.0.0.1:{postgres.port}/"
                                      f"{database_of(pg_url)}")
        assert out == (f"reindexed {n + 1 - indexer.BATCH} of {n + 1} artifact(s) from "
                       f"{lake.store.url} into {redact_url(pg_url)} ({indexer.BATCH} already "
                       "there)\n")
        # progress: after each batch, ending at the total
        assert f"\rscanned {indexer.BATCH} artifact(s)" in tty
        assert tty.endswith(f"\rscanned {n + 1} artifact(s)\r\n"), tty

        again = eio_cli(lake_env, "reindex", "--to", pg_url, "--json")
        assert again.returncode == 0 and postgres.password not in again.stdout + again.stderr
        body = json.loads(again.stdout)
        assert (body["scanned"], body["indexed"], body["skipped"]) == (n + 1, 0, n + 1)
        assert body["catalogue"] == redact_url(pg_url)

        # counts match, and the same queries answer the same
        assert pg.count(Query()) == lake.catalogue.count(Query()) == n + 1
        assert set(pg.all_ids()) == set(lake.catalogue.all_ids())
        for q in ("tag=t", "file=*.txt,type=dataset_list", f"user=andy,limit={n + 5}"):
            assert [m["id"] for m in pg.find(Query.parse(q))] == \
                [m["id"] for m in lake.catalogue.find(Query.parse(q))], q
        assert pg.get(saved.id) == saved.metadata
        assert pg.get(synth[7]["id"]) == lake.catalogue.get(synth[7]["id"])
    finally:
        pg.close()


def test_eio_fsck_on_postgres(pg_env, pg_lake, work, postgres):
    """fsck compares the store with the PostgreSQL catalogue: clean, then each kind of
    difference named, then clean again once reindex adds what was missing."""
    a = pg_lake.save(["train.txt", "test.txt"], info={"type": "dataset_list"})
    pg_lake.save(["train.txt"], based_on=[a.id])  # deduplicated against a's object
    clean = eio_cli(pg_env, "fsck", "--verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("checked 2 artifact(s)") and clean.stdout.endswith("clean\n")

    stray = put_artifact(pg_lake, make_metadata(files=["x.txt"]))  # in the store only
    ghost = make_metadata(files=["gone.txt"])  # in the catalogue only
    pg_lake.catalogue.upsert(ghost)
    res = eio_cli(pg_env, "fsck", "--json")
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert report["missing_from_catalogue"] == [stray["id"]]
    assert report["missing_from_store"] == [ghost["id"]]
    assert report["checked"] == 3 and report["clean"] is False
    for out in (clean, res):
        assert postgres.password not in out.stdout + out.stderr

    assert eio_cli(pg_env, "reindex").returncode == 0
    after = json.loads(eio_cli(pg_env, "fsck", "--json").stdout)
    assert after["missing_from_catalogue"] == [] and after["missing_from_store"] == [ghost["id"]]


def test_first_claim_wins_and_quarantine_through_reindex(pg_env, pg_lake, postgres, tmp_path):
    """What a hostile team member plants in the store never takes over an id catalogued in
    PostgreSQL and is never catalogued; in a fresh PostgreSQL catalogue that meets both
    claims at once, one is kept and stays kept, the other is reported."""
    alice = put_artifact(pg_lake, make_metadata(user="alice", files=["a.txt"]))
    assert eio_cli(pg_env, "reindex").returncode == 0
    usurper = make_metadata(aid=alice["id"], user="mallory", files={"a.txt": b"evil!"})
    usurper_key = plant(pg_lake, usurper, {"a.txt": b"evil!"})
    traversal = make_metadata(user="mallory", files={"ok.txt": b"fine"})
    traversal["files"].append({"path": "../../x.sh", "size": 4, "sha256": "0" * 64,
                               "object": f"{traversal['prefix']}/ok.txt"})
    traversal_key = plant(pg_lake, traversal)

    out = eio_cli(pg_env, "reindex", "--full")
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith("reindexed 1 of 3 artifact(s)")
    assert f"  quarantined {traversal_key}: " in out.stderr and "contains '..'" in out.stderr
    assert (f"  conflict: artifact {alice['id']} is catalogued from {alice['prefix']}/; the "
            f"metadata at {usurper['prefix']}/ claims the same id") in out.stderr
    assert postgres.password not in out.stdout + out.stderr
    assert pg_lake.catalogue.get(alice["id"])["prefix"] == alice["prefix"]
    assert pg_lake.catalogue.get(traversal["id"]) is None
    assert pg_lake.load(alice["id"]).files["a.txt"].read_bytes() == b"a.txt"
    fsck = json.loads(eio_cli(pg_env, "fsck", "--json").stdout)
    assert any(usurper_key in c and alice["id"] in c for c in fsck["conflicts"])
    assert any(traversal_key in q for q in fsck["quarantined"])
    # the S3-event indexer (Lambda) on the same catalogue, a newcomer among them
    newcomer = put_artifact(pg_lake, make_metadata(user="bob", files=["b.txt"]))
    out = indexer.lambda_handler(event(pg_lake, usurper_key, traversal_key,
                                       f"{newcomer['prefix']}/.eio/metadata.yaml"),
                                 lake=pg_lake)
    assert out["indexed"] == [newcomer["id"]] and out["failed"] == []
    assert alice["id"] in out["conflicts"][0]["error"]
    assert [q["key"] for q in out["quarantined"]] == [traversal_key]
    assert pg_lake.catalogue.get(alice["id"])["prefix"] == alice["prefix"]
    assert pg_lake.catalogue.get(newcomer["id"]) == newcomer

    # a fresh PostgreSQL catalogue meets both claims in one batch: one wins, for good
    fresh_url = postgres.url(postgres.create_database())
    try:
        report = indexer.migrate(pg_lake, fresh_url)
        assert report.indexed == 2 and [c.id for c in report.conflicts] == [alice["id"]]
        assert [k for k, _ in report.quarantined] == [traversal_key]
        fresh = open_catalogue(fresh_url)
        try:
            held = fresh.get(alice["id"])["prefix"]
            assert held == report.conflicts[0].held != report.conflicts[0].refused
            assert {held, report.conflicts[0].refused} == {alice["prefix"], usurper["prefix"]}
            for _ in range(2):
                again = indexer.migrate(pg_lake, fresh_url, full=True)
                assert [c.held for c in again.conflicts] == [held]
                assert fresh.get(alice["id"])["prefix"] == held
            assert fresh.count(Query()) == 2
        finally:
            fresh.close()
    finally:
        postgres.drop_database(database_of(fresh_url))


# -- the server dies ------------------------------------------------------------------------------
def test_server_killed_during_a_search(pg_server, own_server_env, work, monkeypatch):
    """A search in flight when the server dies ends in one CatalogueError, soon; so does
    every call while it is down (library and CLI: one line, exit 7, no traceback); once the
    server is back the same lake answers again, and a CLI search killed in flight is one
    line too."""
    url = own_server_env["ELLIPTIO_CATALOGUE"]
    db = database_of(url)
    lake = Lake(Settings.load())
    try:
        a = lake.save(["train.txt"], info={"type": "dataset_list"}, based_on=[])
        assert a.catalogued and [x.id for x in lake.search(tags="*dataset*")] == [a.id]
        checkpoint(pg_server)
        err, took = killed_in_flight(pg_server, db, "ACCESS EXCLUSIVE",
                                     lambda: lake.search(user="andy", tags="*dataset*"))
        assert isinstance(err, CatalogueError), repr(err)
        assert took < BOUND, f"the search took {took:.1f}s to fail"
        assert pg_server.password not in str(err)

        # while it is down: each call fails soon, with a CatalogueError
        for call in (lambda: lake.search(tags="*dataset*"), lambda: lake.catalogue.get(a.id)):
            started = time.monotonic()
            with pytest.raises(CatalogueError) as info:
                call()
            assert time.monotonic() - started < BOUND
            assert pg_server.password not in str(info.value)
        started = time.monotonic()
        down = eio_cli(own_server_env, "search", "tag=*dataset*")
        assert time.monotonic() - started < BOUND + 5
        assert_one_error_line(down, pg_server.password)

        # back: the same lake (its pool) answers again
        restart_on_the_same_port(pg_server, monkeypatch)
        found = answered(lambda: lake.search(tags="*dataset*"), BOUND,
                         "the lake does not recover once the server is back")
        assert [x.id for x in found] == [a.id]
    finally:
        lake.close()

    # the CLI's search in flight when the server dies
    with holding_locks(pg_server, db, "ACCESS EXCLUSIVE"):
        full = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
        proc = subprocess.Popen([sys.executable, "-m", "elliptio", "search", "tag=*dataset*"],
                                env={**full, **own_server_env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for_lock_waiters(pg_server, db)
            killed = time.monotonic()
            pg_server.kill()
            stdout, stderr = proc.communicate(timeout=BOUND + 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - killed < BOUND + 5
    assert_one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout,
                                                      stderr), pg_server.password)


def test_server_killed_during_a_save(pg_server, own_server_env, work, monkeypatch, caplog):
    """A save whose catalogue write is in flight when the server dies still succeeds, with
    catalogued=False and a warning that names `eio reindex` (not the password); its bytes
    are in the store, and reindex catalogues it once the server is back."""
    url = own_server_env["ELLIPTIO_CATALOGUE"]
    db = database_of(url)
    lake = Lake(Settings.load())
    try:
        first = lake.save(["train.txt"], info={"type": "dataset_list"}, based_on=[])
        assert first.catalogued
        checkpoint(pg_server)
        caplog.set_level(logging.WARNING, logger="elliptio")
        # reads go on, writes wait: the save is past the store, at the catalogue
        a, took = killed_in_flight(pg_server, db, "SHARE", lambda: lake.save(
            ["test.txt", "notes.md"], info={"type": "model"}, based_on=[first.id]))
        assert not isinstance(a, BaseException), repr(a)
        assert took < BOUND, f"the save took {took:.1f}s to return"
        assert a.catalogued is False
        assert a.files["test.txt"].read_bytes() == b"a,b\n3,4\n"  # from the store
        warned = [r.getMessage() for r in caplog.records if a.id in r.getMessage()]
        assert warned and "eio reindex" in warned[0]
        assert pg_server.password not in caplog.text

        # a save of many files while it is down: the dedup lookup that fails is not asked
        # again for every file (each waits for the pool's timeout), the save goes on
        many = work / "many"
        many.mkdir()
        for i in range(40):
            (many / f"f{i}.txt").write_text(f"file {i}\n")
        started = time.monotonic()
        b = lake.save([str(many)], based_on=[])
        took = time.monotonic() - started
        assert b.catalogued is False and len(b.files) == 40
        assert took < BOUND, f"a 40-file save took {took:.1f}s with the catalogue down"
    finally:
        lake.close()

    restart_on_the_same_port(pg_server, monkeypatch)
    with Lake(Settings.load()) as again:
        assert again.catalogue.get(a.id) is None
        assert again.load(a.id).based_on == [first.id]  # found in the store by its id
    out = eio_cli(own_server_env, "reindex")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("reindexed 2 of 3 artifact(s)")
    with Lake(Settings.load()) as again:
        assert again.catalogue.get(a.id) == a.metadata
        assert again.catalogue.get(b.id) == b.metadata
        assert [x.id for x in again.search(based_on=first.id)] == [a.id]


# -- bad input ------------------------------------------------------------------------------
@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    sock.close()


def test_bad_urls_are_one_line_and_never_show_the_password(lake, lake_env, postgres, pg_url,
                                                          silent_server):
    """Unreachable server, wrong password (in the URL or PGPASSWORD), missing database, a
    server that never answers: search, fsck and reindex --to each print one line that says
    which, exit 7, soon, with no password anywhere. The password from PGPASSWORD or
    ~/.pgpass works as libpq users expect."""
    wrong = "Wr0ng-secret-4711"
    closed = pgfix.free_port()
    db = database_of(pg_url)
    synthetic(lake, 1)  # a store with something in it: every command needs the catalogue
    every = ("search", "fsck", "reindex --to")
    cases = {
        "unreachable": (f"postgresql://eio:{wrong}@127.0.0.1:{closed}/{db}", {}, str(closed),
                        every),
        "wrong password": (postgres.url(db, password=wrong), {}, "password", every),
        "wrong PGPASSWORD": (postgres.url(db, password=""), {"PGPASSWORD": wrong}, "password",
                             ("search",)),
        "missing database": (postgres.url("no_such_db_4711"), {}, "no_such_db_4711", every),
        "postgres:// scheme, missing database": (
            postgres.url("no_such_db_4712").replace("postgresql://", "postgres://"), {},
            "no_such_db_4712", ("search",)),
        "never answers": (f"postgresql://eio:{wrong}@127.0.0.1:{silent_server}/{db}", {},
                          str(silent_server), ("search",)),
    }
    for name, (url, extra, needle, commands) in cases.items():
        secrets = (wrong, postgres.password)
        env = {**lake_env, **extra, "ELLIPTIO_CATALOGUE": url}
        runs = {"search": (("search", "tag=*dataset*"), env), "fsck": (("fsck",), env),
                "reindex --to": (("reindex", "--to", url), {**lake_env, **extra})}
        for args, env_used in (runs[c] for c in commands):
            started = time.monotonic()
            out = eio_cli(env_used, *args, timeout=BOUND + 30)
            took = time.monotonic() - started
            line = assert_one_error_line(out, *secrets)
            assert needle in line, (name, args, line)
            assert took < BOUND, (name, args, f"{took:.1f}s")

    # the password from the environment or ~/.pgpass, not the URL
    bare = postgres.url(db, password="")
    ok = eio_cli({**lake_env, "ELLIPTIO_CATALOGUE": bare, "PGPASSWORD": postgres.password},
                 "search", "--count")
    assert ok.returncode == 0 and ok.stdout.strip() == "0", ok.stderr
    home = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://")).parent / "pghome"
    home.mkdir()
    pgpass = home / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:eio:{postgres.password}\n")
    pgpass.chmod(0o600)
    ok = eio_cli({**lake_env, "ELLIPTIO_CATALOGUE": bare, "HOME": str(home)},
                 "search", "--count")
    assert ok.returncode == 0 and ok.stdout.strip() == "0", ok.stderr
    assert postgres.password not in ok.stdout + ok.stderr
