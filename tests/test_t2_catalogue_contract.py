"""The catalogue contract, written once and run against every backend.

Backends: SQLite (a temporary file), mongomock (in-process), a real PostgreSQL server the
tests start themselves (``tests/fixtures/postgres.py``; each test gets its own database,
dropped afterwards), and a real MongoDB whenever ``ELLIPTIO_TEST_MONGO_URI`` is set (each
test gets its own database, dropped afterwards).
Every query is also checked against :func:`tests.catalogue_corpus.reference_find`, which
reads the semantics straight from the query module's docstring.

What mongomock cannot express is said where it matters; no assertion is weakened for the
real backends:
- ``bulk_write`` with pymongo >= 4.9 operations fails inside mongomock 4.3, so the Mongo
  catalogue upserts one document at a time there (the real server gets one bulk_write).
- mongomock evaluates ``$regex`` with Python's ``re``, MongoDB with PCRE: the glob regexes
  are written to mean the same in both (no ``.``/``$``; see ``glob_to_regex``), and the
  real-server run is what proves it.
- mongomock is not safe for truly parallel writes to one collection; CPython's GIL makes
  the concurrent-writer test pass there, the real server and SQLite are the real proof.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import secrets
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from elliptio.catalogue import Catalogue, open_catalogue
from elliptio.catalogue.sqlite import SQLiteCatalogue
from elliptio.errors import CatalogueError, QueryError
from elliptio.ids import new_id
from elliptio.query import Query, compile_mongo, compile_sql, glob_to_regex

from .catalogue_corpus import (
    DAY,
    T0,
    make_metadata,
    random_corpus,
    random_query,
    reference_find,
)

MONGO_URI = os.environ.get("ELLIPTIO_TEST_MONGO_URI")
BACKENDS = ["sqlite", "mongomock", "postgresql"] + (["mongodb"] if MONGO_URI else [])


def _open(kind: str, tmp_path, request) -> tuple[Catalogue, object]:
    if kind == "sqlite":
        return SQLiteCatalogue(f"sqlite:///{tmp_path}/cat.sqlite"), None
    if kind == "postgresql":
        return open_catalogue(request.getfixturevalue("pg_url")), None
    from elliptio.catalogue.mongo import MongoCatalogue

    if kind == "mongomock":
        import mongomock

        return MongoCatalogue("mongodb://mongomock/", client=mongomock.MongoClient()), None
    db = f"eio_test_{secrets.token_hex(4)}"
    cat = open_catalogue(MONGO_URI or "", database=db, collection="artifacts")
    return cat, db


@pytest.fixture(params=BACKENDS)
def cat(request, tmp_path):
    c, db = _open(request.param, tmp_path, request)
    yield c
    if db is not None:
        c._client.drop_database(db)  # type: ignore[attr-defined]
    c.close()


def ids(mds) -> list[str]:
    return [m["id"] for m in mds]


def find(c: Catalogue, query_text: str | None = None, **kw) -> list[str]:
    q = Query.parse(query_text, **kw) if query_text is not None else Query.build(**kw)
    return ids(c.find(q))


def at(day: float, ms: int = 0) -> str:
    return new_id(T0 + int(day * DAY) + ms)


# -- writing -----------------------------------------------------------------------------
def test_insert_get_and_upsert_is_idempotent(cat):
    md = make_metadata(info={"type": "dataset_list", "stratification": "new-cool-method"},
                       tags=["dataset"], files=["train.txt", "test.txt"])
    cat.upsert(md)
    cat.upsert(md)
    cat.upsert_many([md, md])
    assert cat.get(md["id"]) == md
    assert cat.count(Query()) == 1
    assert cat.get(new_id()) is None
    # a changed document replaces the old one everywhere, index fields included
    changed = {**md, "tags": ["model"], "info": {"type": "model"}}
    cat.upsert(changed)
    assert cat.get(md["id"]) == changed
    assert find(cat, tags="dataset") == [] and find(cat, tags="model") == [md["id"]]
    assert find(cat, info={"stratification": "new-cool-method"}) == []
    assert cat.upsert_many([]) == 0


def test_upsert_many_counts_and_last_wins(cat):
    a = make_metadata(tags=["one"])
    b = make_metadata()
    assert cat.upsert_many([a, b]) == 2
    assert cat.count(Query()) == 2
    cat.upsert_many([{**a, "tags": ["two"]}])
    assert cat.get(a["id"])["tags"] == ["two"]


# -- every field alone -------------------------------------------------------------------
@pytest.fixture
def story(cat):
    """The acceptance story's artifacts, plus neighbours that must not match."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    old = make_metadata(ms=now_ms - 20 * DAY, user="andy", files=["old.txt"],
                        tags=["dataset"], info={"type": "dataset_list"})
    andy = make_metadata(ms=now_ms - 2 * DAY, user="andy", files=["train.txt", "test.txt"],
                         tags=["my-dataset"],
                         info={"type": "dataset_list", "stratification": "new-cool-method"})
    csv = make_metadata(ms=now_ms - DAY + 600_000, user="andy", files=["data/train.csv"],
                        tags=["dataset"])
    brenda = make_metadata(ms=now_ms - DAY // 2, user="brenda", files=["model.pth"],
                           info={"type": "model"}, based_on=[andy["id"]])
    charlie = make_metadata(ms=now_ms - 3600_000, user="charlie", files=["report.html"],
                            info={"type": "evaluation"}, based_on=[brenda["id"]])
    cat.upsert_many([old, andy, csv, brenda, charlie])
    return {"old": old, "andy": andy, "csv": csv, "brenda": brenda, "charlie": charlie,
            "ms": now_ms}


