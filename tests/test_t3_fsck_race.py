"""``eio fsck --remove-orphans`` takes only what is certainly abandoned (issue 15, item 4),
and the local store never follows a symbolic link planted in it (item 9).

The race tests run fsck with ``remove_orphans`` in a loop, in a thread, while a large save
runs (its store writes slowed so the loop really overlaps it), on the local store and on a
real SeaweedFS, with ``orphan_min_age=0``: as aggressive as fsck allows. What protects the
save then is the floor (:data:`~elliptio.indexer.orphans.ORPHAN_MIN_AGE_FLOOR`, an hour
since the newest object under the prefix); the listing / re-check / second listing /
listed-versions-only steps are tested on their own, each by writing into the prefix at the
moment it guards.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from elliptio import Lake, indexer
from elliptio.cli import cli as cli_main
from elliptio.errors import NotFound
from elliptio.ids import new_id
from elliptio.indexer import orphans
from elliptio.store.s3 import upload as s3upload

DAY = 86400


def _orphan_prefix(lake: Lake, days_ago: float = 0) -> str:
    aid = new_id(int((time.time() - days_ago * DAY) * 1000))
    t = time.gmtime(time.time() - days_ago * DAY)
    return f"{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/andy/{aid}"


def _age_local(root: Path, prefix: str, days: float) -> None:
    when = time.time() - days * DAY
    for p in [root / prefix, *(root / prefix).rglob("*")]:
        os.utime(p, (when, when), follow_symlinks=False)


def _store_root(lake: Lake) -> Path:
    return lake.store.root  # type: ignore[attr-defined]


def _later(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    """fsck's clock *days* ahead: ages a prefix whose store sets its own times (S3)."""
    monkeypatch.setattr(orphans, "clock", lambda: time.time() + days * DAY)


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest) -> Iterator[Lake]:
    yield request.getfixturevalue("lake" if request.param == "local" else "s3_lake")


# -- the minimum age ---------------------------------------------------------------------
def test_default_minimum_age_is_at_least_a_day() -> None:
    default = inspect.signature(indexer.fsck).parameters["orphan_min_age"].default
    assert default == orphans.ORPHAN_MIN_AGE >= DAY
    assert orphans.ORPHAN_MIN_AGE_FLOOR >= 3600
    cmd = cli_main.commands["fsck"]  # type: ignore[attr-defined]
    opt = next(p for p in cmd.params if p.name == "orphan_min_age")
    assert opt.default >= DAY
    out = CliRunner().invoke(cli_main, ["fsck", "--help"], terminal_width=200).output
    assert "86400" in out and "newest object" in out


def test_age_is_from_the_newest_object_not_the_id(lake: Lake) -> None:
    root = _store_root(lake)
    prefix = _orphan_prefix(lake, days_ago=3)  # its id says three days ago
    lake.store.put_bytes(f"{prefix}/old.bin", b"old")
    _age_local(root, prefix, days=3)
    lake.store.put_bytes(f"{prefix}/new.bin", b"written 23 hours ago")
    when = time.time() - 23 * 3600
    os.utime(root / prefix / "new.bin", (when, when))
    os.utime(root / prefix, (when, when))
    kept = indexer.fsck(lake, remove_orphans=True)
    assert kept.removed_orphans == [] and kept.orphans == [prefix]
    assert kept.kept_orphans[0].startswith(f"{prefix}: too young")
    assert sorted(lake.store.list(prefix)) == [f"{prefix}/new.bin", f"{prefix}/old.bin"]
    _age_local(root, prefix, days=1.1)  # now a day and a bit since the newest write
    gone = indexer.fsck(lake, remove_orphans=True)
    assert gone.removed_orphans == [prefix] and not (root / prefix).exists()


def test_floor_applies_to_a_smaller_minimum_age(lake: Lake) -> None:
    root = _store_root(lake)
    prefix = _orphan_prefix(lake)
    lake.store.put_bytes(f"{prefix}/half.bin", b"half")
    _age_local(root, prefix, days=1800 / DAY)  # half an hour: under the floor
    kept = indexer.fsck(lake, remove_orphans=True, orphan_min_age=0)
    assert kept.removed_orphans == [] and lake.store.exists(f"{prefix}/half.bin")
    _age_local(root, prefix, days=2 * 3600 / DAY)  # two hours: over it
    gone = indexer.fsck(lake, remove_orphans=True, orphan_min_age=0)
    assert gone.removed_orphans == [prefix] and not lake.store.exists(f"{prefix}/half.bin")


