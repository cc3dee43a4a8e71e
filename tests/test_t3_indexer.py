"""The indexer: reindex (resumable, since, into any catalogue), fsck, and the Lambda handler
fed with the JSON shapes S3 really sends."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from elliptio import Lake, Settings, indexer
from elliptio.artifact import dump_metadata
from elliptio.catalogue import Catalogue
from elliptio.catalogue.sqlite import SQLiteCatalogue
from elliptio.errors import CatalogueError
from elliptio.ids import new_id
from elliptio.query import Query

from .catalogue_corpus import DAY, make_metadata
from .fixtures.trees import expected_dirs, make_tree


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def put_artifact(lake: Lake, md: dict, *, logs: bool = True) -> dict:
    """Write an artifact the way Lake.save_entries lays it out (bytes, logs, metadata last)."""
    for f in md["files"]:
        lake.store.put_bytes(f["object"], f["path"].encode())
    if logs:
        for rec in (md.get("logs") or {}).values():
            lake.store.put_bytes(rec["object"], b"PyYAML==6.0.1\nelliptio==0.1.0\n")
    lake.store.put_bytes(f"{md['prefix']}/.eio/metadata.yaml", dump_metadata(md))
    lake.store.seal(md["prefix"])
    return md


def synthetic(lake: Lake, n: int, *, start_ms: int | None = None, step_ms: int = 1,
              user: str = "andy", **kw) -> list[dict]:
    start = start_ms if start_ms is not None else now_ms() - n * step_ms - 1000
    return [put_artifact(lake, make_metadata(ms=start + i * step_ms, user=user,
                                             files=[f"f{i}.txt"], **kw))
            for i in range(n)]


@pytest.fixture(params=["sqlite", "mongomock"])
def fresh(request, tmp_path) -> Catalogue:
    """An empty catalogue of each backend, to reindex into."""
    if request.param == "sqlite":
        c: Catalogue = SQLiteCatalogue(f"sqlite:///{tmp_path}/fresh.sqlite")
    else:
        import mongomock

        from elliptio.catalogue.mongo import MongoCatalogue

        c = MongoCatalogue("mongodb://mock/", client=mongomock.MongoClient())
    yield c
    c.close()


def all_ids(c: Catalogue) -> list[str]:
    return [m["id"] for m in c.find(Query(limit=None))]


# -- reindex --------------------------------------------------------------------------------
def test_reindex_into_a_fresh_catalogue(lake, fresh, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.txt").write_text("a,b\n1,2\n")
    saved = [lake.save([str(work / "train.txt")], type="dataset_list", tags=["dataset"])
             for _ in range(2)]
    synth = synthetic(lake, 60)
    seen = []
    report = indexer.reindex(lake, catalogue=fresh, batch_size=25, progress=seen.append)
    assert (report.scanned, report.indexed, report.skipped, report.quarantined) == (62, 62, 0, [])
    assert sum(seen) == 62 and len(seen) == 3
    assert sorted(all_ids(fresh)) == sorted([a.id for a in saved] + [m["id"] for m in synth])
    assert fresh.get(saved[0].id) == lake.catalogue.get(saved[0].id)
    assert [m["id"] for m in fresh.find(Query.parse("tag=dataset,file=*.txt"))] == \
        [a.id for a in reversed(saved)]


def test_reindex_keeps_empty_directories(lake, fresh, tmp_path):
    """Rebuilt from the store into either backend, an artifact keeps its empty
    directories: the mount and the web page show what the catalogue's row holds."""
    from elliptio.artifact import Artifact

    a = lake.save([str(make_tree(tmp_path / "tree"))])
    plain = synthetic(lake, 1)[0]  # no dirs key: indexed as it is
    report = indexer.reindex(lake, catalogue=fresh, full=True)
    assert (report.indexed, report.quarantined) == (2, [])
    row = fresh.get(a.id)
    assert row is not None and row["dirs"] == expected_dirs("tree") == a.dirs
    assert Artifact(row, lake).dirs == expected_dirs("tree")
    assert "dirs" not in fresh.get(plain["id"]) and Artifact(fresh.get(plain["id"]),
                                                             lake).dirs == []


