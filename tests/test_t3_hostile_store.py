"""A hostile store (issue 15): what a team member can plant in the bucket never changes
another user's artifacts, never reaches outside a download's destination, never stops the
indexer, and never lends trust to bytes that are not what they claim. Each attack runs
through the public paths (Lambda handler, ``eio reindex``, ``eio get``, ``load``,
``fsck``) on the local store and on a real SeaweedFS. The mount's and the web page's
side are in tests/test_t6_fs_hostile.py and the web tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elliptio import Lake, indexer, layout, trust
from elliptio.artifact import dump_metadata
from elliptio.errors import IntegrityError, UsageError
from elliptio.ids import new_id

from .catalogue_corpus import make_metadata
from .test_t3_indexer import put_artifact, s3_record


@pytest.fixture
def work(tmp_path: Path, lake_env, monkeypatch) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


@pytest.fixture(params=["local", "seaweedfs"])
def any_lake(request) -> Lake:
    return request.getfixturevalue("lake" if request.param == "local" else "s3_lake")


def plant(lake: Lake, md: dict, contents: dict[str, bytes] | None = None,
          *, raw: bytes | None = None) -> str:
    """Write *md* (and its own objects) into the store as a hostile writer would; the
    metadata key."""
    written = set()
    for f in md["files"] if isinstance(md.get("files"), list) else []:
        obj = f.get("object") if isinstance(f, dict) else None
        if isinstance(obj, str) and obj.startswith(f"{md['prefix']}/") and obj not in written:
            lake.store.put_bytes(obj, (contents or {}).get(f["path"], b"planted"))
            written.add(obj)
    logs = md.get("logs") if isinstance(md.get("logs"), dict) else {}
    for rec in logs.values():
        if isinstance(rec, dict) and str(rec.get("object")).startswith(f"{md['prefix']}/"):
            lake.store.put_bytes(rec["object"], b"PyYAML==6.0.1\nelliptio==0.1.0\n")
    key = f"{md['prefix']}/.eio/metadata.yaml"
    lake.store.put_bytes(key, raw if raw is not None else dump_metadata(md))
    return key


def event(lake: Lake, *keys: str) -> dict:
    """An S3 notification of *keys* as this lake's bucket would send it."""
    from urllib.parse import urlparse

    u = urlparse(lake.store.url)
    base = u.path.strip("/") + "/" if u.scheme == "s3" and u.path.strip("/") else ""
    return {"Records": [s3_record(base + k, bucket=u.netloc or "lake") for k in keys]}


def reasons(report) -> dict[str, str]:
    return dict(report.quarantined)


def run_eio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elliptio", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


# -- 1. paths outside the destination --------------------------------------------------
def test_planted_paths_are_quarantined_and_never_written_outside(any_lake, tmp_path):
    md = make_metadata(user="mallory", files={"ok.txt": b"fine"})
    for bad in ("../../x.sh", "/abs/path/x.sh"):
        md["files"].append({"path": bad, "size": 4, "sha256": "0" * 64,
                            "object": f"{md['prefix']}/ok.txt"})
    key = plant(any_lake, md)
    report = indexer.reindex(any_lake)
    assert report.indexed == 0 and "contains '..'" in reasons(report)[key]
    assert any_lake.catalogue.get(md["id"]) is None
    out = indexer.lambda_handler(event(any_lake, key), lake=any_lake)
    assert out["indexed"] == [] and out["quarantined"][0]["key"].endswith(key)
    # an older catalogue holds it anyway: readers re-check
    any_lake.catalogue.upsert_many([md])
    a = any_lake.load(md["id"])
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(IntegrityError, match="refused"):
        a.download(dest)
    with pytest.raises(IntegrityError, match="refused"):
        a.files["../../x.sh"].download(dest)
    with pytest.raises(IntegrityError):
        a.files["/abs/path/x.sh"].read_bytes()
    with pytest.raises(IntegrityError):
        a.files["/abs/path/x.sh"].open()
    assert not (tmp_path / "x.sh").exists() and not Path("/abs/path/x.sh").exists()
    assert not (dest / md["id"] / "ok.txt").exists()  # refused before any write
    assert a.files["ok.txt"].problem is None


