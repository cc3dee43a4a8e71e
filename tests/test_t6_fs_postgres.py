"""The mount on a PostgreSQL catalogue, for real (issue 18): the daemon as a subprocess over
a lake whose catalogue is a real server. Its query directories (by-user/, by-tag/<type>/,
search/<query>/, based-on/) answer from PostgreSQL, files read through it, and a copy into
outbox/ commits an artifact that PostgreSQL then holds. When the server dies under the
mount, a listing answers EIO within a bounded time (it never hangs the caller), the daemon
serves on, recovers once the server is back, and still unmounts cleanly.

Every mount is unmounted with fusermount3 and must exit 0 (tests/fixtures/fuse.py); the
helpers are tests/test_t3_postgres_lake.py's.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

import elliptio as eio
from elliptio import Lake, Settings
from elliptio.catalogue import open_catalogue
from elliptio.redact import redact_url

from .fixtures.postgres import PostgresServer
from .test_t3_postgres_lake import BOUND, checkpoint, restart_on_the_same_port
from .test_t6_fs_outbox import wait_for

pytestmark = pytest.mark.fuse

ROOT = pwd.getpwuid(os.getuid()).pw_name
QUIET = {"ELLIPTIO_OUTBOX_QUIET": "0.4", "ELLIPTIO_OUTBOX_RETRY": "0.5"}


def outcome(call: str, path: Path, timeout: float = BOUND + 10) -> tuple[object, float]:
    """``os.<call>(path)`` in a process of its own (a caller stuck in a FUSE request never
    hangs the test): its result (a list, a name, or the errno it failed with) and how long
    it took."""
    code = ("import json, os, sys\n"
            "try:\n"
            f"    r = os.{call}(sys.argv[1])\n"
            "    print(json.dumps(sorted(r) if isinstance(r, list) else str(r)))\n"
            "except OSError as e:\n"
            "    print(json.dumps(e.errno))\n")
    started = time.monotonic()
    try:
        res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"os.{call}({path}) hangs: no answer in {timeout:.0f}s")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), time.monotonic() - started


def seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[eio.Artifact, eio.Artifact]:
    """The seed's save (a type, no tags) as andy and brenda's model based on it, in the
    lake the environment names; the default lake closed again."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.txt").write_text("a,b\n1,2\n")
    (work / "test.txt").write_text("a,b\n3,4\n")
    monkeypatch.chdir(work)
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    with Lake(Settings.load(user="brenda")) as brenda:
        model = brenda.save(["train.txt"], info={"type": "model"}, tags=["v1"],
                            based_on=[a.id])
    eio.api.close_default_lake()
    return a, model


@pytest.fixture
def seeded(pg_env, tmp_path, monkeypatch):
    """:func:`seed` on the session server."""
    return seed(tmp_path, monkeypatch)


@pytest.fixture
def seeded_own_server(pg_server, tmp_path, monkeypatch):
    """:func:`seed` on a server of the test's own (it kills it)."""
    url = pg_server.url(pg_server.create_database())
    for k, v in {"ELLIPTIO_STORE": f"file://{tmp_path}/store", "ELLIPTIO_CATALOGUE": url,
                 "ELLIPTIO_USER": "andy"}.items():
        monkeypatch.setenv(k, v)
    return seed(tmp_path, monkeypatch)


def test_the_mount_lists_reads_and_commits_on_postgres(pg_env, seeded, mount_factory,
                                                       tmp_path, postgres):
    a, model = seeded
    m = mount_factory({**pg_env, **QUIET})
    root = m.path
    assert sorted(os.listdir(root / "by-user")) == ["andy", "brenda"]
    assert os.listdir(root / "by-user/andy") == [a.id]
    assert sorted(os.listdir(root / "by-tag")) == ["dataset_list", "model", "v1"]
    assert os.listdir(root / "by-tag/dataset_list") == [a.id]
    assert os.listdir(root / "by-tag/v1") == [model.id]
    assert os.listdir(root / "search/user=andy,since=10d,file=*.txt,tag=*dataset*") == [a.id]
    assert os.listdir(root / "search/file=*.nomatch") == []
    assert os.listdir(root / "based-on" / a.id) == [model.id]
    assert (root / "by-tag/dataset_list" / a.id / "train.txt").read_text() == "a,b\n1,2\n"
    assert (root / "artifacts" / model.id / "train.txt").read_bytes() == b"a,b\n1,2\n"
    assert (root / "artifacts" / a.id / ".eio/metadata.yaml").read_text().startswith(
        "elliptio: 1")

    # a copy into outbox/ becomes an artifact that PostgreSQL holds
    src = tmp_path / "src"
    src.mkdir()
    (src / "result.csv").write_text("x\n42\n")
    subprocess.run(["cp", str(src / "result.csv"), str(root / "outbox")], check=True,
                   timeout=60)
    link = root / "outbox/result.csv"
    wait_for(link.is_symlink, 20, "the copy was not committed")
    new_id = os.readlink(link).rsplit("/", 1)[1]
    cat = open_catalogue(pg_env["ELLIPTIO_CATALOGUE"])
    try:
        row = cat.get(new_id)
        assert row is not None, "the committed artifact is not in PostgreSQL"
        assert row["user"] == ROOT and [f["path"] for f in row["files"]] == ["result.csv"]
    finally:
        cat.close()
    assert os.listdir(root / "search/file=result.csv") == [new_id]
    assert (root / "artifacts" / new_id / "result.csv").read_text() == "x\n42\n"
    m.unmount()
    log = m.log_text()
    assert "(catalogue postgresql://***@127.0.0.1:" in log
    assert postgres.password not in log