def test_an_old_abandoned_prefix_is_removed(any_lake: Lake, monkeypatch) -> None:
    prefix = _orphan_prefix(any_lake, days_ago=5)
    any_lake.store.put_bytes(f"{prefix}/a.bin", b"a")
    any_lake.store.put_bytes(f"{prefix}/deep/b.bin", b"b")
    young = indexer.fsck(any_lake, remove_orphans=True)
    assert young.removed_orphans == [] and len(list(any_lake.store.list(prefix))) == 2
    _later(monkeypatch, days=2)
    report = indexer.fsck(any_lake, remove_orphans=True)
    assert report.removed_orphans == [prefix] and report.kept_orphans == []
    assert list(any_lake.store.list(prefix)) == [] and any_lake.store.inventory(prefix) == []
    assert indexer.fsck(any_lake).clean


# -- each step of the removal, with a writer at the moment it guards ----------------------
def test_new_object_between_listing_and_delete_keeps_the_prefix(any_lake: Lake,
                                                                monkeypatch) -> None:
    store = any_lake.store
    prefix = _orphan_prefix(any_lake)
    store.put_bytes(f"{prefix}/a.bin", b"a")
    _later(monkeypatch, days=2)
    real_exists = store.exists
    checks: list[str] = []

    def exists_and_write(key: str) -> bool:
        if key == f"{prefix}/.eio/metadata.yaml":
            checks.append(key)
            if len(checks) == 2:  # the re-check, after the first listing
                store.put_bytes(f"{prefix}/b.bin", b"a save is still writing")
        return real_exists(key)

    monkeypatch.setattr(store, "exists", exists_and_write)
    report = orphans.sweep(store, set(), remove=True)
    assert report.removed == [] and len(checks) >= 2
    assert report.kept == [f"{prefix}: changed meanwhile: written to since it was listed"]
    assert sorted(store.list(prefix)) == [f"{prefix}/a.bin", f"{prefix}/b.bin"]


def test_object_written_during_removal_stays(any_lake: Lake, monkeypatch) -> None:
    store = any_lake.store
    prefix = _orphan_prefix(any_lake)
    store.put_bytes(f"{prefix}/a.bin", b"a")
    _later(monkeypatch, days=2)
    real_remove = store.remove_orphan

    def write_then_remove(p: str, listed: object = None) -> int:
        store.put_bytes(f"{prefix}/late.bin", b"after the second listing")
        return real_remove(p, listed)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "remove_orphan", write_then_remove)
    report = orphans.sweep(store, set(), remove=True)
    assert report.removed == [] and "written during the removal" in report.kept[0]
    assert list(store.list(prefix)) == [f"{prefix}/late.bin"]
    assert store.read_bytes(f"{prefix}/late.bin") == b"after the second listing"


def test_metadata_written_after_the_check_is_never_deleted(any_lake: Lake,
                                                           monkeypatch) -> None:
    store = any_lake.store
    prefix = _orphan_prefix(any_lake)
    store.put_bytes(f"{prefix}/a.bin", b"a")
    _later(monkeypatch, days=2)
    real_inventory = store.inventory
    calls: list[int] = []

    def inventory_then_commit(p: str):  # the second listing, then the save commits
        listed = real_inventory(p)
        calls.append(1)
        if len(calls) == 2:
            store.put_bytes(f"{prefix}/.eio/metadata.yaml", b"id: committed")
        return listed

    monkeypatch.setattr(store, "inventory", inventory_then_commit)
    report = orphans.sweep(store, set(), remove=True)
    assert report.kept == [f"{prefix}: committed meanwhile"]
    assert store.read_bytes(f"{prefix}/.eio/metadata.yaml") == b"id: committed"
    assert store.read_bytes(f"{prefix}/a.bin") == b"a"


def test_s3_metadata_behind_a_delete_marker_is_not_deleted(s3_lake: Lake, monkeypatch) -> None:
    """A metadata.yaml whose latest version is a delete marker does not "exist", so the
    prefix is an orphan; its metadata.yaml versions are still never deleted."""
    store = s3_lake.store
    prefix = _orphan_prefix(s3_lake)
    store.put_bytes(f"{prefix}/a.bin", b"a")
    store.put_bytes(f"{prefix}/.eio/metadata.yaml", b"id: x")
    s3key = store._key(f"{prefix}/.eio/metadata.yaml")  # type: ignore[attr-defined]
    store.client.delete_object(Bucket=store.bucket, Key=s3key)  # type: ignore[attr-defined]
    assert not store.exists(f"{prefix}/.eio/metadata.yaml")
    _later(monkeypatch, days=2)
    orphans.sweep(store, set(), remove=True)
    left = store.inventory(prefix)
    assert [o.key for o in left if o.kind == "object"] == [f"{prefix}/.eio/metadata.yaml"]
    assert not store.exists(f"{prefix}/a.bin")