def test_eio_get_refuses_planted_paths_in_one_line(lake, lake_env, tmp_path):
    md = make_metadata(user="mallory", files={"ok.txt": b"fine"})
    md["files"].append({"path": "../../evil.sh", "size": 4, "sha256": "0" * 64,
                        "object": f"{md['prefix']}/ok.txt"})
    plant(lake, md)
    lake.catalogue.upsert_many([md])
    dest = tmp_path / "a" / "b"
    proc = run_eio(lake_env, "get", md["id"], "--dest", str(dest))
    assert proc.returncode != 0 and "refused" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path / "a" / "evil.sh").exists()
    assert not (dest / md["id"] / "ok.txt").exists()


def test_a_symlink_in_the_destination_is_not_followed(lake, tmp_path, work):
    (work / "f.txt").write_text("data")
    a = lake.save([str(work / "f.txt")])
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / a.id).mkdir(parents=True)
    (dest / a.id / "sub").symlink_to(outside)
    (work / "sub").mkdir()
    (work / "sub" / "g.txt").write_text("g")
    b = lake.save({"sub/g.txt": str(work / "sub" / "g.txt")})
    (dest / b.id).mkdir()
    (dest / b.id / "sub").symlink_to(outside)
    with pytest.raises(IntegrityError, match="outside"):
        b.download(dest)
    assert list(outside.iterdir()) == []


# -- 2. taking over another user's id ----------------------------------------------------
def test_another_users_id_is_never_taken_over(any_lake, tmp_path):
    alice = put_artifact(any_lake, make_metadata(user="alice", files=["a.txt"]))
    any_lake.catalogue.upsert(alice)
    liar = make_metadata(aid=alice["id"], user="mallory2", files={"a.txt": b"evil!"})
    liar["user"] = "alice"  # the claim in the metadata; the path says mallory2
    key = plant(any_lake, liar, {"a.txt": b"evil!"})
    assert "is not the path's user" in reasons(indexer.reindex(any_lake, full=True))[key]
    # even consistent with its own path, a second claim of the id is refused
    mallory = make_metadata(aid=alice["id"], user="mallory", files={"a.txt": b"evil!"})
    key = plant(any_lake, mallory, {"a.txt": b"evil!"})
    report = indexer.reindex(any_lake, full=True)
    assert [(c.id, c.held) for c in report.conflicts] == [(alice["id"], alice["prefix"])]
    out = indexer.lambda_handler(event(any_lake, key), lake=any_lake)
    assert out["indexed"] == [] and alice["id"] in out["conflicts"][0]["error"]
    assert any_lake.load(alice["id"]).files["a.txt"].read_bytes() == b"a.txt"
    assert any_lake.catalogue.get(alice["id"])["prefix"] == alice["prefix"]
    fsck = indexer.fsck(any_lake)
    assert not fsck.clean and any(key in c and alice["id"] in c for c in fsck.conflicts)


def test_a_conflict_in_a_fresh_catalogue_keeps_one_and_reports_the_other(lake, tmp_path):
    from elliptio.catalogue.sqlite import SQLiteCatalogue

    alice = put_artifact(lake, make_metadata(user="alice"))
    twin = make_metadata(aid=alice["id"], user="zed")
    plant(lake, twin)
    fresh = SQLiteCatalogue(f"sqlite:///{tmp_path}/fresh.sqlite")
    try:
        report = indexer.reindex(lake, catalogue=fresh)
        assert report.indexed == 1 and len(report.conflicts) == 1
        assert fresh.get(alice["id"])["prefix"] == report.conflicts[0].held
        # without a catalogue, a load refuses an id claimed twice
        empty = Lake(lake.settings, store=lake.store,
                     catalogue=SQLiteCatalogue(f"sqlite:///{tmp_path}/empty.sqlite"))
        with pytest.raises(IntegrityError, match="claimed at"):
            empty.load(alice["id"])
        empty.close()
    finally:
        fresh.close()