def test_the_first_claim_of_an_id_wins(cat):
    """Metadata of Alice's id planted under Mallory's directory never replaces her row
    (trust, issue 15 #2), in a batch or alone, first or later in the batch; the same
    prefix again stays an idempotent upsert."""
    alice = make_metadata(user="alice", tags=["hers"])
    mallory = make_metadata(aid=alice["id"], user="mallory", tags=["planted"],
                            files={"train.txt": b"not alice's"})
    assert cat.claim_many([alice]) == (1, [])
    written, conflicts = cat.claim_many([mallory, make_metadata()])
    assert written == 1
    assert [(c.id, c.held, c.refused) for c in conflicts] == [
        (alice["id"], alice["prefix"], mallory["prefix"])]
    assert cat.get(alice["id"]) == alice
    assert find(cat, tags="planted") == []
    with pytest.raises(CatalogueError, match="first claim wins"):
        cat.upsert(mallory)
    assert cat.upsert_many([mallory]) == 0 and cat.get(alice["id"]) == alice
    # in one batch, the first of the batch claims the id
    bob = make_metadata(user="bob")
    eve = make_metadata(aid=bob["id"], user="eve")
    written, conflicts = cat.claim_many([bob, eve])
    assert written == 1 and [c.refused for c in conflicts] == [eve["prefix"]]
    assert cat.get(bob["id"])["user"] == "bob"
    assert cat.claim_many([alice, alice])[1] == [] and cat.get(alice["id"]) == alice


def test_holds_object_is_a_file_of_its_own(cat):
    """What a dedup reference is checked against: the artifact's own object, same digest
    and size; None when the artifact is not catalogued."""
    a = make_metadata(files={"x.bin": b"12345"})
    f = a["files"][0]
    ref = make_metadata(files={"y.bin": b"12345"})
    ref["files"][0]["object"] = f["object"]  # a dedup reference to a's object
    cat.upsert_many([a, ref])
    assert cat.holds_object(a["id"], f["object"], f["sha256"], 5) is True
    assert cat.holds_object(a["id"], f["object"], f["sha256"], 6) is False
    assert cat.holds_object(a["id"], f["object"], "0" * 64, 5) is False
    assert cat.holds_object(ref["id"], f["object"], f["sha256"], 5) is False  # not its own
    assert cat.holds_object(new_id(), f["object"], f["sha256"], 5) is None


def test_the_story_query(cat, story):
    assert find(cat, "user=andy,since=10d,file=*.txt,tag=*dataset*") == [story["andy"]["id"]]
    got = cat.find(Query.parse("user=andy,since=10d,file=*.txt,tag=*dataset*"))
    assert got[0]["info"]["stratification"] == "new-cool-method"


def test_user_exact_and_glob(cat, story):
    s = story
    assert find(cat, user="andy", order="oldest") == ids([s["old"], s["andy"], s["csv"]])
    assert find(cat, user="and") == []
    assert find(cat, user="ANDY") == []  # case-sensitive
    assert find(cat, user="[bc]*") == ids([s["charlie"], s["brenda"]])
    assert find(cat, user="?renda") == [s["brenda"]["id"]]


def test_since_until(cat, story):
    s, now = story, story["ms"]
    assert find(cat, since="3d") == ids([s["charlie"], s["brenda"], s["csv"], s["andy"]])
    assert find(cat, since="3d", until="1d") == [s["andy"]["id"]]
    # since is inclusive, until exclusive, both at millisecond resolution
    t = datetime.fromtimestamp((now - DAY + 600_000) / 1000, UTC)
    assert s["csv"]["id"] in find(cat, since=t)
    assert s["csv"]["id"] not in find(cat, until=t)
    assert s["csv"]["id"] in find(cat, until=t + timedelta(milliseconds=1))
    # a bare date as until means the end of that day
    day = datetime.fromtimestamp((now - 20 * DAY) / 1000, UTC).date()
    assert find(cat, until=day.isoformat()) == [s["old"]["id"]]
    assert find(cat, since=day.isoformat(), until=day.isoformat()) == [s["old"]["id"]]
    assert find(cat, since=(day + timedelta(days=1)).isoformat(),
                until=(day + timedelta(days=1)).isoformat()) == []