# -- fsck in a loop beside a large save ---------------------------------------------------
def test_fsck_loop_during_a_large_save_never_touches_it(any_lake: Lake, tmp_path: Path,
                                                       monkeypatch) -> None:
    src = tmp_path / "big"
    src.mkdir()
    datas = {f"f{i:03d}.bin": os.urandom(20_000 + i) for i in range(120)}
    for name, data in datas.items():
        (src / name).write_bytes(data)
    store = any_lake.store
    monkeypatch.setattr(s3upload, "MULTIPART_THRESHOLD", 1 << 30)
    real_stage = store.stage

    def slow_stage(key: str, source: str, progress=None):  # a slow file source
        time.sleep(0.02)
        return real_stage(key, source, progress)

    monkeypatch.setattr(store, "stage", slow_stage)
    stop = threading.Event()
    seen: list[indexer.FsckReport] = []
    errors: list[BaseException] = []

    def fsck_loop() -> None:
        try:
            while not stop.is_set():
                seen.append(indexer.fsck(any_lake, remove_orphans=True, orphan_min_age=0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    loop = threading.Thread(target=fsck_loop)
    loop.start()
    try:
        artifact = any_lake.save([str(src / n) for n in sorted(datas)])
    finally:
        stop.set()
        loop.join(60)
    assert errors == []
    prefix = artifact.metadata["prefix"]
    # the loop did overlap the save: it saw the prefix as an orphan, and kept it
    saw = [r for r in seen if prefix in r.orphans]
    assert saw, f"fsck never ran while the save was writing ({len(seen)} runs)"
    assert all(prefix not in r.removed_orphans for r in seen)
    assert all(any(k.startswith(f"{prefix}: too young") for k in r.kept_orphans) for r in saw)
    for name, data in datas.items():
        assert artifact.files[name].read_bytes() == data
    assert indexer.fsck(any_lake, verify=True).clean


# -- symbolic links planted in a local store (item 9) -------------------------------------
@pytest.fixture
def planted(lake: Lake, tmp_path: Path) -> tuple[Lake, str, Path]:
    """An artifact prefix with a link to a secret outside the store, and an orphan whose
    directory is a link to a directory outside the store."""
    root = _store_root(lake)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not for the lake")
    prefix = _orphan_prefix(lake)
    lake.store.put_bytes(f"{prefix}/real.bin", b"real")
    (root / prefix / "passwd").symlink_to("/etc/passwd")
    (root / prefix / "secret").symlink_to(secret)
    (root / prefix / "dir").symlink_to(secret.parent, target_is_directory=True)
    return lake, prefix, secret


def test_a_planted_symlink_is_not_served(planted, tmp_path: Path) -> None:
    lake, prefix, _secret = planted
    store = lake.store
    for name in ("passwd", "secret", "dir/secret.txt"):
        key = f"{prefix}/{name}"
        assert not store.exists(key)
        for read in (store.read_bytes, store.open, store.size,
                     lambda k: store.read_range(k, 0, 10),
                     lambda k: store.download(k, str(tmp_path / "dl"))):
            with pytest.raises(NotFound):
                read(key)
    assert not (tmp_path / "dl").exists()
    assert store.read_bytes(f"{prefix}/real.bin") == b"real"


def test_a_planted_symlink_is_not_listed(planted) -> None:
    lake, prefix, _secret = planted
    store = lake.store
    assert list(store.list(prefix)) == [f"{prefix}/real.bin"]
    assert [o.key for o in store.list_stat(prefix)] == [f"{prefix}/real.bin"]
    assert {o.key for o in store.inventory(prefix) if o.kind != "directory"} == \
        {f"{prefix}/real.bin"}
    assert list(store.list_metadata("")) == []


def test_a_parent_that_is_a_symlink_is_not_followed(lake: Lake, tmp_path: Path,
                                                    monkeypatch) -> None:
    root = _store_root(lake)
    outside = tmp_path / "elsewhere"
    (outside / "keep.bin").parent.mkdir(parents=True)
    (outside / "keep.bin").write_bytes(b"outside the store")
    prefix = _orphan_prefix(lake, days_ago=3)
    (root / prefix).parent.mkdir(parents=True, exist_ok=True)
    (root / prefix).symlink_to(outside, target_is_directory=True)
    assert list(lake.store.list(prefix)) == []
    with pytest.raises(NotFound):
        lake.store.read_bytes(f"{prefix}/keep.bin")
    assert lake.store.remove_orphan(prefix) == 0
    _later(monkeypatch, days=5)
    indexer.fsck(lake, remove_orphans=True)
    assert (outside / "keep.bin").read_bytes() == b"outside the store"


def test_remove_orphan_does_not_follow_a_planted_symlink(planted, monkeypatch) -> None:
    lake, prefix, secret = planted
    _later(monkeypatch, days=5)
    report = indexer.fsck(lake, remove_orphans=True)
    assert secret.read_text() == "not for the lake"  # the target outside is untouched
    assert Path("/etc/passwd").exists()
    assert not lake.store.exists(f"{prefix}/real.bin")  # the real object went
    assert report.removed_orphans == []  # the links stay, so the directory does
    assert report.kept_orphans == [f"{prefix}: locked: 1 entry(ies) could not be removed "
                                   f"(Object Lock retention, or not a store object)"]