# -- 3. dedup never lends trust ---------------------------------------------------------
def test_a_planted_digest_never_substitutes_bytes(any_lake, work):
    content = b"the well-known content everyone saves\n" * 10
    digest = hashlib.sha256(content).hexdigest()
    fake = make_metadata(user="mallory", files={"common.txt": b"x" * len(content)})
    fake["files"][0]["sha256"] = digest  # claims the content; holds other bytes
    plant(any_lake, fake, {"common.txt": b"x" * len(content)})
    any_lake.catalogue.upsert_many([fake])  # e.g. an older catalogue took it
    (work / "common.txt").write_bytes(content)
    bob = any_lake.save([str(work / "common.txt")])
    f = bob.files["common.txt"]
    assert not f.deduplicated and f.object.startswith(bob.prefix + "/")
    assert f.read_bytes() == content
    with f.open() as fh:
        assert fh.read() == content
    # an honest earlier copy is still shared
    carol = any_lake.save([str(work / "common.txt")])
    assert carol.files["common.txt"].object == f.object
    assert indexer.fsck(any_lake, verify=True).mismatches == [
        f"{fake['id']}/common.txt: sha256/size differ (read {len(content)} bytes, sha256 "
        f"{hashlib.sha256(b'x' * len(content)).hexdigest()[:12]}…, recorded {digest[:12]}…)"]


def test_open_refuses_substituted_bytes_before_the_last_byte(lake, work):
    (work / "f.bin").write_bytes(b"A" * 3_000_000)
    a = lake.save([str(work / "f.bin")])
    obj = Path(lake.store.root) / a.files["f.bin"].object  # type: ignore[attr-defined]
    obj.chmod(0o644)
    obj.write_bytes(b"A" * 2_999_999 + b"B")
    got = bytearray()
    with pytest.raises(IntegrityError, match="sha256"), a.files["f.bin"].open() as fh:
        while chunk := fh.read(65536):
            got += chunk
    assert len(got) < 3_000_000
    with a.files["f.bin"].open() as fh:  # ranged reads get exactly what they ask for
        fh.seek(1000)
        assert fh.read(10) == b"A" * 10


def test_planted_dedup_references_are_checked_against_the_catalogue(any_lake):
    alice = put_artifact(any_lake, make_metadata(user="alice", files={"a.txt": b"a.txt"}))
    any_lake.catalogue.upsert(alice)
    fa = alice["files"][0]
    # a reference to alice's object that lies about the digest
    liar = make_metadata(user="mallory", files={"b.txt": b"b"})
    liar["files"][0].update(object=fa["object"], size=fa["size"])
    k_liar = plant(any_lake, liar)
    # a reference into alice's .eio/
    peek = make_metadata(user="mallory", files={"c.txt": b"c"})
    peek["files"][0]["object"] = f"{alice['prefix']}/.eio/metadata.yaml"
    k_peek = plant(any_lake, peek)
    # an honest reference
    good = make_metadata(user="bob", files={"a2.txt": b"a.txt"})
    good["files"][0]["object"] = fa["object"]
    k_good = plant(any_lake, good)
    # a reference to an object of a newer artifact
    early = make_metadata(ms=int(time.time() * 1000) - 60_000, user="mallory",
                          files={"d.txt": b"d"})
    early["files"][0]["object"] = good["files"][0]["object"]
    k_early = plant(any_lake, early)
    report = indexer.reindex(any_lake)
    why = reasons(report)
    assert "holds no object" in why[k_liar]
    assert ".eio/" in why[k_peek]
    assert "not older" in why[k_early]
    assert k_good not in why and any_lake.catalogue.get(good["id"]) is not None
    assert any_lake.load(good["id"]).files["a2.txt"].read_bytes() == b"a.txt"


