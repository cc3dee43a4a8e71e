"""The store contract (elliptio/store/base.py), once, for every store: local, in memory
and S3 on a real SeaweedFS. Transfer sizes are shrunk so multipart uploads and parallel
ranged downloads happen with files of a few MiB."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest

from elliptio.errors import Immutable, IntegrityError, NotFound, StorageError
from elliptio.store import Store, open_store
from elliptio.store.s3 import download as s3download
from elliptio.store.s3 import upload as s3upload

PREFIX = "2026/11/24/andy/01aaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "local":
        st = open_store(f"file://{tmp_path}/store")
    elif request.param == "memory":
        st = open_store(f"memory://contract-{os.urandom(6).hex()}")
    else:
        seaweedfs = request.getfixturevalue("seaweedfs")
        for k, v in seaweedfs.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(s3upload, "MULTIPART_THRESHOLD", 1 << 20)
        monkeypatch.setattr(s3upload, "PART_SIZE", 5 << 20)  # S3's smallest part
        monkeypatch.setattr(s3download, "RANGE_SIZE", 1 << 20)
        bucket = seaweedfs.create_bucket()
        st = open_store(f"s3://{bucket}/some/prefix", lock_mode="GOVERNANCE", lock_days=1)
    st.check()
    yield st
    st.close()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


SIZES = [0, 1, 4096, (1 << 20) + 7, (11 << 20) + 3]  # empty, tiny, small, PUT/part edge, 3 parts


@pytest.mark.parametrize("size", SIZES)
def test_stage_commit_read_back(store: Store, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    seen: list[int] = []
    staged = store.stage(f"{PREFIX}/d/f.bin", write(tmp_path / "src", data), seen.append)
    assert staged.digest.sha256 == hashlib.sha256(data).hexdigest()
    assert staged.digest.size == size
    committed: list[int] = []
    staged.commit(committed.append)
    key = f"{PREFIX}/d/f.bin"
    assert store.exists(key) and store.size(key) == size
    assert store.read_bytes(key) == data
    assert sum(committed) == size
    with store.open(key) as f:
        assert f.read() == data
        if size > 10:
            f.seek(size // 2)
            assert f.read(5) == data[size // 2: size // 2 + 5]
            f.seek(-3, io.SEEK_END)
            assert f.read() == data[-3:]
    dl = tmp_path / "out" / "f.bin"
    dl.parent.mkdir()
    dl.write_bytes(b"old content, replaced whole")
    progress: list[int] = []
    digest = store.download(key, str(dl), progress.append)
    assert (digest.sha256, digest.size) == (staged.digest.sha256, size)
    assert dl.read_bytes() == data and sum(progress) == size
    assert sorted(p.name for p in dl.parent.iterdir()) == ["f.bin"]  # no temporary left


def test_read_range_edges(store: Store) -> None:
    data = bytes(range(256)) * 40
    store.put_bytes(f"{PREFIX}/r", data)
    key = f"{PREFIX}/r"
    assert store.read_range(key, 0, 10) == data[:10]
    assert store.read_range(key, 5000, 100) == data[5000:5100]
    assert store.read_range(key, len(data) - 4, 100) == data[-4:]  # short only at the end
    assert store.read_range(key, len(data), 10) == b""
    assert store.read_range(key, len(data) + 99, 10) == b""
    assert store.read_range(key, 3, 0) == b""


def test_never_overwrites(store: Store, tmp_path: Path) -> None:
    key = f"{PREFIX}/x.txt"
    store.put_bytes(key, b"first")
    with pytest.raises(Immutable):
        store.put_bytes(key, b"second")
    staged = store.stage(key, write(tmp_path / "s", b"third"))
    with pytest.raises(Immutable):
        staged.commit()
    staged.discard()
    big = store.stage(key, write(tmp_path / "b", os.urandom(6 << 20)))
    with pytest.raises(Immutable):
        big.commit()
    assert store.read_bytes(key) == b"first"


def test_discard_leaves_nothing(store: Store, tmp_path: Path) -> None:
    for i, size in enumerate((10, 6 << 20)):
        staged = store.stage(f"{PREFIX}/gone{i}", write(tmp_path / f"s{i}", os.urandom(size)))
        staged.discard()
        staged.discard()  # twice is harmless
        assert not store.exists(f"{PREFIX}/gone{i}")
    assert list(store.list(PREFIX)) == []


def test_missing_keys(store: Store, tmp_path: Path) -> None:
    key = f"{PREFIX}/nope"
    assert not store.exists(key)
    for call in (lambda: store.size(key), lambda: store.read_range(key, 0, 5),
                 lambda: store.read_bytes(key), lambda: store.open(key),
                 lambda: store.download(key, str(tmp_path / "d"))):
        with pytest.raises(NotFound):
            call()
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "", "a/../../b"])
def test_invalid_keys(store: Store, key: str) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")
    with pytest.raises(StorageError):
        store.exists(key)
    with pytest.raises(StorageError):  # never a walk over the whole store, or outside it
        store.remove_orphan(key)


def test_listing(store: Store) -> None:
    other = "2026/11/24/brenda/01bbbbbbbbbbbbbbbbbbbbbbbb"
    for key in (f"{PREFIX}/a.txt", f"{PREFIX}/sub/b.txt", f"{PREFIX}/.eio/metadata.yaml",
                f"{other}/c.txt"):
        store.put_bytes(key, key.encode())
    assert sorted(store.list(PREFIX)) == sorted(
        [f"{PREFIX}/a.txt", f"{PREFIX}/sub/b.txt", f"{PREFIX}/.eio/metadata.yaml"])
    assert sorted(store.list()) == sorted(
        [f"{PREFIX}/a.txt", f"{PREFIX}/sub/b.txt", f"{PREFIX}/.eio/metadata.yaml",
         f"{other}/c.txt"])
    assert list(store.list_metadata()) == [f"{PREFIX}/.eio/metadata.yaml"]
    assert sorted(store.list_artifact_dirs()) == sorted([PREFIX, other])
    assert list(store.list("2025")) == []


def test_listing_pages(store: Store) -> None:
    keys = {f"{PREFIX}/many/{i:05d}" for i in range(1100)}  # more than one S3 page (1000)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_bytes(k, b"."), keys))
    assert set(store.list(PREFIX)) == keys


def test_remove_orphan(store: Store, tmp_path: Path) -> None:
    committed = PREFIX
    orphan = "2026/11/24/andy/01cccccccccccccccccccccccc"
    store.put_bytes(f"{committed}/a", b"a")
    store.put_bytes(f"{committed}/.eio/metadata.yaml", b"id: x")
    store.put_bytes(f"{orphan}/a", b"a")
    store.put_bytes(f"{orphan}/deep/b", b"b")
    with pytest.raises(Immutable):
        store.remove_orphan(committed)
    assert store.read_bytes(f"{committed}/a") == b"a"
    assert store.remove_orphan(orphan) == 2
    assert list(store.list(orphan)) == []
    assert orphan not in set(store.list_artifact_dirs())


def test_list_stat_gives_sizes_and_times(store: Store) -> None:
    before = time.time()
    store.put_bytes(f"{PREFIX}/a", b"a")
    store.put_bytes(f"{PREFIX}/deep/b", b"bbb")
    after = time.time()
    stats = {o.key: o for o in store.list_stat(PREFIX)}
    assert set(stats) == set(store.list(PREFIX)) == {f"{PREFIX}/a", f"{PREFIX}/deep/b"}
    assert (stats[f"{PREFIX}/a"].size, stats[f"{PREFIX}/deep/b"].size) == (1, 3)
    for o in stats.values():  # S3 times are whole seconds: a little slack
        assert before - 2 <= o.mtime <= after + 2, (o, before, after)
    listed = store.inventory(PREFIX)
    assert {o.key for o in listed if o.kind == "object"} == set(stats)
    assert max(o.mtime for o in listed) >= max(o.mtime for o in stats.values())
    assert set(store.inventory(PREFIX)) == set(listed)  # unchanged: an equal listing


def test_remove_orphan_removes_only_what_was_listed(store: Store) -> None:
    orphan = "2026/11/24/andy/01cccccccccccccccccccccccc"
    store.put_bytes(f"{orphan}/a", b"a")
    listed = store.inventory(orphan)
    store.put_bytes(f"{orphan}/late", b"written after the listing")
    assert store.remove_orphan(orphan, listed) == 1
    assert list(store.list(orphan)) == [f"{orphan}/late"]
    assert store.read_bytes(f"{orphan}/late") == b"written after the listing"


def test_remove_orphan_refuses_once_metadata_appears(store: Store) -> None:
    orphan = "2026/11/24/andy/01cccccccccccccccccccccccc"
    store.put_bytes(f"{orphan}/a", b"a")
    listed = store.inventory(orphan)
    store.put_bytes(f"{orphan}/.eio/metadata.yaml", b"id: x")  # the save committed
    with pytest.raises(Immutable):
        store.remove_orphan(orphan, listed)
    assert sorted(store.list(orphan)) == [f"{orphan}/.eio/metadata.yaml", f"{orphan}/a"]


def test_remove_orphan_never_deletes_metadata_even_if_listed(store: Store,
                                                             monkeypatch) -> None:
    """Even when the re-check misses it (a window, a lying server), a listed
    metadata.yaml is not deleted."""
    orphan = "2026/11/24/andy/01cccccccccccccccccccccccc"
    store.put_bytes(f"{orphan}/a", b"a")
    store.put_bytes(f"{orphan}/.eio/metadata.yaml", b"id: x")
    listed = store.inventory(orphan)
    assert f"{orphan}/.eio/metadata.yaml" in {o.key for o in listed}
    real_exists = store.exists
    monkeypatch.setattr(store, "exists", lambda key: False if key.endswith("metadata.yaml")
                        else real_exists(key))
    with contextlib.suppress(Immutable):  # the in-memory store checks under its lock
        store.remove_orphan(orphan, listed)
    assert store.read_bytes(f"{orphan}/.eio/metadata.yaml") == b"id: x"


def test_source_changed_after_staging(store: Store, tmp_path: Path) -> None:
    """Whatever a store does, what it commits is what it hashed, or it refuses."""
    src = tmp_path / "changing"
    for size in (100, 6 << 20):
        key = f"{PREFIX}/changing-{size}"
        src.write_bytes(b"a" * size)
        staged = src_stage = store.stage(key, str(src))
        src.write_bytes(b"b" * (size + 1))
        try:
            staged.commit()
        except IntegrityError:
            src_stage.discard()
            assert not store.exists(key)
        else:
            assert hashlib.sha256(store.read_bytes(key)).hexdigest() == staged.digest.sha256


def test_concurrent_writers(store: Store, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    datas = {i: os.urandom(1000 + i) for i in range(40)}

    def work(i: int) -> None:
        try:
            s = store.stage(f"{PREFIX}/c/{i}", write(tmp_path / f"c{i}", datas[i]))
            s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, d in datas.items():
        assert store.read_bytes(f"{PREFIX}/c/{i}") == d
