"""Bad input: one clear error, nothing written."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

import elliptio as eio
from elliptio.artifact import load_metadata
from elliptio.inputs import Entry


@pytest.fixture
def work(tmp_path: Path, lake_env, monkeypatch) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    (d / "ok.txt").write_text("ok")
    monkeypatch.chdir(d)
    return d


def nothing_written(lake_env) -> bool:
    root = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return not files and eio.search() == []


def test_missing_file(work, lake_env):
    with pytest.raises(eio.UsageError, match="no such file"):
        eio.save(["ok.txt", "missing.txt"])
    assert nothing_written(lake_env)


def test_directory_loop(work, lake_env):
    (work / "d/sub").mkdir(parents=True)
    (work / "d/f.txt").write_text("f")
    os.symlink("..", work / "d/sub/up")
    with pytest.raises(eio.UsageError, match="loop"):
        eio.save(["d"])
    assert nothing_written(lake_env)


def test_fifo_socket_and_device(work, lake_env, tmp_path):
    os.mkfifo(work / "fifo")
    with pytest.raises(eio.UsageError, match="FIFO"):
        eio.save(["ok.txt", "fifo"])
    sock_path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        with pytest.raises(eio.UsageError, match="socket"):
            eio.save([str(sock_path)])
    finally:
        s.close()
    with pytest.raises(eio.UsageError, match="device"):
        eio.save(["/dev/null"])
    (work / "dir").mkdir()
    os.mkfifo(work / "dir/inner-fifo")
    with pytest.raises(eio.UsageError, match="FIFO"):
        eio.save(["dir"])
    assert nothing_written(lake_env)


@pytest.mark.parametrize("name", [".eio", ".eio/metadata.yaml", "a/.eio-tmp-x", "/etc/passwd",
                                  "../up.txt", "a/../../b", "", ".", "a\\b", "bad\nname"])
def test_unsafe_names(work, lake_env, name):
    with pytest.raises(eio.UsageError):
        eio.save({name: "ok.txt"})
    assert nothing_written(lake_env)


def test_reserved_name_in_a_directory(work, lake_env):
    (work / "d/.eio").mkdir(parents=True)
    (work / "d/.eio/x").write_text("x")
    with pytest.raises(eio.UsageError, match="reserved"):
        eio.save(["d"])
    assert nothing_written(lake_env)


def test_two_inputs_same_name(work, lake_env):
    (work / "other").mkdir()
    (work / "other/ok.txt").write_text("other")
    with pytest.raises(eio.UsageError, match="same name"):
        eio.save(["ok.txt", "other/ok.txt"])
    assert nothing_written(lake_env)


@pytest.mark.parametrize("info,match", [
    ({"obj": object()}, "cannot be stored"),
    ({"f": float("nan")}, "finite"),
    ({1: "x"}, "strings"),
    ({"a.b": 1}, "contains '.'"),
    ({"blob": "x" * (2 << 20)}, "limit"),
    ("not a dict", "mapping"),
    ({"set": {1, 2}}, "cannot be stored"),
    ({"type": "t" * 201}, "one of the artifact's tags, at most 200"),
    ({"type": 10 ** 201}, "one of the artifact's tags"),
])
def test_bad_info(work, lake_env, info, match):
    with pytest.raises(eio.UsageError, match=match):
        eio.save(["ok.txt"], info=info)
    assert nothing_written(lake_env)


def test_a_type_as_long_as_a_tag_is_saved_and_found(work, lake_env):
    a = eio.save(["ok.txt"], info={"type": "t" * 200})
    assert eio.search(tags="t" * 200)[0].id == a.id


def test_recursive_info(work, lake_env):
    d: dict = {}
    d["self"] = d
    with pytest.raises(eio.UsageError, match="deeply"):
        eio.save(["ok.txt"], info=d)
    assert nothing_written(lake_env)


@pytest.mark.parametrize("tags", [["a/b"], [""], [".."], [3], ["x\ny"]])
def test_bad_tags(work, lake_env, tags):
    with pytest.raises(eio.UsageError):
        eio.save(["ok.txt"], tags=tags)
    assert nothing_written(lake_env)


@pytest.mark.parametrize("based_on", [["nope"], ["0" * 25], [None]])
def test_bad_based_on(work, lake_env, based_on):
    with pytest.raises(eio.UsageError):
        eio.save(["ok.txt"], based_on=based_on)
    assert nothing_written(lake_env)


def test_bad_user(work, lake_env, monkeypatch):
    monkeypatch.setenv("ELLIPTIO_USER", "../root")
    with pytest.raises(eio.ConfigError, match="invalid user"):
        eio.save(["ok.txt"])


def test_empty_inputs(work, lake_env):
    with pytest.raises(eio.UsageError, match="nothing to save"):
        eio.save([])
    (work / "empty").mkdir()
    with pytest.raises(eio.UsageError, match="nothing to save"):
        eio.save(["empty"])
    (work / "only-empty/a/b").mkdir(parents=True)  # empty directories and no file
    with pytest.raises(eio.UsageError, match="nothing to save"):
        eio.save(["only-empty", "empty"])
    with pytest.raises(eio.UsageError, match="nothing to save"):
        eio.Lake().save_entries([Entry("d", str(work / "empty"), 0, directory=True)],
                                info=None)
    with pytest.raises(eio.UsageError):
        eio.save([42])  # type: ignore[list-item]
    assert nothing_written(lake_env)


@pytest.mark.parametrize("name, match", [
    ("../up", "'..'"), ("/abs", "absolute"), ("x/.eio", "reserved"), ("a\\b", "backslash"),
    ("f.txt/below", "is a file"),
])
def test_unsafe_names_of_empty_directories(work, lake_env, name, match):
    """The names of empty directories obey the rules of file names, and none is a file."""
    (work / "empty").mkdir()
    with pytest.raises(eio.UsageError, match=match):
        eio.save({"f.txt": "ok.txt", name: "empty"})
    (work / "other/ok.txt").mkdir(parents=True)  # an empty directory named like the file
    with pytest.raises(eio.UsageError, match="'ok.txt' is a file"):
        eio.save(["ok.txt", "other/ok.txt"])
    assert nothing_written(lake_env)


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/../../x", ".eio/logs", "a//b", "a\\b",
                                 "f.txt", "f.txt/below", "", 3])
def test_hostile_dirs_in_stored_metadata_are_refused(work, lake_env, tmp_path, bad):
    """A metadata.yaml from the store is untrusted: a ``dirs`` entry save would not have
    written is refused wherever it is read, and a download writes nothing, least of all
    outside its destination."""
    from elliptio import indexer
    from elliptio.artifact import dump_metadata

    lake = eio.Lake()
    good = lake.save({"f.txt": "ok.txt"})
    md = {**good.metadata, "dirs": ["fine/empty", bad]}
    # straight into the catalogue (a hand-edited row, or indexed by an older ElliptIO)
    lake.catalogue.upsert(md)
    dest = tmp_path / "dl" / "inner"
    dest.mkdir(parents=True)
    with pytest.raises(eio.IntegrityError, match="dirs"):
        lake.load(good.id).download(dest)
    assert list(dest.iterdir()) == [] and sorted(os.listdir(tmp_path / "dl")) == ["inner"]
    assert not Path("/abs").exists()
    # read from the store: refused when loaded, and reindex reports it instead of indexing
    key = f"{good.prefix}/.eio/metadata.yaml"
    with pytest.raises(eio.IntegrityError, match="dirs"):
        load_metadata(dump_metadata(md), key)
    root = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))
    meta = root / key
    meta.chmod(0o644)
    meta.write_bytes(dump_metadata(md))
    report = indexer.reindex(lake, full=True)
    assert report.indexed == 0 and "'dirs'" in report.quarantined[0][1]
    lake.close()


def test_unknown_and_malformed_ids(work, lake_env):
    for bad in ["", "xyz", "0" * 27, "u" * 26, "../../etc"]:
        with pytest.raises(eio.UsageError):
            eio.load(bad)
    with pytest.raises(eio.NotFound):
        eio.load("01m87ppfabc0jmwac15b0n6tbg")


@pytest.mark.parametrize("query", ["since=tomorrowish", "file=[", "user", "what=1"])
def test_malformed_queries(work, query):
    with pytest.raises(eio.QueryError):
        eio.search(query)
    with pytest.raises(eio.QueryError):
        eio.search(since="next tuesday")


def test_unwritable_store(work, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setenv("ELLIPTIO_STORE", f"file://{tmp_path}/afile/store")
    with pytest.raises(eio.StorageError):
        eio.save(["ok.txt"])
    assert eio.search() == []


def test_bad_store_and_catalogue_urls(work, monkeypatch):
    monkeypatch.setenv("ELLIPTIO_STORE", "ftp://somewhere")
    with pytest.raises(eio.ConfigError, match="unknown store URL"):
        eio.save(["ok.txt"])
    monkeypatch.setenv("ELLIPTIO_STORE", "file://relative/path")
    with pytest.raises(eio.ConfigError):
        eio.save(["ok.txt"])
    monkeypatch.delenv("ELLIPTIO_STORE")
    monkeypatch.setenv("ELLIPTIO_CATALOGUE", "redis://x")
    with pytest.raises(eio.ConfigError, match="unknown catalogue URL"):
        eio.search()


def test_corrupt_catalogue(work, tmp_path, monkeypatch, lake_env):
    path = Path(lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///"))
    path.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(eio.CatalogueError, match="corrupt"):
        eio.search()
    # a save still refuses to half-happen: nothing is written to the store
    with pytest.raises(eio.CatalogueError):
        eio.save(["ok.txt"])
    root = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_locked_catalogue(work, lake_env, lake, monkeypatch):
    """Another process holds the write lock: the save lands in the store, says the catalogue
    was not updated, and reindex recovers it once the lock is gone."""
    from elliptio import indexer
    from elliptio.catalogue import sqlite as sq

    monkeypatch.setattr(sq, "BUSY_TIMEOUT", 0.2)
    first = eio.save(["ok.txt"])
    path = lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(eio.CatalogueError, match="locked"):
            lake.catalogue.upsert(first.metadata)
        a = lake.save(["ok.txt"])
        assert a.catalogued is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert lake.catalogue.get(a.id) is None
    indexer.reindex(lake)
    assert lake.catalogue.get(a.id) is not None