def test_references_resolve_whatever_the_listing_order(lake, tmp_path):
    from elliptio.catalogue.sqlite import SQLiteCatalogue

    # zed's artifact is older but listed after alice's (same day, users sorted)
    owner = put_artifact(lake, make_metadata(user="zed", files={"o.txt": b"o.txt"}))
    ref = make_metadata(user="alice", files={"r.txt": b"o.txt"})
    ref["files"][0]["object"] = owner["files"][0]["object"]
    plant(lake, ref)
    fresh = SQLiteCatalogue(f"sqlite:///{tmp_path}/fresh.sqlite")
    try:
        report = indexer.reindex(lake, catalogue=fresh, batch_size=1)
        assert (report.indexed, report.quarantined) == (2, [])
    finally:
        fresh.close()


# -- 6. malformed but parseable metadata never stops the rest -----------------------------
MALFORMED = {
    "path is a number": lambda m: m["files"][0].update(path=5),
    "info is a list": lambda m: m.update(info=[1, 2]),
    "size is text": lambda m: m["files"][0].update(size="12"),
    "tags hold a mapping": lambda m: m.update(tags=[{"a": 1}]),
    "based_on holds junk": lambda m: m.update(based_on=["../x"]),
    "files is a mapping": lambda m: m.update(files={"a": 1}),
    "no files": lambda m: m.update(files=[]),
    "id is a number": lambda m: m.update(id=12),
    "created is junk": lambda m: m.update(created="yesterday"),
    "created is far off": lambda m: m.update(created="2001-01-01T00:00:00.000Z"),
    "a log outside logs": lambda m: m["logs"]["pip_freeze"].update(path="../logs.txt"),
    "logs is a list": lambda m: m.update(logs=[1]),
    "provenance is text": lambda m: m.update(provenance="x"),
    "a path twice": lambda m: m["files"].append(dict(m["files"][0])),
    "sha256 is short": lambda m: m["files"][0].update(sha256="abc"),
    "a type too long to be a tag": lambda m: m.update(info={"type": "t" * 3000}),
}


def test_malformed_metadata_is_quarantined_and_the_rest_indexed(any_lake):
    good = [put_artifact(any_lake, make_metadata()) for _ in range(3)]
    planted = {}
    for why, mutate in MALFORMED.items():
        md = make_metadata(user="mallory")
        mutate(md)
        planted[why] = plant(any_lake, md)
    alias = make_metadata(user="mallory")
    raw = dump_metadata(alias).replace(b"info: {}", b"info: &a\n  x: *a")
    planted["self-referencing alias"] = plant(any_lake, alias, raw=raw)
    report = indexer.reindex(any_lake)
    assert report.indexed == 3
    assert sorted(reasons(report)) == sorted(planted.values())
    assert "self-referencing" in reasons(report)[planted["self-referencing alias"]]
    assert {md["id"] for md in good} <= {i for i in any_lake.catalogue.all_ids()}
    # the same on every rerun, and through the Lambda handler, which does not raise
    assert sorted(reasons(indexer.reindex(any_lake))) == sorted(planted.values())
    out = indexer.lambda_handler(event(any_lake, *planted.values()), lake=any_lake)
    assert out["indexed"] == [] and len(out["quarantined"]) == len(planted)
    fsck = indexer.fsck(any_lake)
    assert not fsck.clean and len(fsck.quarantined) == len(planted)
    assert fsck.missing_from_catalogue == []


