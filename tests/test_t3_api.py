"""The public library API on the embedded default (local store + SQLite)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

import elliptio as eio
from elliptio import lineage
from tests.fixtures.trees import FILES, expected_dirs, make_tree, tree_of


@pytest.fixture
def work(tmp_path: Path, lake_env, monkeypatch) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    (d / "train.txt").write_text("a,b\n1,2\n")
    (d / "test.txt").write_text("a,b\n3,4\n")
    monkeypatch.chdir(d)
    return d


def store_root(lake_env) -> Path:
    return Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))


def test_public_surface_is_small_and_deliberate():
    assert sorted(eio.__all__) == sorted([
        "Artifact", "ArtifactFile", "CatalogueError", "ConfigError", "ElliptioError",
        "Immutable", "IntegrityError", "Lake", "NotFound", "Query", "QueryError", "Settings",
        "StorageError", "TransientStorageError", "UsageError", "__version__",
        "create_artifact", "load", "save", "search",
    ])
    for name in eio.__all__:
        assert hasattr(eio, name)


def test_save_story_layout_metadata_and_catalogue(work, lake_env):
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    root = store_root(lake_env)
    prefix = root / a.created.strftime("%Y/%m/%d") / "andy" / a.id
    assert (prefix / "train.txt").read_text() == "a,b\n1,2\n"
    md = yaml.safe_load((prefix / ".eio/metadata.yaml").read_text())
    assert md["id"] == a.id and md["user"] == "andy"
    assert md["info"] == {"type": "dataset_list", "stratification": "new-cool-method"}
    assert [f["path"] for f in md["files"]] == ["train.txt", "test.txt"]
    assert a.metadata == md
    b = eio.load(a.id)
    assert b.metadata == md
    f = b.files["train.txt"]
    assert f.size == 8 and f.read_bytes() == b"a,b\n1,2\n"
    assert f.url == "file://" + str(prefix / "train.txt")
    assert f.s3_url is None
    with f.open() as fh:
        fh.seek(4)
        assert fh.read() == b"1,2\n"
    assert [x.id for x in eio.search(user="andy", since="10d", files="*.txt")] == [a.id]


def test_the_seeds_search_finds_the_untagged_dataset_by_its_type(work):
    """The seed's exact calls: Andy gives no tags, only ``type: dataset_list``; Brenda's
    ``tags="*dataset*"`` finds it, because the type is one of the tags."""
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    eio.save(["train.txt"], info={"type": "model"})  # andy's too, *.txt, no dataset
    found = eio.search(user="andy", since="10d", files="*.txt", tags="*dataset*")
    assert [x.id for x in found] == [a.id]
    assert found[0].info["stratification"] == "new-cool-method"
    assert found[0].tags == [] and a.tags == []  # the tags as saved
    text = eio.search("user=andy,since=10d,file=*.txt,tag=*dataset*")
    assert [x.id for x in text] == [a.id]
    assert [x.id for x in eio.search(tags="dataset_list")] == [a.id]


def test_directories_are_saved_recursively_keeping_relative_paths(work):
    (work / "run42/sub").mkdir(parents=True)
    (work / "run42/sub/x.bin").write_bytes(b"\0" * 10)
    (work / "run42/y.txt").write_text("y")
    a = eio.save("run42")
    assert sorted(a.files) == ["run42/sub/x.bin", "run42/y.txt"]
    b = eio.save({"renamed/z.txt": "run42/y.txt"})
    assert list(b.files) == ["renamed/z.txt"]


def test_empty_directories_survive_save_load_and_download(work, lake_env, tmp_path):
    src = make_tree(work / "d")
    a = eio.save(["d"])
    assert a.dirs == expected_dirs("d")
    assert sorted(a.files) == sorted(f"d/{f}" for f in FILES)
    # in metadata.yaml, the source of truth: only the empty ones, no object for them
    md = yaml.safe_load((store_root(lake_env) / a.prefix / ".eio/metadata.yaml").read_text())
    assert md["dirs"] == expected_dirs("d") and len(md["files"]) == len(FILES)
    b = eio.load(a.id)
    assert b.dirs == expected_dirs("d")
    got = b.download(tmp_path / "dl")
    dirs, files = tree_of(got / "d")
    assert (dirs, files) == tree_of(src)
    # from the store alone (the catalogue lost it), too
    Path(lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///")).unlink()
    fresh = eio.Lake(eio.Settings.load())
    try:
        assert fresh.catalogue.get(a.id) is None
        assert fresh.get(a.id).dirs == expected_dirs("d")
    finally:
        fresh.close()
    # an empty directory given as an input beside a file is kept; one named explicitly too
    (work / "void").mkdir()
    c = eio.save(["train.txt", "void"])
    assert list(c.files) == ["train.txt"] and c.dirs == ["void"]
    assert eio.save({"x/y.txt": "test.txt", "x/none": "void"}).dirs == ["x/none"]


def test_an_artifact_without_dirs_loads_as_before(work, tmp_path):
    a = eio.save(["train.txt"])
    assert "dirs" not in a.metadata  # the key is written only when there are some
    b = eio.load(a.id)
    assert b.dirs == [] and list(b.files) == ["train.txt"]
    assert tree_of(b.download(tmp_path / "dl")) == (set(), {"train.txt"})


def test_builder_form_tags_and_keyword_info(work):
    a = eio.create_artifact(tags=["dataset"]).save_files(["train.txt"], type="model", lr=0.1)
    assert a.info == {"type": "model", "lr": 0.1} and a.tags == ["dataset"]
    assert a.type == "model"
    builder = eio.create_artifact()
    builder.save_files(["test.txt"])
    with pytest.raises(eio.Immutable):
        builder.save_files(["test.txt"])


def test_logs_by_attribute_and_download(work):
    a = eio.save(["train.txt"])
    assert "pip_freeze" in a.logs
    text = a.logs.pip_freeze.read_text()
    assert "PyYAML==" in text or "pyyaml==" in text.lower()
    out = a.logs.pip_freeze.download()
    assert out == Path("pip_freeze.txt") and out.read_text() == text
    with pytest.raises(eio.NotFound):
        a.logs.no_such_log  # noqa: B018
    assert not hasattr(a.logs, "no_such_log")
    with pytest.raises(eio.NotFound):
        a.files["nope.txt"]


def test_file_download_verifies_and_replaces_local_copy(work, tmp_path):
    a = eio.save(["train.txt"])
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "train.txt").write_text("old")
    p = a.files["train.txt"].download(dest)
    assert p.read_text() == "a,b\n1,2\n"
    whole = a.download(tmp_path / "all")
    assert (whole / "train.txt").read_text() == "a,b\n1,2\n"


def test_lineage_from_loads_and_explicit_based_on(work):
    andy = eio.save(["train.txt"])
    lineage.reset()
    eio.load(andy.id)
    model = eio.create_artifact().save_files(["test.txt"], type="model")
    assert model.based_on == [andy.id]
    eio.load(model.id)
    report = eio.save(["train.txt"], type="report")
    assert report.based_on == [andy.id, model.id]
    assert eio.save(["train.txt"], based_on=[]).based_on == []
    lineage.reset()
    explicit = eio.save(["train.txt"], based_on=[model])
    assert explicit.based_on == [model.id]
    # an id passed as based_on is remembered for the next saves of this process
    assert eio.save(["test.txt"]).based_on == [model.id]
    assert [c.id for c in eio.search(based_on=andy.id)] == [report.id, model.id]
    desc = {c.id for c in eio.search(based_on=andy.id, transitive=True, limit=None)}
    assert {model.id, report.id, explicit.id} <= desc
    assert [p.id for p in report.parents()] == [andy.id, model.id]


def test_dedup_references_existing_content(work, lake_env):
    a = eio.save(["train.txt"])
    (work / "copy.txt").write_bytes((work / "train.txt").read_bytes())
    b = eio.save(["copy.txt", "test.txt"])
    fb = b.files["copy.txt"]
    assert fb.deduplicated and fb.object == a.files["train.txt"].object
    assert not b.files["test.txt"].deduplicated
    assert not (store_root(lake_env) / b.prefix / "copy.txt").exists()
    assert eio.load(b.id).files["copy.txt"].read_bytes() == b"a,b\n1,2\n"
    # identical files inside one save share one object too
    (work / "twin.txt").write_text("same")
    (work / "twin2.txt").write_text("same")
    c = eio.save(["twin.txt", "twin2.txt"])
    assert c.files["twin2.txt"].object == c.files["twin.txt"].object


def test_saved_files_are_locked(work, lake_env, lake):
    a = eio.save(["train.txt"])
    prefix = store_root(lake_env) / a.prefix
    for p in [prefix / "train.txt", prefix / ".eio/metadata.yaml"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o444
    assert stat.S_IMODE(prefix.stat().st_mode) == 0o555
    assert not any(n.startswith(("delete", "remove", "overwrite")) for n in dir(a))
    with pytest.raises(eio.Immutable):
        lake.store.put_bytes(f"{a.prefix}/train.txt", b"evil")
    with pytest.raises(eio.Immutable):
        lake.store.remove_orphan(a.prefix)
    assert (prefix / "train.txt").read_text() == "a,b\n1,2\n"


def test_search_fields(work):
    a = eio.save(["train.txt"], info={"type": "dataset", "epochs": 10, "cfg": {"lr": 0.5}},
                 tags=["dataset", "v1"], based_on=[])
    (work / "model.pth").write_bytes(b"weights")
    b = eio.save(["model.pth"], info={"type": "model", "epochs": "10", "note": "Ünïcode Täxt"},
                 tags=["model"], based_on=[a.id])

    def ids(**kw):
        return [x.id for x in eio.search(**kw)]

    assert ids() == [b.id, a.id]
    assert ids(order="oldest") == [a.id, b.id]
    assert ids(type="model") == [b.id]
    assert ids(type="data*") == [a.id]
    assert ids(files="*.pth") == [b.id]
    assert ids(files=["*.txt", "train*"]) == [a.id]
    assert ids(files=["*.txt", "*.pth"]) == []
    assert ids(tags="*set*") == [a.id]
    assert ids(tags=["v1", "dataset"]) == [a.id]
    assert ids(info={"epochs": 10}) == [a.id]
    assert ids(info={"epochs": "10"}) == [b.id]
    assert ids(info={"cfg": {"lr": 0.5}}) == [a.id]
    assert ids(info={"cfg.lr": 0.5}) == [a.id]
    assert ids(text="täxt") == [b.id]
    assert ids(text="TRAIN.TXT") == [a.id]
    assert ids(user="andy", since="1h", until="2100-01-01") == [b.id, a.id]
    assert ids(until="2000-01-01") == []
    assert ids(since="2100-01-01") == []
    assert ids(based_on=a.id) == [b.id]
    assert ids(ancestor_of=b.id) == [a.id]
    assert ids(limit=1) == [b.id]
    assert ids(limit=0) == ids(limit=None) == [b.id, a.id]  # 0: no limit, as everywhere
    assert [x.id for x in eio.search("limit=0")] == [b.id, a.id]
    for bad in (-1, True, "3", 1.5):
        with pytest.raises(eio.QueryError, match="limit must be 0"):
            eio.search(limit=bad)
    assert ids(limit=1, after=b.id) == [a.id]
    assert [x.id for x in eio.search("type=model,info.epochs=\"10\"")] == [b.id]
    with pytest.raises(eio.QueryError):
        eio.search(colour="red")


def test_load_by_unique_prefix_and_clear_errors(work):
    a = eio.save(["train.txt"])
    assert eio.load(a.id[:12]).id == a.id
    assert eio.load(a.id.upper()).id == a.id
    with pytest.raises(eio.UsageError):
        eio.load("not an id")
    with pytest.raises(eio.NotFound):
        eio.load("0" * 26)
    with pytest.raises(eio.UsageError):
        eio.load(42)  # type: ignore[arg-type]


def test_catalogue_failure_keeps_the_save_and_reindex_recovers(work, lake, caplog):
    from elliptio import indexer
    from elliptio.errors import CatalogueError

    real_upsert = lake.catalogue.upsert

    def broken(md):
        raise CatalogueError("catalogue down (injected)")

    lake.catalogue.upsert = broken  # type: ignore[method-assign]
    a = lake.save(["train.txt"])
    assert a.catalogued is False
    assert "eio reindex" in caplog.text
    assert lake.catalogue.get(a.id) is None
    assert lake.load(a.id).id == a.id  # found in the store through the id's date
    lake.catalogue.upsert = real_upsert  # type: ignore[method-assign]
    report = indexer.reindex(lake)
    assert report.indexed >= 1 and lake.catalogue.get(a.id)["id"] == a.id


def test_settings_from_config_file(tmp_path, monkeypatch, work):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"store: file://{tmp_path}/other\nELLIPTIO_USER: brenda\n")
    monkeypatch.delenv("ELLIPTIO_USER")
    monkeypatch.delenv("ELLIPTIO_STORE")
    monkeypatch.setenv("ELLIPTIO_CONFIG", str(cfg))
    a = eio.save(["train.txt"])
    assert a.user == "brenda"
    assert (tmp_path / "other" / a.prefix / "train.txt").exists()
    cfg.write_text("colour: red\n")
    with pytest.raises(eio.ConfigError):
        eio.save(["train.txt"])


def test_default_configuration_needs_no_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    data = Path(os.environ["XDG_DATA_HOME"]) / "elliptio"
    assert (data / "store" / a.prefix / "x.txt").exists()
    assert (data / "catalogue.sqlite").exists()
    assert eio.search()[0].id == a.id


def test_sqlite_page_cache_is_a_setting(lake_env, monkeypatch):
    from elliptio import Lake, Settings

    monkeypatch.setenv("ELLIPTIO_SQLITE_CACHE_MB", "7")
    lk = Lake(Settings.load())
    try:
        db = lk.catalogue._db()  # type: ignore[attr-defined]
        assert db.execute("PRAGMA cache_size").fetchone()[0] == -7 * 1024
    finally:
        lk.close()