def test_file_globs(cat):
    a = make_metadata(files=["data/train.txt", "README.md"])
    b = make_metadata(files=["train.txt"])
    c = make_metadata(files=["data/sub/x.TXT", "weird[1].txt", "a b.csv"])
    cat.upsert_many([a, b, c])
    assert find(cat, files="*.txt", order="oldest") == ids([a, b, c])  # weird[1].txt
    assert find(cat, files="train.txt", order="oldest") == ids([a, b])  # base names
    assert find(cat, files="data/*") == ids([c, a])  # '*' crosses '/'
    assert find(cat, files="data/*.txt") == [a["id"]]
    assert find(cat, files="*/x.TXT") == [c["id"]]
    assert find(cat, files="*.TXT") == [c["id"]]  # case-sensitive
    assert find(cat, files="weird[[]1].txt") == [c["id"]]
    assert find(cat, files="weird[1].txt") == []  # a class, not a literal bracket
    assert find(cat, files="a b.csv") == [c["id"]]
    # several globs: each must match some file
    assert find(cat, files=["*.md", "*.txt"]) == [a["id"]]
    assert find(cat, files=["*.md", "*.csv"]) == []


def test_tag_globs(cat):
    a = make_metadata(tags=["dataset", "raw"])
    b = make_metadata(tags=["my-dataset"])
    c = make_metadata(tags=["Dataset", "x*y"])
    cat.upsert_many([a, b, c])
    assert find(cat, tags="dataset") == [a["id"]]
    assert find(cat, tags="*dataset*") == ids([b, a])
    assert find(cat, tags="[Dd]ataset") == ids([c, a])
    assert find(cat, tags=["dataset", "raw"]) == [a["id"]]
    assert find(cat, tags=["dataset", "my-dataset"]) == []
    assert find(cat, tags="x[*]y") == [c["id"]]
    assert find(cat, tags="x*y") == [c["id"]]