# -- 7. YAML bombs -----------------------------------------------------------------------
def bomb(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def test_a_yaml_bomb_is_refused_unparsed(any_lake):
    md = make_metadata(user="mallory")
    raw = dump_metadata(md).replace(b"info: {}", b"info:\n  " + bomb().replace(
        b"\n", b"\n  ").rstrip() + b"\n")
    assert len(raw) < 2000
    key = plant(any_lake, md, raw=raw)
    started = time.monotonic()
    report = indexer.reindex(any_lake)
    assert time.monotonic() - started < 30  # 9**9 nodes, were they expanded
    assert "expands to more than" in reasons(report)[key]
    big = make_metadata(user="mallory")
    key_big = plant(any_lake, big, raw=b"x: " + b"a" * (trust.MAX_METADATA_BYTES + 10))
    assert "bytes; at most" in reasons(indexer.reindex(any_lake))[key_big]


# -- property tests ------------------------------------------------------------------------
NAME_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@settings(max_examples=300, deadline=None)
@given(st.text(NAME_CHARS, max_size=40) | st.lists(
    st.sampled_from(["..", ".", "", "a", ".eio", "b\\c", "x\x00", "\n", "/"]),
    max_size=6).map("/".join))
def test_check_name_keeps_every_name_inside_its_artifact(name):
    try:
        norm = layout.check_name(name)
    except UsageError:
        return
    parts = norm.split("/")
    assert norm == layout.check_name(norm)  # normalised once and for all
    assert not norm.startswith("/") and ".." not in parts and "" not in parts
    assert "." not in parts and not any(p.startswith(".eio") for p in parts)
    assert not layout.has_bad_chars(norm)
    root = Path("/tmp/root")
    assert (root / norm).resolve().is_relative_to(root)


FIELDS = st.sampled_from(["id", "user", "created", "prefix", "info", "tags", "based_on",
                          "files", "logs", "provenance", "elliptio", "dirs"])
JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                    | st.floats(allow_nan=False),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.text(max_size=5), c, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELDS, JUNK, st.booleans())
def test_metadata_acceptance_never_raises_anything_but_quarantine(field, value, in_file):
    md = make_metadata(user="alice", files={"a.txt": b"a"})
    key = f"{md['prefix']}/.eio/metadata.yaml"
    if in_file:
        md["files"][0][field if field in ("path", "size") else "object"] = value
    else:
        md[field] = value
    try:
        raw = dump_metadata(md)
    except Exception:  # noqa: BLE001 - not representable as YAML: nothing to test
        return
    try:
        got = trust.accept_metadata(raw, key)
    except trust.Quarantined:
        return
    # what is accepted obeys every reader's rule
    assert got["id"] == md["id"] and got["prefix"] == md["prefix"]
    for f in got["files"]:
        assert layout.entry_problem(got, f) is None
    assert isinstance(got.get("info") or {}, dict)


def test_metadata_a_save_writes_is_accepted(lake, work):
    (work / "a.txt").write_text("a")
    (work / "b.txt").write_text("a")
    a = lake.save([str(work / "a.txt"), str(work / "b.txt")], info={"learningRate": 0.1},
                  tags=["x"])
    key = layout.metadata_key(a.prefix)
    assert trust.accept_metadata(lake.store.read_bytes(key), key) == a.metadata
    new = new_id()
    with pytest.raises(trust.Quarantined, match="not its directory"):
        trust.accept_metadata(lake.store.read_bytes(key),
                              f"{a.prefix.rsplit('/', 1)[0]}/{new}/.eio/metadata.yaml")


def test_a_row_whose_user_is_not_one_segment_is_refused_by_readers(lake):
    """A catalogue row (not from the indexer) whose user smuggles slashes: its prefix is
    rebuilt from that same user, so only the user's own check refuses it."""
    md = make_metadata(user="alice", files=["a.txt"])
    evil = "x/../../../../2020/01/01/alice"
    md["user"] = evil
    md["prefix"] = layout.artifact_prefix(layout.id_time(md["id"]), evil, md["id"])
    for f in md["files"]:
        f["object"] = f"{md['prefix']}/{f['path']}"
    assert "one path segment" in layout.entry_problem(md, md["files"][0])
    lake.catalogue.upsert_many([md])
    with pytest.raises(IntegrityError, match="one path segment"):
        lake.load(md["id"]).files["a.txt"].read_bytes()


def test_nesting_is_bounded_with_and_without_anchors(lake):
    md = make_metadata(user="mallory")
    key = f"{md['prefix']}/.eio/metadata.yaml"
    deep = b"[" * 100 + b"]" * 100
    for info in (b"info: {x: " + deep + b"}", b"info: {x: &a 1, y: " + deep + b"}"):
        raw = dump_metadata(md).replace(b"info: {}", info)
        with pytest.raises(trust.Quarantined, match="deeper than"):
            trust.accept_metadata(raw, key)