def test_reindex_resumes_and_is_idempotent(lake, fresh):
    synthetic(lake, 45)

    class Interrupted(Exception):
        pass

    calls = []

    def die_after_two_batches(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        indexer.reindex(lake, catalogue=fresh, batch_size=10, progress=die_after_two_batches)
    assert len(all_ids(fresh)) == 20
    again = indexer.reindex(lake, catalogue=fresh, batch_size=10)
    assert (again.scanned, again.skipped, again.indexed) == (45, 20, 25)
    third = indexer.reindex(lake, catalogue=fresh)
    assert (third.skipped, third.indexed) == (45, 0)
    full = indexer.reindex(lake, catalogue=fresh, full=True)
    assert (full.skipped, full.indexed) == (0, 45)
    assert len(all_ids(fresh)) == 45


def test_reindex_since_lists_only_recent_days(lake, fresh):
    now = now_ms()
    old = synthetic(lake, 3, start_ms=now - 30 * DAY, step_ms=DAY)
    recent = synthetic(lake, 4, start_ms=now - 2 * DAY, step_ms=DAY // 4)
    report = indexer.reindex(lake, catalogue=fresh, since="3d")
    assert report.scanned == 4 and sorted(all_ids(fresh)) == sorted(m["id"] for m in recent)
    day = old[1]["prefix"][:10]  # YYYY/MM/DD, the store layout's own form
    report = indexer.reindex(lake, catalogue=fresh, since=day)
    assert report.scanned == 6 and report.indexed == 2  # old[1] and old[2]
    assert indexer.reindex(lake, catalogue=fresh, since="2000-01-01").scanned == 7


def test_reindex_reports_malformed_metadata_and_indexes_the_rest(lake, fresh):
    good = synthetic(lake, 3)
    bad_id = new_id()
    prefix = f"{good[0]['prefix'][:10]}/andy/{bad_id}"
    lake.store.put_bytes(f"{prefix}/.eio/metadata.yaml", b"id: [unclosed\n  - : :")
    stray = make_metadata()  # valid metadata, but lying under another artifact's id
    other = f"{stray['prefix'].rsplit('/', 1)[0]}/{new_id()}"
    lake.store.put_bytes(f"{other}/.eio/metadata.yaml", dump_metadata(stray))
    report = indexer.reindex(lake, catalogue=fresh)
    assert report.indexed == 3 and report.scanned == 5
    reasons = dict(report.quarantined)
    assert "not valid YAML" in reasons[f"{prefix}/.eio/metadata.yaml"]
    assert "is not its directory" in reasons[f"{other}/.eio/metadata.yaml"]
    # malformed ones are re-read (and re-reported) by every run: they are not catalogued
    assert len(indexer.reindex(lake, catalogue=fresh).quarantined) == 2


def test_reindex_catalogue_failure_raises_and_a_rerun_resumes(lake, fresh):
    synthetic(lake, 30)
    real = fresh.claim_many
    calls = []

    def flaky(items):
        calls.append(1)
        if len(calls) == 2:
            raise CatalogueError("catalogue down (injected)")
        return real(items)

    fresh.claim_many = flaky  # type: ignore[method-assign]
    with pytest.raises(CatalogueError):
        indexer.reindex(lake, catalogue=fresh, batch_size=10)
    fresh.claim_many = real  # type: ignore[method-assign]
    assert indexer.reindex(lake, catalogue=fresh, batch_size=10).indexed == 20


def test_migrate_and_copy_catalogue(lake, tmp_path):
    import mongomock

    from elliptio.catalogue.mongo import MongoCatalogue

    synth = synthetic(lake, 12, tags=["t"])
    indexer.reindex(lake)
    url = f"sqlite:///{tmp_path}/team.sqlite"
    report = indexer.migrate(lake, url)
    assert report.indexed == 12 and report.catalogue == url
    team = SQLiteCatalogue(url)
    assert sorted(all_ids(team)) == sorted(m["id"] for m in synth)
    mongo = MongoCatalogue("mongodb://mock/", client=mongomock.MongoClient())
    assert indexer.copy_catalogue(team, mongo, batch_size=5) == 12
    assert all_ids(mongo) == all_ids(team)
    assert mongo.get(synth[3]["id"]) == team.get(synth[3]["id"])
    team.close()


# -- fsck -----------------------------------------------------------------------------------
def _writable(path: Path) -> None:
    for p in [*reversed(path.parents), path]:
        if p.exists() and not os.access(p, os.W_OK):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


def test_fsck_finds_every_kind_of_problem(lake, tmp_path):
    store_root = Path(lake.store.root)  # type: ignore[attr-defined]
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("hello world\n")
    (work / "b.txt").write_text("second file\n")
    a = lake.save([str(work / "a.txt"), str(work / "b.txt")])
    b = lake.save([str(work / "a.txt")])  # deduplicated: b's file is a's object
    c = lake.save([str(work / "b.txt")])
    (work / "c.txt").write_text("third file!\n")
    d = lake.save({"x.bin": str(work / "c.txt")})
    clean = indexer.fsck(lake, verify=True)
    assert clean.clean and clean.checked == 4 and clean.bytes_verified > 0, clean

    # 1. a catalogue row deleted
    db = sqlite3.connect(lake.catalogue.path)  # type: ignore[attr-defined]
    with db:
        db.execute("DELETE FROM artifacts WHERE id = ?", (c.id,))
    db.close()
    # 2. a catalogue row whose metadata.yaml is not in the store
    ghost = make_metadata(user="andy")
    lake.catalogue.upsert(ghost)
    # 3. an orphan of an interrupted save
    orphan = f"{a.metadata['prefix'].rsplit('/', 1)[0]}/{new_id()}"
    (store_root / orphan / "data").mkdir(parents=True)
    (store_root / orphan / "data" / "part.bin").write_bytes(b"half")
    # 4. one byte of a's b.txt flipped (same size: only --verify sees it)
    target = store_root / a.files["b.txt"].object
    _writable(target)
    raw = bytearray(target.read_bytes())
    raw[0] ^= 0x01
    target.write_bytes(bytes(raw))
    # 5. d's object truncated (the size check sees it)
    d_obj = store_root / d.files["x.bin"].object
    _writable(d_obj)
    d_obj.write_bytes(b"short")

    quick = indexer.fsck(lake)
    assert quick.missing_from_catalogue == [c.id]
    assert quick.missing_from_store == [ghost["id"]]
    assert quick.orphans == [orphan]
    assert quick.mismatches == [f"{d.id}/x.bin: size differs (5 bytes, recorded 12)"]
    assert not quick.clean and quick.removed_orphans == []

    full = indexer.fsck(lake, verify=True)
    # c's b.txt is deduplicated onto a's object: both report the flipped byte
    assert sorted(m.split(":")[0] for m in full.mismatches) == \
        sorted([f"{a.id}/b.txt", f"{c.id}/b.txt", f"{d.id}/x.bin"])
    assert all(b.id not in m for m in full.mismatches)  # b shares a's a.txt, intact

    kept = indexer.fsck(lake, remove_orphans=True)  # written just now: a save may be running
    assert kept.orphans == [orphan] and kept.removed_orphans == []
    assert [k.split(": ")[0] for k in kept.kept_orphans] == [orphan]
    two_days_ago = time.time() - 2 * 86400  # older than the default minimum age, a day
    for p in [store_root / orphan, *(store_root / orphan).rglob("*")]:
        os.utime(p, (two_days_ago, two_days_ago))
    removed = indexer.fsck(lake, remove_orphans=True)
    assert removed.removed_orphans == [orphan] and not (store_root / orphan).exists()
    assert indexer.fsck(lake).orphans == []
    # reindex repairs what it can: the missing row comes back
    indexer.reindex(lake)
    assert indexer.fsck(lake).missing_from_catalogue == []


def test_fsck_reports_missing_objects_and_malformed_metadata(lake):
    md = synthetic(lake, 2)
    store_root = Path(lake.store.root)  # type: ignore[attr-defined]
    gone = store_root / md[0]["files"][0]["object"]
    _writable(gone)
    gone.unlink()
    bad = f"{md[1]['prefix'].rsplit('/', 1)[0]}/{new_id()}"
    lake.store.put_bytes(f"{bad}/.eio/metadata.yaml", b"- just a list\n")
    indexer.reindex(lake)
    report = indexer.fsck(lake)
    assert report.mismatches == [f"{md[0]['id']}/f0.txt: object "
                                 f"{md[0]['files'][0]['object']} is missing"]
    assert len(report.quarantined) == 1 and "not a mapping" in report.quarantined[0]
    assert report.orphans == []  # a malformed artifact is committed, not an orphan


# -- the Lambda handler ---------------------------------------------------------------------
def s3_record(key: str, *, bucket: str = "lake", name: str = "ObjectCreated:Put",
              size: int = 1234) -> dict:
    """One record exactly as S3 sends it (keys URL-encoded, spaces as '+')."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "eventName": name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWer"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "elliptio-metadata",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size,
                       "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                       "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                       "sequencer": "0055AED6DCD90281E5"},
        },
    }


def metadata_key(md: dict) -> str:
    return f"{md['prefix']}/.eio/metadata.yaml"


def test_lambda_handler_indexes_real_event_shapes(lake, fresh):
    l2 = Lake(lake.settings, store=lake.store, catalogue=fresh)
    put = synthetic(l2, 3)
    dotted = put_artifact(l2, make_metadata(user="a.b@corp", files=["a b+c.txt"]))
    event = {"Records": [
        s3_record(metadata_key(put[0])),
        s3_record(metadata_key(put[1]), name="ObjectCreated:CompleteMultipartUpload"),
        s3_record(metadata_key(dotted)),  # '@' arrives as %40
        s3_record(f"{put[2]['prefix']}/f2.txt"),  # a user file: ignored
        s3_record(f"{put[2]['prefix']}/.eio/logs/pip_freeze.txt"),
        s3_record(metadata_key(put[2]), name="ObjectRemoved:Delete"),
        s3_record(metadata_key(put[0])),  # delivered twice
    ]}
    assert "%40" in json.dumps(event)
    out = indexer.lambda_handler(json.loads(json.dumps(event)), None, lake=l2)
    assert out["records"] == 7 and out["quarantined"] == [] and out["failed"] == []
    assert sorted(out["indexed"]) == sorted([put[0]["id"], put[1]["id"], dotted["id"]])
    assert len(out["ignored"]) == 3
    assert fresh.get(dotted["id"]) == dotted
    assert [m["id"] for m in fresh.find(Query.parse("file=a b+c.txt"))] == [dotted["id"]]
    # idempotent: S3 delivers at least once, Lambda retries
    again = indexer.lambda_handler(event, None, lake=l2)
    assert sorted(again["indexed"]) == sorted(out["indexed"])
    assert len(all_ids(fresh)) == 3


def test_lambda_handler_reports_malformed_yaml_and_indexes_the_rest(lake, fresh, caplog):
    l2 = Lake(lake.settings, store=lake.store, catalogue=fresh)
    good = synthetic(l2, 2)
    bad_prefix = f"{good[0]['prefix'].rsplit('/', 1)[0]}/{new_id()}"
    lake.store.put_bytes(f"{bad_prefix}/.eio/metadata.yaml", b"files: [\n")
    event = {"Records": [s3_record(metadata_key(good[0])),
                         s3_record(f"{bad_prefix}/.eio/metadata.yaml"),
                         s3_record(metadata_key(good[1]))]}
    out = indexer.lambda_handler(event, None, lake=l2)
    assert sorted(out["indexed"]) == sorted(m["id"] for m in good)
    assert [m["key"] for m in out["quarantined"]] == [f"{bad_prefix}/.eio/metadata.yaml"]
    assert "not valid YAML" in out["quarantined"][0]["error"]
    assert "quarantined" in caplog.text


def test_lambda_handler_through_sqs_and_sns_and_the_test_event(lake, fresh):
    l2 = Lake(lake.settings, store=lake.store, catalogue=fresh)
    a, b = synthetic(l2, 2)
    sqs = {"Records": [{"messageId": "1", "eventSource": "aws:sqs",
                        "body": json.dumps({"Records": [s3_record(metadata_key(a))]})}]}
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {
        "Message": json.dumps({"Records": [s3_record(metadata_key(b))]})}}]}
    assert indexer.lambda_handler(sqs, None, lake=l2)["indexed"] == [a["id"]]
    assert indexer.lambda_handler(sns, None, lake=l2)["indexed"] == [b["id"]]
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "lake"}
    assert indexer.lambda_handler(test_event, None, lake=l2)["records"] == 0


def test_lambda_handler_raises_after_indexing_when_the_catalogue_fails(lake, fresh):
    l2 = Lake(lake.settings, store=lake.store, catalogue=fresh)
    a = synthetic(l2, 1)[0]

    def down(items):
        raise CatalogueError("catalogue down (injected)")

    fresh.claim_many = down  # type: ignore[method-assign]
    with pytest.raises(CatalogueError):  # so Lambda retries the batch
        indexer.lambda_handler({"Records": [s3_record(metadata_key(a))]}, None, lake=l2)


def test_lambda_handler_uses_the_configured_lake(lake, tmp_path):
    a = synthetic(lake, 1)[0]
    out = indexer.lambda_handler({"Records": [s3_record(metadata_key(a))]}, object())
    assert out["indexed"] == [a["id"]]
    with Lake(Settings.load()) as again:
        assert again.catalogue.get(a["id"]) == a


@pytest.mark.parametrize("store,bucket,key,want", [
    ("s3://lake", "lake", "2026/a/.eio/metadata.yaml", "2026/a/.eio/metadata.yaml"),
    ("s3://lake/team/x", "lake", "team/x/2026/a", "2026/a"),
    ("s3://lake/team/x/", "lake", "team/x/2026/a", "2026/a"),
    ("s3://lake/team", "lake", "teams/2026/a", None),
    ("s3://lake/team", "other", "team/2026/a", None),
    ("file:///srv/lake", "anything", "2026/a", "2026/a"),
])
def test_store_key_of(store, bucket, key, want):
    assert indexer.store_key_of(store, bucket, key) == want


def test_eio_reindex_to_moves_the_catalogue_in_one_command(lake, tmp_path):
    """`eio reindex --to URL` (the migration) and `--full`, as a user runs them."""
    import subprocess
    import sys

    synthetic(lake, 7)

    def eio(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "elliptio", *args], text=True,
                              capture_output=True, env=os.environ.copy(), timeout=60)

    team = f"sqlite:///{tmp_path}/team.sqlite"
    out = eio("reindex", "--to", team)
    assert out.returncode == 0, out.stderr
    assert f"reindexed 7 of 7 artifact(s) from {lake.store.url} into {team}" in out.stdout
    again = json.loads(eio("reindex", "--to", team, "--json").stdout)
    assert (again["indexed"], again["skipped"]) == (0, 7)
    full = json.loads(eio("reindex", "--to", team, "--full", "--json").stdout)
    assert (full["indexed"], full["skipped"]) == (7, 0)
    assert lake.catalogue.count(Query()) == 0  # the configured catalogue was not touched


# -- the same against S3 on SeaweedFS ----------------------------------------------------------
def _bucket_and_prefix(lake: Lake) -> tuple[str, str]:
    from urllib.parse import urlparse

    u = urlparse(lake.store.url)
    prefix = u.path.strip("/")
    return u.netloc, prefix + "/" if prefix else ""


@pytest.mark.s3
def test_lambda_handler_on_seaweedfs(s3_lake, fresh):
    l2 = Lake(s3_lake.settings, store=s3_lake.store, catalogue=fresh)
    bucket, prefix = _bucket_and_prefix(s3_lake)
    good = synthetic(l2, 3)
    odd = put_artifact(l2, make_metadata(user="a.b@corp", files=["a b+c.txt"]))
    bad = f"{good[0]['prefix'].rsplit('/', 1)[0]}/{new_id()}"
    l2.store.put_bytes(f"{bad}/.eio/metadata.yaml", b"files: [\n")
    event = {"Records": [
        s3_record(prefix + metadata_key(good[0]), bucket=bucket),
        s3_record(prefix + metadata_key(good[1]), bucket=bucket,
                  name="ObjectCreated:CompleteMultipartUpload"),
        s3_record(prefix + metadata_key(odd), bucket=bucket),
        s3_record(prefix + f"{bad}/.eio/metadata.yaml", bucket=bucket),
        s3_record(prefix + good[2]["files"][0]["object"], bucket=bucket),  # a user file
        s3_record(prefix + metadata_key(good[2]), bucket="another-bucket"),
    ]}
    out = indexer.lambda_handler(json.loads(json.dumps(event)), None, lake=l2)
    assert sorted(out["indexed"]) == sorted([good[0]["id"], good[1]["id"], odd["id"]])
    assert [m["key"] for m in out["quarantined"]] == [prefix + f"{bad}/.eio/metadata.yaml"]
    assert len(out["ignored"]) == 2 and out["failed"] == []
    assert fresh.get(odd["id"]) == odd
    assert sorted(indexer.lambda_handler(event, None, lake=l2)["indexed"]) == \
        sorted(out["indexed"])


@pytest.mark.s3
def test_reindex_and_fsck_on_seaweedfs(s3_lake, fresh):
    synth = synthetic(s3_lake, 25)
    report = indexer.reindex(s3_lake, catalogue=fresh, batch_size=10)
    assert (report.scanned, report.indexed) == (25, 25)
    assert sorted(all_ids(fresh)) == sorted(m["id"] for m in synth)
    assert indexer.reindex(s3_lake, catalogue=fresh).skipped == 25
    check = indexer.fsck(s3_lake, catalogue=fresh, verify=True)
    assert check.clean, check
