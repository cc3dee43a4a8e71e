"""Globs and free text on every catalogue backend, the hard cases: short patterns,
classes, ``/``, literal ``*?[`` in text, unicode, case, the type as a tag, replaced
artifacts — each answer checked against :func:`tests.catalogue_corpus.reference_find`.

SQLite answers these through its trigram search index (schema version 2,
:mod:`elliptio.catalogue.sqlite_search`), so the SQLite-only tests below look inside it:
the index stays in step with the rows through replacements, ids that share a bucket are
found and ordered, a common pattern falls back to the plain plan with the same answer, a
pattern nothing matches is answered from the index alone, and a version-1 file is
upgraded on open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import secrets
import sqlite3
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from elliptio.catalogue import sqlite_search
from elliptio.catalogue.sqlite import SCHEMA_VERSION, SQLiteCatalogue
from elliptio.errors import CatalogueError, QueryError
from elliptio.ids import _ALPHABET, new_id
from elliptio.query import Query, check_glob
from elliptio.query.sql import SQLiteCompiler
from elliptio.query.trigrams import NAME, PATH, SEP, TAG, glob_trigrams, text_trigrams

from .catalogue_corpus import T0, glob, make_metadata, random_corpus, reference_find
from .test_t2_catalogue_contract import cat  # noqa: F401  (every backend)

NAMES = ["train.txt", "TRAIN.TXT", "a.txt", "ab", "b", "résumé.pdf", "x*y?z[1].csv",
         "weird]name", "a-b.h5", "aaa", "üüü.bin", ".hidden", "data_10.csv", "csv.data",
         "notes.TXT", "h5", "tab\tname", "q\"uote.json"]
DIRS = ["", "data/", "data/sub/", "x.h5/", "ÇÀ/", "a/b/"]
TAGS = ["dataset", "Dataset", "raw-dataset", "ümlaut", "a[b]", "x*y", "set", "ab", "DATA",
        "model", "dataset_list"]
TYPES = [None, "dataset_list", "model", "set", "Model", "ümlaut"]


def hard_corpus(seed: int = 5, n: int = 90) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        files = {rnd.choice(DIRS) + rnd.choice(NAMES): b"x" for _ in range(rnd.randint(1, 3))}
        info: dict = {}
        t = rnd.choice(TYPES)
        if t is not None:
            info["type"] = t
        if rnd.random() < 0.4:
            info["note"] = rnd.choice(["FOO bar", "a*b?c[d", "naïve Straße", "x\ny", "10"])
        out.append(make_metadata(ms=T0 + i * 977, user=rnd.choice(["andy", "bob", "Ünal"]),
                                 files=files, info=info,
                                 tags=rnd.sample(TAGS, rnd.randint(0, 3))))
    return out


#: one corpus for every example of the property test (ids are random: made once)
HARD = hard_corpus(seed=6)


def ids(mds) -> list[str]:
    return [m["id"] for m in mds]


def agree(c, corpus, **kw) -> list[str]:
    """The catalogue's answer to Query.build(**kw), in both orders and counted, checked
    against the reference; returns it."""
    got = None
    for order in ("newest", "oldest"):
        q = Query.build(order=order, limit=None, **kw)
        want = reference_find(q, corpus)
        assert ids(c.find(q)) == want, (kw, order)
        assert c.count(q) == len(want), kw
        limited = replace(q, limit=3)
        assert ids(c.find(limited)) == want[:3], (kw, order)
        got = got or want
    return got or []


@pytest.fixture
def hard(cat):  # noqa: F811
    corpus = hard_corpus()
    cat.upsert_many(corpus)
    return cat, corpus


FILE_GLOBS = [
    "a*", "*b", "?b", "a?", "*.h5", "h5", "*5", "?", "*", "??", "a*b*", "*a*",  # 1-2 literals
    "*.txt", "*.TXT", "*.[tT][xX][tT]", "[a-z]*.txt", "[^a]*.txt", "[]]*", "*[]]name",
    "weird[]]name", "x[*]y[?]z[[]1].csv", "*[[]*", "[!a]*", "*.?5", "csv*", "*csv",
    "*data*", "[z-a]*", "[a-]*", "*ü*", "résumé.*", "*SUMÉ*", "*sumé*", "tab\t*",
    'q"*', "data/*", "*/sub/*", "data/*.csv", "*/*", "a/b/*", "*.h5/*", "x.h5/*",
    "*a-b.h5", "ÇÀ/*", "*/résumé.pdf", "data/sub/*.txt", "d*/*.txt", "*b/a*",
]
TAG_GLOBS = [
    "*dataset*", "dataset", "Dataset", "*data*", "*DATA*", "DATA", "set", "*set",
    "?et", "s*", "*t", "a[[]b]", "x[*]y", "*[*]*", "ü*", "*laut", "[Dd]ataset",
    "[^D]ataset", "*_list", "dataset_list", "Model", "model", "*od*", "ab", "a?",
]
NEEDLES_BY_HAND = [
    "a", "ab", "txt", "TXT", ".txt", "*", "x*y", "?z[", "[1]", "a*b?c[d", "ümlaut",
    "ÜMLAUT", "straße", "naïve", "résumé", "x\ny", "\nx", "txt\nd", "foo bar", 'q"u',
    "tab\tn", "and", "andy\n", "ünal", "nomatch-at-all", "data/sub/",
]


def test_file_globs_hard_cases(hard):
    """1-2 literal characters, ``?``, classes (``[^…]``, ``[]]``, ``[[]``), ``/``, case,
    unicode, anchoring (``csv*`` is not ``*csv``; ``*.h5`` is not the directory ``x.h5/``)."""
    c, corpus = hard
    for pattern in FILE_GLOBS:
        agree(c, corpus, files=pattern)


def test_tag_globs_hard_cases(hard):
    c, corpus = hard
    for pattern in TAG_GLOBS:
        agree(c, corpus, tags=pattern)


def test_free_text_hard_cases(hard):
    """Case-insensitive substrings; ``*?[`` and quotes are literal; across words."""
    c, corpus = hard
    for needle in NEEDLES_BY_HAND:
        agree(c, corpus, text=needle)


def test_combined_conditions(hard):
    c, corpus = hard
    agree(c, corpus, files="*.txt", tags="*data*")
    agree(c, corpus, files=["*.txt", "*.csv"], text="andy")
    agree(c, corpus, files="data/*", tags=["*set*", "?et"], user="bob")
    agree(c, corpus, tags="*dataset*", text="ümlaut", since="2026-03-01")
    agree(c, corpus, files="*.nomatch", tags="*dataset*")


def test_several_info_equalities(cat):  # noqa: F811
    """Two or three ``info`` conditions at once (SQLite checks all but the first per row)."""
    corpus = random_corpus(seed=8, n=150)
    cat.upsert_many(corpus)
    hits = 0
    for info in ({"model": {"layers": "3", "opt": {"name": "sgd"}}},
                 {"model": {"layers": 3, "opt": {"name": "sgd"}}},  # 3, not "3"
                 {"model": {"opt": {"name": "adam"}}, "type": "dataset"},
                 {"model": {"layers": 4, "opt": {"name": "adam"}}, "type": "dataset"},
                 {"learningRate": 10, "type": "dataset", "model": {"layers": 4}},
                 {"flag": True, "epochs": 10}, {"lr": None, "model": {"layers": 3}}):
        hits += bool(agree(cat, corpus, info=info))
        agree(cat, corpus, info=info, files="*.txt")
    assert hits >= 3


def test_the_type_is_a_tag_in_the_index(cat):  # noqa: F811
    typed = make_metadata(info={"type": "dataset_list"})
    both = make_metadata(info={"type": "ümlaut"}, tags=["ümlaut"])  # a tag equal to the type
    plain = make_metadata(tags=["other"])
    corpus = [typed, both, plain]
    cat.upsert_many(corpus)
    assert agree(cat, corpus, tags="*dataset*") == [typed["id"]]
    assert agree(cat, corpus, tags="*mlau*") == [both["id"]]
    assert agree(cat, corpus, tags="ümlaut") == [both["id"]]
    # and the type changes, or goes: the index forgets the old one
    cat.upsert({**typed, "info": {"type": "model"}})
    cat.upsert({**both, "info": {}})
    corpus = [{**typed, "info": {"type": "model"}}, {**both, "info": {}}, plain]
    assert agree(cat, corpus, tags="*dataset*") == []
    assert agree(cat, corpus, tags="*mlau*") == [both["id"]]  # still a tag as saved
    assert agree(cat, corpus, tags="*ode*") == [typed["id"]]


def test_replacing_changes_what_globs_and_text_find(cat):  # noqa: F811
    """Re-upserting an artifact with other files, tags and info leaves no stale match."""
    md = make_metadata(files=["alpha.parquet", "deep/beta.csv"], tags=["gamma-tag"],
                       info={"type": "delta_type", "note": "epsilon words"})
    other = make_metadata(files=["zeta.txt"])
    cat.upsert_many([md, other])
    old = {"files": ["*alpha*", "deep/*", "*.parquet"], "tags": ["*gamma*", "*delta*"],
           "text": ["epsilon", "beta.csv", "gamma-tag"]}
    for field, patterns in old.items():
        for p in patterns:
            assert ids(cat.find(Query.build(**{field: p}))) == [md["id"]], (field, p)
    new = {**md, "files": md["files"][:0] + [dict(md["files"][0], path="omega.json")],
           "tags": ["kappa"], "info": {"note": "lambda"}}
    cat.upsert(new)
    corpus = [new, other]
    for field, patterns in old.items():
        for p in patterns:
            assert agree(cat, corpus, **{field: p}) == [], (field, p)
    assert agree(cat, corpus, files="*omega*") == [md["id"]]
    assert agree(cat, corpus, tags="*kapp*") == [md["id"]]
    assert agree(cat, corpus, text="lambda") == [md["id"]]
    assert agree(cat, corpus, files="*eta*") == [other["id"]]  # zeta, not beta any more


def test_paging_through_glob_matches(cat):  # noqa: F811
    corpus = [make_metadata(files=[f"part_{i}.csv" if i % 3 else f"part_{i}.txt"])
              for i in range(40)]
    cat.upsert_many(corpus)
    for order in ("newest", "oldest"):
        q = Query.build(files="*.csv", order=order, limit=4)
        seen = [m["id"] for m in cat.iter_all(q, page_size=4)]
        assert seen == reference_find(replace(q, limit=None), corpus)


# -- property tests ------------------------------------------------------------------------
PIECES = st.one_of(
    st.sampled_from(["*", "?", "[a-z]", "[^a]", "[]]", "[[]", "[*]", "[?]", "[.-b]",
                     "[Tt]", "/", ".", "-", "ü", "é"]),
    st.sampled_from(NAMES + TAGS + DIRS).flatmap(
        lambda w: st.tuples(st.integers(0, len(w)), st.integers(0, len(w))).map(
            lambda ij: w[min(ij):max(ij)])),
)
GLOBS = st.lists(PIECES, min_size=1, max_size=5).map("".join)
NEEDLES = st.one_of(
    st.sampled_from(NAMES + TAGS + DIRS + ["foo bar", "a*b?c[d", "x\ny", "naïve"]).flatmap(
        lambda w: st.tuples(st.integers(0, len(w)), st.integers(1, 6)).map(
            lambda ij: w[ij[0]:ij[0] + ij[1]].lower())),
    st.text(alphabet="ab*?[]./\nü", min_size=1, max_size=4),
).filter(str.strip)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(GLOBS, max_size=2), tags=st.lists(GLOBS, max_size=2),
       text=st.none() | NEEDLES, order=st.sampled_from(["newest", "oldest"]),
       limit=st.sampled_from([None, 1, 7]))
def test_random_globs_and_text_agree_with_the_reference(cat, files, tags, text,  # noqa: F811
                                                        order, limit):
    for p in files + tags:
        try:
            check_glob(p, "glob")
        except QueryError:
            assume(False)
    assume(files or tags or text)
    corpus = HARD
    if cat.count(Query()) == 0:  # the fixture lives for every example: fill it once
        cat.upsert_many(corpus)
    q = Query.build(files=files, tags=tags, text=text, order=order, limit=limit)
    assert ids(cat.find(q)) == reference_find(q, corpus), q.to_text()
    assert cat.count(q) == len(reference_find(replace(q, limit=None), corpus))


def _document(values: dict[tuple[str, str], list[str]]) -> str:
    return SEP + SEP.join(m[0] + v + m[1] for m, vs in values.items() for v in vs) + SEP


@st.composite
def value_and_glob(draw) -> tuple[str, str]:
    """A value and a glob made from it to match it: each character kept (bracketed when
    special), or ``?``, or a class with it, or a negated class without it; runs replaced
    by ``*``, and ``*`` matching nothing put anywhere."""
    value = draw(st.text(alphabet="ab.*?[]/-^üÉ\n", min_size=1, max_size=10))
    out, i = [], 0
    while i < len(value):
        c = value[i]
        how = draw(st.sampled_from(["lit", "lit", "lit", "any", "star", "class", "not", "empty"]))
        if how == "star":
            out.append("*")
            i = draw(st.integers(i, len(value)))
            continue
        if how == "empty":
            out.append("*")
        out.append({"any": "?", "not": "[^q]",
                    "class": "[]x]" if c == "]" else f"[x{c}]"}.get(
            how, f"[{c}]" if c in "*?[" else c))
        i += 1
    if draw(st.booleans()):
        out.append("*")
    return value, "".join(out)


@settings(max_examples=500, deadline=None)
@given(case=value_and_glob(), slash=st.booleans())
def test_a_matching_value_holds_every_trigram_of_its_glob(case, slash):
    """The one rule the index rests on, against SQLite's own GLOB: a value the glob
    matches holds (in its document, between the marks of its kind) every trigram the glob
    asks the index for — among other values, in any order."""
    value, pattern = case
    check_glob(pattern, "glob")
    assert glob(pattern, value), (pattern, value)  # the generator's promise
    marks = PATH if slash else NAME
    doc = _document({TAG: ["other", "x*y"], marks: ["before", value, "after"]})
    held = text_trigrams(doc)
    assert glob_trigrams(pattern, marks) <= held


# -- SQLite: inside the index ----------------------------------------------------------------
@pytest.fixture
def opened(tmp_path):
    """Opens SQLite catalogues in tmp_path by file name; all closed at the end, whatever
    the test did."""
    made: list[SQLiteCatalogue] = []

    def open_(name: str) -> SQLiteCatalogue:
        made.append(SQLiteCatalogue(f"sqlite:///{tmp_path}/{name}"))
        return made[-1]

    yield open_
    for c in made:
        c.close()


def _vocabulary(c: SQLiteCatalogue) -> dict[str, int]:
    db = c._db()
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.v USING fts5vocab(main, search, row)")
    return dict(db.execute("SELECT term, doc FROM temp.v"))


def _rowids(c: SQLiteCatalogue, trigram: str) -> list[int]:
    return [r[0] for r in c._db().execute(
        "SELECT rowid FROM search WHERE search MATCH ?", ('"' + trigram.replace('"', '""') + '"',))]


def test_the_index_stays_in_step_with_the_rows(opened, tmp_path):
    """After random inserts and replacements (files, tags and type changed, buckets
    shared), the index holds exactly what a fresh one built from the final rows holds."""
    rnd = random.Random(4)
    kept = opened("kept.sqlite")
    latest: dict[str, dict] = {}
    pool = hard_corpus(seed=9, n=40)
    shared = pool[0]["id"][:13] + "".join(rnd.choice(_ALPHABET) for _ in range(13))
    pool.append(make_metadata(aid=shared, files=["shared.bin"], tags=["twin"]))
    for step in range(150):
        md = rnd.choice(pool)
        donor = rnd.choice(pool)
        md = {**md, "files": donor["files"], "tags": rnd.sample(TAGS, rnd.randint(0, 2)),
              "info": donor["info"]}
        if step % 10 == 0:
            kept.upsert_many([md, md])  # the same twice in one batch
        else:
            kept.upsert(md)
        latest[md["id"]] = md
    fresh = opened("fresh.sqlite")
    fresh.upsert_many(latest.values())
    assert _vocabulary(kept) == _vocabulary(fresh)
    assert len(_vocabulary(kept)) > 100
    for c in (kept, fresh):
        c._db().execute("INSERT INTO search(search, rank) VALUES ('integrity-check', 0)")


def test_replaced_values_leave_the_index(opened, tmp_path):
    c = opened("c.sqlite")
    md = make_metadata(files=["qqzzxx.bin"], tags=["wwvvkk"])
    c.upsert(md)
    assert _rowids(c, "qzz") and _rowids(c, "vvk")
    c.upsert({**md, "files": [dict(md["files"][0], path="other.bin")], "tags": []})
    assert _rowids(c, "qzz") == [] and _rowids(c, "vvk") == []
    assert _rowids(c, "the") == [sqlite_search.Bucket(md["id"]).rowid]  # other.bin
    c.close()


def test_ids_sharing_a_bucket(opened, tmp_path):
    """Two ids with the same first 13 characters share one document: both are found, in
    id order both ways, pages do not lose either, and replacing one keeps the other."""
    c = opened("c.sqlite")
    base = new_id(T0)
    twins = sorted(base[:13] + "".join(secrets.choice(_ALPHABET) for _ in range(13))
                   for _ in range(5))
    mds = [make_metadata(aid=t, files=[f"twin_{i}.csv"], tags=["twin"])
           for i, t in enumerate(twins)]
    before = make_metadata(ms=T0 - 5, files=["twin_b.csv"])
    after = make_metadata(ms=T0 + 5, files=["twin_a.csv"])
    corpus = [before, *mds, after]
    c.upsert_many(corpus[::-1])
    assert len({sqlite_search.Bucket(t).rowid for t in twins}) == 1
    assert agree(c, corpus, files="twin_*.csv") == ids(corpus)[::-1]
    for order in ("newest", "oldest"):
        q = Query.build(files="twin_*.csv", order=order, limit=2)
        assert [m["id"] for m in c.iter_all(q, page_size=2)] == \
            reference_find(replace(q, limit=None), corpus)
    changed = {**mds[2], "files": [dict(mds[2]["files"][0], path="solo.txt")], "tags": []}
    c.upsert(changed)
    corpus[3] = changed
    assert agree(c, corpus, files="twin_*.csv") == ids(corpus[:3] + corpus[4:])[::-1]
    assert agree(c, corpus, files="solo*") == [changed["id"]]
    assert agree(c, corpus, tags="*wi*") == ids(mds[:2] + mds[3:])[::-1]
    c.close()


def _statements(c: SQLiteCatalogue, q: Query) -> list[str]:
    """The statements *c* runs for find and count of *q* (not FTS5's own, which start
    with a comment)."""
    seen: list[str] = []
    c._db().set_trace_callback(seen.append)
    try:
        c.find(q)
        c.count(q)
    finally:
        c._db().set_trace_callback(None)
    return [s for s in seen if not s.startswith("--")]


def test_a_pattern_nothing_matches_reads_the_index_only(opened, tmp_path):
    c = opened("c.sqlite")
    c.upsert_many(hard_corpus())
    for q in (Query.build(files="*.nomatch"), Query.build(tags="*nomatch*"),
              Query.build(text="nomatch")):
        seen = _statements(c, q)
        assert seen and all("FROM search" in s for s in seen), seen
    # a pattern without three literal characters in a row has no trigrams: plain plan
    assert not SQLiteCompiler(Query.build(files="*.h?", tags="a*", text="ab"),
                              search=True).trigrams
    seen = _statements(c, Query.build(files="*.h?"))
    assert seen and not any("search" in s for s in seen)
    c.close()


def test_a_common_pattern_falls_back_to_the_plain_plan(opened, tmp_path, monkeypatch):
    """When the index's candidates outnumber the matches, the query gives up on it after
    the budget and runs the plain statement: the same answer either way."""
    c = opened("c.sqlite")
    corpus = [make_metadata(files=["common.txt"], user="rare" if i % 150 == 0 else "many")
              for i in range(600)]
    c.upsert_many(corpus)
    q = Query.build(files="*.txt", user="r?re", limit=5)  # a glob: no user index
    want = reference_find(q, corpus)
    monkeypatch.setattr(sqlite_search, "BUDGET", 300)
    seen = _statements(c, q)
    assert any("FROM search" in s for s in seen)
    plain = [s for s in seen if "FROM artifacts a" in s and "json_each" not in s]
    assert len(plain) == 2, seen  # find and count both fell back
    assert ids(c.find(q)) == want and len(want) == 4
    assert c.count(q) == 4
    monkeypatch.setattr(sqlite_search, "BUDGET", 100_000)
    seen = _statements(c, q)
    assert not [s for s in seen if "FROM artifacts a" in s and "json_each" not in s]
    assert ids(c.find(q)) == want and c.count(q) == 4
    c.close()


def test_a_rare_user_is_walked_by_the_user_index(opened, monkeypatch):
    """With one user named exactly, who has fewer artifacts in the time range than the
    budget, the plain statement (the user's index) answers and the search index is not
    read."""
    c = opened("c.sqlite")
    corpus = [make_metadata(files=["common.txt"], user="rare" if i % 150 == 0 else "many")
              for i in range(600)]
    c.upsert_many(corpus)
    monkeypatch.setattr(sqlite_search, "BUDGET", 100)
    for user, searched in (("rare", False), ("many", True)):
        q = Query.build(files="*.txt", user=user, limit=5)
        seen = _statements(c, q)
        assert any("FROM search" in s for s in seen) == searched, (user, seen)
        assert ids(c.find(q)) == reference_find(q, corpus)
        assert c.count(q) == len(reference_find(replace(q, limit=None), corpus))
    # the bound is the budget: with a smaller one, "many" is walked by the user index too
    for budget, searched in ((596, True), (597, False)):  # "many" has 596
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sqlite_search, "BUDGET", budget)
            q = Query.build(files="*.txt", user="many", since="2000-01-01")
            assert any("FROM search" in s for s in _statements(c, q)) == searched
            assert ids(c.find(q)) == reference_find(q, corpus)


def test_malformed_ids_are_refused(opened, tmp_path):
    c = opened("c.sqlite")
    md = make_metadata()
    with pytest.raises(CatalogueError, match="malformed artifact id"):
        c.upsert({**md, "id": md["id"].upper()})
    assert c.count(Query()) == 0
    c.close()


# -- SQLite: version 1 to 2 ----------------------------------------------------------------
#: the tables as version 1 (main at a08aba6) created them, verbatim
V1_DDL = """
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, created TEXT NOT NULL, type TEXT,
    prefix TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_user ON artifacts(user, id);
CREATE INDEX IF NOT EXISTS artifacts_type ON artifacts(type, id);
CREATE TABLE IF NOT EXISTS files (
    artifact TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, object TEXT NOT NULL, PRIMARY KEY (artifact, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_name ON files(name, artifact);
CREATE INDEX IF NOT EXISTS files_sha ON files(sha256, size);
CREATE TABLE IF NOT EXISTS tags (
    artifact TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (artifact, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag, artifact);
CREATE TABLE IF NOT EXISTS info (
    artifact TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (artifact, key, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS info_kv ON info(key, value, artifact);
CREATE TABLE IF NOT EXISTS based_on (
    child TEXT NOT NULL, parent TEXT NOT NULL, PRIMARY KEY (child, parent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS based_on_parent ON based_on(parent, child);
CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL);
INSERT INTO schema(version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema);
"""


def _write_v1(path, corpus) -> None:
    """A version-1 file with *corpus* in it, rows as version 1's ``_insert`` wrote them."""
    from elliptio.catalogue.base import index_fields

    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(V1_DDL)
        for md in corpus:
            f = index_fields(md)
            db.execute("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?)",
                       (f.id, f.user, f.created, f.type, f.prefix, f.text, json.dumps(md)))
            db.executemany("INSERT INTO files VALUES (?,?,?,?,?,?)",
                           [(f.id, *row) for row in f.files])
            db.executemany("INSERT INTO tags VALUES (?,?)", [(f.id, t) for t in f.tags])
            db.executemany("INSERT INTO info VALUES (?,?,?)", [(f.id, k, v) for k, v in f.info])
            db.executemany("INSERT INTO based_on VALUES (?,?)",
                           [(f.id, p) for p in f.based_on])


def test_a_version_1_file_is_upgraded_on_open(opened, tmp_path, caplog):
    corpus = random_corpus(seed=3, n=120) + hard_corpus(n=30)
    path = tmp_path / "v1.sqlite"
    _write_v1(path, corpus)
    with caplog.at_level(logging.INFO, logger="elliptio.catalogue.sqlite_search"):
        c = opened(path.name)
    assert any("building the search index of 150 artifacts" in r.getMessage()
               for r in caplog.records)
    assert all(r.levelno < logging.WARNING for r in caplog.records)  # small: no warning
    assert c._db().execute("SELECT version FROM schema").fetchall() == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 2
    for kw in ({"files": "*.txt"}, {"files": "data/*"}, {"tags": "*dataset*"},
               {"text": "andy"}, {"files": "*.nomatch"}, {"tags": "*mlau*"},
               {"text": "ümlaut"}, {"files": "x[*]y?z[[]1].csv"}):
        agree(c, corpus, **kw)
    # the built index is the one the writes keep: the same as a fresh catalogue's
    fresh = opened("fresh.sqlite")
    fresh.upsert_many(corpus)
    assert _vocabulary(c) == _vocabulary(fresh)
    # and writes after the upgrade keep it in step
    changed = {**corpus[0], "files": [dict(corpus[0]["files"][0], path="after.txt")]}
    c.upsert(changed)
    assert agree(c, [changed, *corpus[1:]], files="after*") == [changed["id"]]
    c.close()
    # opened again: nothing to do, no message
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="elliptio.catalogue.sqlite_search"):
        opened(path.name).close()
    assert not caplog.records


def test_an_upgrade_that_fails_leaves_version_1(opened, tmp_path, monkeypatch):
    corpus = hard_corpus(n=10)
    path = tmp_path / "v1.sqlite"
    _write_v1(path, corpus)

    def broken(db, where):
        db.execute("INSERT INTO search(rowid, doc) VALUES (1, 'half')")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_search, "build", broken)
    with pytest.raises(CatalogueError, match="disk I/O error"):
        opened(path.name)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version FROM schema").fetchall() == [(1,)]
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'search'").fetchall()
    monkeypatch.undo()
    c = opened(path.name)
    assert agree(c, corpus, files="*.txt")
    c.close()


def test_a_newer_file_is_refused(opened, tmp_path):
    path = tmp_path / "v3.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(V1_DDL)
        db.execute("UPDATE schema SET version = 3")
    with pytest.raises(CatalogueError, match="schema version 3"):
        opened(path.name)


def test_the_memory_catalogue_has_the_index():
    c = SQLiteCatalogue("sqlite://:memory:")
    try:
        corpus = hard_corpus(n=20)
        c.upsert_many(corpus)
        agree(c, corpus, files="*.txt")
        agree(c, corpus, text="ümlaut")
    finally:
        c.close()