def test_the_server_dies_under_the_mount(pg_server: PostgresServer, seeded_own_server,
                                         mount_factory, monkeypatch):
    """Killed while mounted: listings that need the catalogue answer EIO within BOUND,
    the daemon serves on, comes back with the server, and
    unmounts cleanly (the fixture requires exit 0 and no bug in the log)."""
    a, _model = seeded_own_server
    checkpoint(pg_server)  # the seed survives the kill (the test server commits lazily)
    env = {k: v for k, v in os.environ.items() if k.startswith("ELLIPTIO_")}
    assert env["ELLIPTIO_CATALOGUE"].startswith(f"postgresql://eio:{pg_server.password}@")
    m = mount_factory(env)
    root = m.path
    assert os.listdir(root / "search/tag=*") != []
    assert (root / "artifacts" / a.id / "train.txt").read_text() == "a,b\n1,2\n"

    pg_server.kill()
    # (each waits for the catalogue's pool timeout: two are enough)
    for call, path in (("listdir", root / "search/user=andy,tag=*dataset*"),
                       ("listdir", root / "by-tag/dataset_list")):
        got, took = outcome(call, path)
        assert got == errno.EIO, (call, path, got)
        assert took < BOUND, f"os.{call}({path}) took {took:.1f}s to fail"
    assert m.proc.poll() is None, "the daemon died with the server"
    log = m.log_text()
    assert "answering EIO" in log and pg_server.password not in log

    restart_on_the_same_port(pg_server, monkeypatch)
    wait_for(lambda: outcome("listdir", root / "search/file=train.txt")[0] != errno.EIO,
             BOUND, "the mount does not recover once the server is back")
    got, _ = outcome("listdir", root / "search/file=test.txt")
    assert got == [a.id]

    pg_server.kill()  # and down again when it unmounts
    got, _ = outcome("listdir", root / "search/file=*.csv")
    assert got == errno.EIO
    started = time.monotonic()
    m.unmount()
    assert time.monotonic() - started < BOUND
    assert pg_server.password not in m.log_text()


def test_a_copy_into_the_outbox_while_the_server_is_down(pg_server: PostgresServer,
                                                        seeded_own_server, mount_factory,
                                                        tmp_path, monkeypatch):
    """The server is down when an outbox entry commits: the save reaches the store (the
    entry becomes its link, nothing staged is lost) but not the catalogue; once the server
    is back the daemon catalogues it by itself (no `eio reindex`), and the link, the
    artifact and the searches resolve through the mount."""
    checkpoint(pg_server)
    env = {k: v for k, v in os.environ.items() if k.startswith("ELLIPTIO_")}
    m = mount_factory({**env, **QUIET})
    root = m.path
    assert os.listdir(root / "search/tag=*") != []
    pg_server.kill()
    (tmp_path / "late.csv").write_text("y\n7\n")
    subprocess.run(["cp", str(tmp_path / "late.csv"), str(root / "outbox")], check=True,
                   timeout=60)
    link = root / "outbox/late.csv"
    wait_for(link.is_symlink, 3 * BOUND, "the copy was not committed while the server is down")
    new_id = os.readlink(link).rsplit("/", 1)[1]
    assert outcome("listdir", root / "artifacts" / new_id)[0] in (errno.EIO, errno.ENOENT)

    restart_on_the_same_port(pg_server, monkeypatch)
    wait_for(lambda: outcome("listdir", root / "artifacts" / new_id)[0] == [".eio", "late.csv"],
             3 * BOUND, "the artifact committed during the outage never reaches the catalogue")
    assert (link / "late.csv").read_text() == "y\n7\n"
    assert outcome("listdir", root / "search/file=late.csv")[0] == [new_id]
    cat = open_catalogue(env["ELLIPTIO_CATALOGUE"])
    try:
        row = cat.get(new_id)
        assert row is not None and row["user"] == ROOT
    finally:
        cat.close()
    m.unmount()
    assert f"outbox: {new_id} is catalogued now" in m.log_text()


def test_a_bad_catalogue_url_stops_the_start_in_one_line(lake_env, postgres, pg_url,
                                                          tmp_path):
    """A wrong password or a missing database: the daemon does not mount, says so in one
    line, exits with the catalogue's code (7), and never prints the password."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    db = pg_url.rsplit("/", 1)[1]
    wrong = "Wr0ng-secret-4711"
    for url, needle in ((postgres.url(db, password=wrong), "password"),
                        (postgres.url("no_such_db_4711"), "no_such_db_4711")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
        env.update({**lake_env, "ELLIPTIO_CATALOGUE": url,
                    "ELLIPTIO_READLOG": str(tmp_path / "readlog.sqlite"),
                    "ELLIPTIO_SPOOL": str(tmp_path / "spool")})
        res = subprocess.run([sys.executable, "-m", "elliptiofs.cli", str(mnt),
                              "--foreground"], env=env, capture_output=True, text=True,
                             timeout=BOUND + 30)
        assert not os.path.ismount(mnt)
        for secret in (wrong, postgres.password):
            assert secret not in res.stdout + res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("elliptiofs: ")]
        assert res.returncode == 7, res.stderr
        assert len(lines) == 1 and needle in lines[0], res.stderr
        assert lines[0].startswith("elliptiofs: cannot use the catalogue: ")
        assert lines[0].count(redact_url(url)) == 1, lines[0]  # named once
        assert "Traceback" not in res.stderr