def test_the_type_is_a_tag(cat):
    """An artifact's type (info.type as text) is one of its tags for every tag condition,
    exact or glob, alone or with a real tag; the metadata keeps the tags as saved."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    andy = make_metadata(ms=now_ms - 2 * DAY, user="andy", files=["train.txt", "test.txt"],
                         info={"type": "dataset_list", "stratification": "new-cool-method"})
    both = make_metadata(ms=now_ms - DAY, files=["model.pth"], tags=["dataset", "v1"],
                         info={"type": "model"})
    untyped = make_metadata(ms=now_ms - DAY + 1, tags=["raw"])
    number = make_metadata(ms=now_ms - DAY + 2, info={"type": 5})
    cat.upsert_many([andy, both, untyped, number])
    # the seed's story: no tags at all, found by the tag glob
    assert find(cat, user="andy", since="10d", files="*.txt",
                tags="*dataset*") == [andy["id"]]
    assert find(cat, "user=andy,since=10d,file=*.txt,tag=*dataset*") == [andy["id"]]
    assert find(cat, tags="dataset_list") == [andy["id"]]
    assert find(cat, tags="dataset_*") == [andy["id"]]
    assert find(cat, tags="*dataset*") == ids([both, andy])  # a tag or the type
    assert find(cat, tags="Dataset_list") == []  # case-sensitive, as tags are
    assert find(cat, tags="model") == [both["id"]]
    assert find(cat, tags="5") == [number["id"]]  # the type as text
    assert find(cat, tags="[0-9]") == [number["id"]]
    # several globs: each matches a tag or the type
    assert find(cat, tags=["dataset", "model"]) == [both["id"]]
    assert find(cat, tags=["model", "v1"]) == [both["id"]]
    assert find(cat, tags=["dataset_list", "raw"]) == []
    assert find(cat, tags=["dataset_list", "dataset_list"]) == [andy["id"]]
    assert find(cat, tags="*", order="oldest") == ids([andy, both, untyped, number])
    assert cat.count(Query.build(tags="*dataset*")) == 2
    # the type is still the type, and not a file or an info key
    assert find(cat, type="dataset") == [] and find(cat, files="dataset_list") == []
    assert cat.get(andy["id"])["tags"] == [] and cat.get(both["id"])["tags"] == ["dataset", "v1"]
    # a type changed by a later upsert is no tag any more
    cat.upsert({**andy, "info": {"type": "notes"}})
    assert find(cat, tags="dataset_list") == [] and find(cat, tags="notes") == [andy["id"]]


def test_distinct_tags_list_the_types(cat):
    """``distinct("tag")`` (the mount's by-tag/) is the union of tags and types, each
    once, in order, paged across both."""
    cat.upsert_many([
        make_metadata(tags=["beta"], info={"type": "dataset_list"}),
        make_metadata(tags=["model"], info={"type": "model"}),  # a type equal to a tag
        make_metadata(info={"type": "alpha"}),
        make_metadata(tags=["gamma", "beta"]),
        make_metadata(info={"type": 7}),
    ])
    want = ["7", "alpha", "beta", "dataset_list", "gamma", "model"]
    assert cat.distinct("tag") == want
    assert cat.distinct("tag", limit=2) == want[:2]
    assert cat.distinct("tag", after="alpha", limit=2) == ["beta", "dataset_list"]
    assert cat.distinct("tag", after="dataset_list") == ["gamma", "model"]
    assert cat.distinct("tag", prefix="dat") == ["dataset_list"]
    assert cat.distinct("tag", prefix="m") == ["model"]
    assert cat.distinct("type") == ["7", "alpha", "dataset_list", "model"]
    assert cat.distinct("user") == ["andy"]  # five artifacts, one user
    # paging through it (as the mount does) meets every value once
    seen, after = [], None
    while page := cat.distinct("tag", after=after, limit=1):
        seen += page
        after = page[-1]
    assert seen == want


def test_an_older_catalogue_answers_with_the_type_as_a_tag(tmp_path):
    """Catalogues written before the type counted as a tag hold only the saved tags (the
    SQLite ``tags`` table, the Mongo ``tags`` field) — as this version writes them too:
    the type is matched where it is, so an old file answers the new way, unmigrated."""
    import mongomock

    from elliptio.catalogue.mongo import DOCUMENT_VERSION, MongoCatalogue
    from elliptio.catalogue.sqlite import create_tables

    # the Mongo document did not change; SQLite's create_tables still makes the version-1
    # tables (version 2 adds a search index, built from these rows when the file opens)
    assert DOCUMENT_VERSION == 1
    md = make_metadata(files=["train.txt", "test.txt"],
                       info={"type": "dataset_list", "stratification": "new-cool-method"})
    tagged = make_metadata(tags=["dataset"], files=["notes.md"])
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        create_tables(db)  # rows written by hand, as version 1 wrote them
        for m, t in ((md, "dataset_list"), (tagged, None)):
            db.execute("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?)",
                       (m["id"], m["user"], m["created"], t, m["prefix"], m["id"],
                        json.dumps(m)))
            db.executemany("INSERT INTO files VALUES (?,?,?,?,?,?)",
                           [(m["id"], f["path"], f["path"], f["size"], f["sha256"],
                             f["object"]) for f in m["files"]])
            db.executemany("INSERT INTO tags VALUES (?,?)", [(m["id"], x) for x in m["tags"]])
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT tag FROM tags")] == ["dataset"]
    client = mongomock.MongoClient()
    for m, t in ((md, "dataset_list"), (tagged, None)):
        client["elliptio"]["artifacts"].insert_one({
            "_id": m["id"], "v": 1, "user": m["user"], "created": m["created"], "type": t,
            "prefix": m["prefix"], "tags": list(m["tags"]),
            "file_names": [f["path"] for f in m["files"]],
            "file_paths": [f["path"] for f in m["files"]], "files": m["files"],
            "info_kv": [], "based_on": [], "text": m["id"], "metadata": m})
    for old in (SQLiteCatalogue(f"sqlite:///{path}"),
                MongoCatalogue("mongodb://mock/", client=client)):
        try:
            assert ids(old.find(Query.build(user="andy", since="10d", files="*.txt",
                                            tags="*dataset*"))) == [md["id"]]
            assert ids(old.find(Query.build(tags="*dataset*"))) == ids([tagged, md])
            assert ids(old.find(Query.build(tags="dataset_list"))) == [md["id"]]
            assert old.distinct("tag") == ["dataset", "dataset_list"]
        finally:
            old.close()
    # and this version writes them the same way: the saved tags only
    new = SQLiteCatalogue(f"sqlite:///{tmp_path}/new.sqlite")
    new.upsert_many([md, tagged])
    new.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "new.sqlite")) as db:
        assert [r[0] for r in db.execute("SELECT tag FROM tags")] == ["dataset"]


def test_type(cat, story):
    s = story
    assert find(cat, type="model") == [s["brenda"]["id"]]
    assert find(cat, type="dataset_*") == ids([s["andy"], s["old"]])
    assert find(cat, type="Model") == []


def test_info_equality_is_typed(cat):
    a = make_metadata(info={"epochs": 10, "lr": 0.1, "ok": True, "sizes": [1, 2],
                            "model": {"layers": 3, "opt": {"name": "adam"}}})
    b = make_metadata(info={"epochs": "10", "ok": "true", "sizes": [2, 1],
                            "model": {"layers": "3"}, "none": None, "empty": {}})
    c = make_metadata(info={"epochs": 10.5, "note": "Über ñ 日本"})
    cat.upsert_many([a, b, c])
    assert find(cat, "info.epochs=10") == [a["id"]]
    assert find(cat, 'info.epochs="10"') == [b["id"]]
    assert find(cat, info={"epochs": 10}) == [a["id"]]
    assert find(cat, info={"epochs": "10"}) == [b["id"]]
    assert find(cat, info={"epochs": 10.5}) == [c["id"]]
    assert find(cat, "info.lr=0.1") == [a["id"]]
    assert find(cat, "info.ok=true") == [a["id"]]
    assert find(cat, 'info.ok="true"') == [b["id"]]
    assert find(cat, info={"sizes": [1, 2]}) == [a["id"]]  # lists compare whole, in order
    assert find(cat, info={"sizes": 1}) == []
    assert find(cat, "info.model.layers=3") == [a["id"]]
    assert find(cat, info={"model": {"layers": "3"}}) == [b["id"]]
    assert find(cat, "info.model.opt.name=adam") == [a["id"]]
    assert find(cat, info={"model": {"opt": {"name": "adam"}, "layers": 3}}) == [a["id"]]
    assert find(cat, info={"none": None}) == [b["id"]]
    assert find(cat, info={"empty": {}}) == [b["id"]]
    assert find(cat, info={"note": "Über ñ 日本"}) == [c["id"]]
    assert find(cat, info={"note": "über ñ 日本"}) == []
    assert find(cat, "info.epochs=10,info.lr=0.1") == [a["id"]]
    assert find(cat, "info.epochs=10,info.lr=0.2") == []


def test_info_keys_match_as_written(cat):
    a = make_metadata(info={"learningRate": 0.1, "batch-size": 32, "Opt": {"Beta-1": 0.9}})
    b = make_metadata(info={"learningrate": 0.1, "batch_size": 32, "opt": {"beta_1": 0.9}})
    cat.upsert_many([a, b])
    for text, want in [("info.learningRate=0.1", [a]), ("info.learningrate=0.1", [b]),
                       ("info.batch-size=32", [a]), ("info.batch_size=32", [b]),
                       ("info.Opt.Beta-1=0.9", [a]), ("INFO.opt.beta_1=0.9", [b]),
                       ("info.learningRate=0.1,info.batch-size=32", [a]),
                       ("info.LEARNINGRATE=0.1", []), ("info.batch-Size=32", [])]:
        q = Query.parse(text)
        assert ids(cat.find(q)) == [m["id"] for m in want], text
        assert reference_find(q, [a, b]) == [m["id"] for m in want], text
        assert cat.count(q) == len(want)
    # the search form's fields (the CLI's --info, the web page) go through the same parser
    assert ids(cat.find(Query.from_fields(info=[("batch-size", "32")]))) == [a["id"]]


def test_lineage_direct_transitive_depth_and_ancestors(cat):
    root = make_metadata(ms=T0)
    chain = [root]
    for i in range(1, 7):
        chain.append(make_metadata(ms=T0 + i, based_on=[chain[-1]["id"]]))
    side = make_metadata(ms=T0 + 100, based_on=[root["id"], chain[2]["id"], new_id(T0 - 5)])
    cat.upsert_many(chain + [side])
    r = root["id"]
    assert find(cat, based_on=r, order="oldest") == ids([chain[1], side])
    assert find(cat, based_on=r, transitive=True, order="oldest") == ids(chain[1:] + [side])
    assert find(cat, based_on=r, transitive=True, depth=2, order="oldest") == \
        ids([chain[1], chain[2], side])
    assert find(cat, based_on=r, transitive=True, depth=5, order="oldest") == \
        ids(chain[1:6] + [side])
    assert find(cat, f"based-on={r},transitive=true,depth=1") == find(cat, based_on=r)
    # the other way
    assert find(cat, ancestor_of=side["id"], order="oldest") == ids([root, chain[2]])
    assert find(cat, ancestor_of=chain[6]["id"], transitive=True, order="oldest") == \
        ids(chain[:6])
    assert find(cat, ancestor_of=chain[6]["id"], transitive=True, depth=2) == \
        ids([chain[5], chain[4]])
    assert find(cat, ancestor_of=r) == []
    assert find(cat, based_on=new_id(), transitive=True) == []
    # combined with other fields
    assert find(cat, based_on=r, transitive=True, until=new_id and
                datetime.fromtimestamp((T0 + 4) / 1000, UTC), order="oldest") == \
        ids(chain[1:4])


def test_lineage_cycles_are_bounded(cat):
    # impossible with time-ordered ids unless metadata was edited by hand; must not hang
    a_id, b_id = new_id(T0), new_id(T0 + 1)
    a = make_metadata(aid=a_id, based_on=[b_id])
    b = make_metadata(aid=b_id, based_on=[a_id])
    cat.upsert_many([a, b])
    assert find(cat, based_on=a_id, transitive=True, order="oldest") == [a_id, b_id]
    assert find(cat, ancestor_of=a_id, transitive=True, depth=1000) == [b_id, a_id]
    assert find(cat, based_on=a_id, transitive=True, depth=1) == [b_id]


def test_free_text_is_case_insensitive_and_unicode(cat):
    a = make_metadata(user="andy", files=["Äpfel/Über.TXT"], tags=["Ωmega"],
                      info={"note": "New-Cool-Method", "n": 12345})
    b = make_metadata(user="brenda", files=["x.bin"], info={"type": "Model"})
    cat.upsert_many([a, b])
    assert find(cat, text="äpfel") == [a["id"]]
    assert find(cat, text="ÜBER.txt") == [a["id"]]
    assert find(cat, text="ωMEGA") == [a["id"]]
    assert find(cat, text="cool-method") == [a["id"]]
    assert find(cat, text="2345") == [a["id"]]
    assert find(cat, text="model") == [b["id"]]
    assert find(cat, text=b["id"][3:12].upper()) == [b["id"]]
    assert find(cat, text="a.*y") == []  # a substring, not a pattern
    assert find(cat, text="[") == []


def test_order_limit_count_and_combined(cat, story):
    s = story
    everything = find(cat, limit=None)
    assert everything == sorted(everything, reverse=True) and len(everything) == 5
    assert find(cat, limit=2) == everything[:2]
    assert find(cat, limit=2, order="oldest") == everything[::-1][:2]
    assert find(cat, limit=0) == everything  # 0 is no limit, as everywhere
    assert find(cat, limit=1000) == everything
    assert cat.count(Query.build(user="andy", limit=1)) == 3
    assert cat.count(Query.build(user="andy", after=s["csv"]["id"])) == 3  # ignores cursor
    assert find(cat, user="andy", type="dataset_list", tags="dataset") == [s["old"]["id"]]
    assert find(cat, user="andy", files="*.csv", tags="dataset", since="3d") == \
        [s["csv"]["id"]]
    assert find(cat, ids=[s["andy"]["id"], s["brenda"]["id"]], user="brenda") == \
        [s["brenda"]["id"]]
    assert find(cat, based_on=s["andy"]["id"], transitive=True, type="eval*") == \
        [s["charlie"]["id"]]


def test_keyset_paging_is_stable_across_inserts(cat):
    base = [make_metadata(ms=T0 + i * 1000) for i in range(40)]
    cat.upsert_many(base)
    seen: list[str] = []
    q = Query.build(limit=7)
    inserted = 0
    while True:
        page = cat.page(q)
        seen += ids(page.items)
        if page.next is None:
            break
        # newer and older artifacts arrive while paging
        cat.upsert_many([make_metadata(ms=T0 + 10**7 + inserted),
                         make_metadata(ms=T0 - 10**7 - inserted)])
        inserted += 1
        q = q.next_page(page.next)
    assert seen == sorted(set(seen), reverse=True)  # strictly descending: no duplicates
    assert set(ids(base)) <= set(seen)  # nothing skipped
    assert all(i < ids(base)[-1] for i in set(seen) - set(ids(base)))  # only older ones
    oldest = list(cat.iter_all(Query.build(order="oldest"), page_size=9))
    assert ids(oldest) == sorted(ids(oldest)) and len(oldest) == 40 + 2 * inserted


def test_find_objects_ids_with_prefix_distinct(cat):
    a = make_metadata(user="andy", files={"a.bin": b"same", "b.bin": b"other"},
                      tags=["zeta", "alpha"])
    b = make_metadata(user="brenda", files={"c.bin": b"same"}, tags=["alpha", "beta"])
    c = make_metadata(user="andy2", files={"d.bin": b"x"}, info={"type": "model"})
    cat.upsert_many([a, b, c])
    import hashlib

    same = hashlib.sha256(b"same").hexdigest()
    assert cat.find_objects(same, 4) == [a["files"][0]["object"], b["files"][0]["object"]]
    assert cat.find_objects(same, 4, limit=1) == [a["files"][0]["object"]]
    assert cat.find_objects(same, 5) == []
    assert cat.find_objects("0" * 64, 4) == []
    for n in (6, 10, 26):  # every id with the prefix, in id order, at most the limit
        p = a["id"][:n]
        assert cat.ids_with_prefix(p, 10) == sorted(i for i in ids([a, b, c])
                                                     if i.startswith(p))
    p = a["id"][:6]
    assert cat.ids_with_prefix(p, 2) == sorted(i for i in ids([a, b, c]) if i.startswith(p))[:2]
    assert cat.ids_with_prefix(a["id"]) == [a["id"]]
    assert cat.ids_with_prefix("7zzzz") == []
    assert cat.distinct("user") == ["andy", "andy2", "brenda"]
    assert cat.distinct("user", prefix="and") == ["andy", "andy2"]
    assert cat.distinct("user", after="andy") == ["andy2", "brenda"]
    assert cat.distinct("user", limit=1) == ["andy"]
    assert cat.distinct("tag") == ["alpha", "beta", "model", "zeta"]  # c's type
    assert cat.distinct("tag", prefix="b") == ["beta"]
    assert cat.distinct("tag", after="beta", limit=5) == ["model", "zeta"]
    assert cat.distinct("type") == ["model"]
    assert cat.existing([a["id"], new_id()]) == {a["id"]}
    assert list(cat.all_ids()) == sorted(ids([a, b, c]))


def test_unicode_everywhere(cat):
    md = make_metadata(user="andy", files=["données/été 2026/日本語.csv", "emoji-🎉.txt"],
                       tags=["ünïcode", "日本"], info={"type": "données", "名前": "値",
                                                        "nested": {"ключ": "значение"}})
    cat.upsert(md)
    assert cat.get(md["id"]) == md
    assert find(cat, files="*.csv") == [md["id"]]
    assert find(cat, files="données/*/日本語.csv") == [md["id"]]
    assert find(cat, files="emoji-?.txt") == [md["id"]]  # '?' is one character, not a byte
    assert find(cat, tags="日?") == [md["id"]]
    assert find(cat, tags="[ü]*") == [md["id"]]
    assert find(cat, type="donn?es") == [md["id"]]
    assert find(cat, info={"名前": "値"}) == [md["id"]]
    assert find(cat, info={"nested": {"ключ": "значение"}}) == [md["id"]]
    assert find(cat, text="ЗНАЧЕНИЕ") == [md["id"]]


def test_large_documents(cat):
    files = {f"dir{i // 1000}/file_{i:05d}.dat": b"" for i in range(8000)}
    md = make_metadata(files=files, tags=[f"tag{i}" for i in range(200)],
                       info={"blob": "x" * 200_000, "table": list(range(5000))})
    small = make_metadata()
    cat.upsert_many([md, small])
    got = cat.get(md["id"])
    assert got == md and len(got["files"]) == 8000
    assert find(cat, files="file_04321.dat") == [md["id"]]
    assert find(cat, files="dir7/*") == [md["id"]]
    assert find(cat, tags="tag199") == [md["id"]]
    assert find(cat, info={"table": list(range(5000))}) == [md["id"]]
    assert cat.find_objects(md["files"][0]["sha256"], 0) != []


def test_metadata_bson_cannot_hold_is_kept_verbatim(cat):
    # a hand-written metadata.yaml may hold what BSON cannot: a huge int, odd keys
    md = make_metadata(info={"big": 2**70, "$weird": 1, "odd": {"a.b": 2}})
    md["provenance"]["env"] = {"$HOME": "/x"}
    cat.upsert(md)
    assert cat.get(md["id"]) == md
    assert find(cat, info={"big": 2**70}) == [md["id"]]
    assert find(cat, "info.odd.a.b=2") == [md["id"]]


def test_concurrent_writers(cat):
    errors: list[BaseException] = []
    per_thread = 40

    def writer(t: int) -> None:
        try:
            mine = [make_metadata(user=f"user{t}", tags=[f"t{t}"], ms=T0 + t * 10**6 + i)
                    for i in range(per_thread)]
            for i in range(0, per_thread, 5):
                cat.upsert_many(mine[i:i + 5])
                cat.upsert(mine[i])  # and again: idempotent under contention
                assert len(find(cat, user=f"user{t}", limit=None)) == i + 5
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert cat.count(Query()) == 6 * per_thread
    assert all(cat.count(Query.build(tags=f"t{t}")) == per_thread for t in range(6))


def test_bad_queries_are_query_errors_before_any_backend():
    with pytest.raises(QueryError):
        Query.parse("file=[abc")
    with pytest.raises(QueryError):
        Query.build(depth=0)


# -- the whole semantics, on a random corpus -----------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    return random_corpus(seed=20261124, n=150)


def test_random_queries_agree_with_the_reference(cat, corpus):
    cat.upsert_many(corpus)
    rnd = random.Random(7)
    nonempty = 0
    for _ in range(250):
        q = random_query(rnd, corpus)
        want = reference_find(q, corpus)
        assert ids(cat.find(q)) == want, q.to_text()
        every = len(reference_find(replace(q, limit=None), corpus))
        assert cat.count(q) == every
        # a count that stops (the web page's "10,000+"): exactly min(matches, at_most)
        at_most = rnd.choice([1, 3, 10, 40])
        assert cat.count(q, at_most=at_most) == min(every, at_most), q.to_text()
        nonempty += bool(want)
    assert nonempty > 100  # the generator really hits data


def test_a_count_that_stops_stops(cat):
    """``count(at_most=)`` of every kind of condition, on more matches than it may count,
    fewer, and none; the count of everything too (PostgreSQL's sharded counter)."""
    mds = [make_metadata(user="u1" if i % 2 else "u2", tags=["dataset"] if i % 3 else [],
                         files={f"f{i}.txt": b"x"}, ms=T0 + i * 1000) for i in range(30)]
    cat.upsert_many(mds)
    for q, every in [(Query(), 30), (Query.build(user="u1"), 15),
                     (Query.build(tags="*data*"), 20), (Query.build(files="*.txt"), 30),
                     (Query.build(files="*.nomatch"), 0), (Query.build(text=".txt"), 30)]:
        assert cat.count(q) == every
        for at_most in (1, 7, every, every + 1, 1000):
            assert cat.count(q, at_most=at_most) == min(every, at_most), (q.to_text(), at_most)


def test_sql_and_mongo_compilers_agree_on_random_queries(tmp_path, corpus):
    """Both compilers against each other directly (a backend-free proof of one semantics):
    the SQL runs on SQLite, the Mongo filter on mongomock, over the same corpus."""
    import mongomock

    from elliptio.catalogue.mongo import MongoCatalogue

    sql_cat = SQLiteCatalogue(f"sqlite:///{tmp_path}/c.sqlite")
    mongo_cat = MongoCatalogue("mongodb://mock/", client=mongomock.MongoClient())
    sql_cat.upsert_many(corpus)
    mongo_cat.upsert_many(corpus)
    sql_cat.close()
    coll = mongo_cat._coll
    rnd = random.Random(11)
    with contextlib.closing(sqlite3.connect(sql_cat.path)) as db:
        for _ in range(300):
            q = random_query(rnd, corpus)
            sql, params = compile_sql(q)
            from_sql = [r[0] for r in db.execute(sql, params)]
            flt, sort, limit = compile_mongo(q, mongo_cat._neighbours)
            cur = coll.find(flt, {"_id": 1}).sort(sort)
            from_mongo = [d["_id"] for d in (cur.limit(limit) if limit else cur)]
            assert from_sql == from_mongo, q.to_text()


GLOB_ALPHABET = "ab-]^[*?.\n\\é"


def test_glob_regex_is_sqlite_glob_exactly():
    """glob_to_regex (what MongoDB evaluates) against SQLite's own GLOB, exhaustively on
    short random patterns, including the odd class forms: ``[]-a]``, ``[z-a]``, ``[^]]``."""
    import re

    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        rnd = random.Random(3)
        strings = ["".join(rnd.choice(GLOB_ALPHABET) for _ in range(rnd.randint(0, 4)))
                   for _ in range(300)] + ["a\n", "\n", "]", "-", "b-a"]
        checked = 0
        fixed = ["[-a]", "[]-a]", "[z-a]", "[^]]", "[a-]", "[^-a]", "[a-c-e]", "*[]]*", "[^z-a]",
                 "[]]", "[.-b]", "?", "*", "a*\n", "[\n]"]
        randoms = ["".join(rnd.choice(GLOB_ALPHABET + "[]") for _ in range(rnd.randint(1, 5)))
                   for _ in range(1500)]
        for p in fixed + randoms:
            try:
                rx = re.compile(glob_to_regex(p))
            except QueryError:
                assert p.count("[") > 0  # only an unclosed class is refused
                continue
            for s in strings:
                want = db.execute("SELECT ? GLOB ?", (s, p)).fetchone()[0] == 1
                assert bool(rx.match(s)) == want, (p, s)
            checked += 1
        assert checked > 500


def test_mongo_errors_become_catalogue_errors():
    from elliptio.catalogue.mongo import MongoCatalogue

    c = MongoCatalogue("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200",
                       database="x", collection="y")
    with pytest.raises(CatalogueError, match="cannot reach"):
        c.get(new_id())
    with pytest.raises(CatalogueError):
        c.upsert(make_metadata())
    c.close()


def test_mongo_url_password_is_never_shown():
    from elliptio.catalogue.mongo import MongoCatalogue

    c = MongoCatalogue("mongodb://eio:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=100")
    assert "s3cret" not in c.url
    with pytest.raises(CatalogueError) as info:
        c.count(Query())
    assert "s3cret" not in str(info.value)
    c.close()


def test_mongo_document_shape_and_indexes():
    import mongomock

    from elliptio.catalogue.mongo import INDEXES, MongoCatalogue

    c = MongoCatalogue("mongodb://mock/", client=mongomock.MongoClient())
    md = make_metadata(files=["data/x.txt"], tags=["t"], info={"n": 10, "m": {"k": "v"}})
    c.upsert(md)
    c.upsert(md)
    doc = c._coll.find_one({"_id": md["id"]})
    assert doc["file_names"] == ["x.txt"] and doc["file_paths"] == ["data/x.txt"]
    assert doc["info_kv"] == [{"k": "m.k", "v": '"v"'}, {"k": "n", "v": "10"}]
    assert doc["metadata"] == md
    names = set(c._coll.index_information())
    assert {n for n, _ in INDEXES} <= names


# -- SQLite: a connection per thread, every one closed ---------------------------------------
def _closed(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_sqlite_closes_every_threads_connection(tmp_path):
    """One connection per thread (the web server's and the daemon's worker threads use it
    so): a thread's is closed when that thread ends, close() closes those of threads still
    running and a later call opens a new one; a catalogue nobody closed says so when it is
    collected, as an unclosed file does."""
    url = f"sqlite:///{tmp_path}/c.sqlite"
    cat = SQLiteCatalogue(url)
    cat.upsert(make_metadata())
    main = cat._db()
    opened: list[sqlite3.Connection] = []
    running, release = threading.Event(), threading.Event()

    def use(wait: bool) -> None:
        assert cat.count(Query()) == 1
        opened.append(cat._db())
        if wait:
            running.set()
            release.wait(10)

    ended = threading.Thread(target=use, args=(False,))
    ended.start()
    ended.join()
    waiting = threading.Thread(target=use, args=(True,))
    waiting.start()
    try:
        assert running.wait(10)
        assert _closed(opened[0]) and not _closed(opened[1]) and not _closed(main)
        assert cat._connections.open_count() == 2
        cat.close()
        assert _closed(opened[1]) and _closed(main)
        assert cat._connections.open_count() == 0
    finally:
        release.set()
        waiting.join()
    assert cat.count(Query()) == 1 and cat._db() is not main
    cat.close()

    forgotten = SQLiteCatalogue(url)
    with pytest.warns(ResourceWarning, match="was not closed"):
        del forgotten
        gc.collect()
