"""Realistic metadata for catalogue tests, and a reference answer to any Query.

:func:`make_metadata` builds the dict ``Lake.save_entries`` writes to ``metadata.yaml``
(same keys, same nesting). :func:`reference_find` answers a Query over a list of such dicts
straight from the semantics in the docstring of ``elliptio/query/__init__.py``, with
SQLite's own GLOB operator as the glob oracle — it shares no code with either compiler.
"""

from __future__ import annotations

import atexit
import hashlib
import random
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from elliptio.ids import id_time, new_id
from elliptio.query import Query, canonical

_last_ms = 0
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000


def make_metadata(*, aid: str | None = None, ms: int | None = None, user: str = "andy",
                  files: Sequence[str] | Mapping[str, bytes] = ("train.txt",),
                  info: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
                  based_on: Iterable[str] = (), logs: bool = True) -> dict[str, Any]:
    """Metadata of one artifact, shaped like what ``Lake.save_entries`` writes. Without
    *aid* or *ms*, ids are strictly increasing across calls (creation order = id order)."""
    global _last_ms
    if aid is None and ms is None:
        _last_ms = ms = max(int(time.time() * 1000), _last_ms + 1)
    aid = aid or new_id(ms)
    created = id_time(aid)
    prefix = f"{created:%Y/%m/%d}/{user}/{aid}"
    contents = files if isinstance(files, Mapping) else {p: p.encode() for p in files}
    records = [{"path": p, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "object": f"{prefix}/{p}"} for p, data in contents.items()]
    log_records = {}
    if logs:
        text = b"PyYAML==6.0.1\nelliptio==0.1.0\n"
        log_records["pip_freeze"] = {"path": ".eio/logs/pip_freeze.txt", "size": len(text),
                                     "sha256": hashlib.sha256(text).hexdigest(),
                                     "object": f"{prefix}/.eio/logs/pip_freeze.txt"}
    return {
        "elliptio": 1,
        "id": aid,
        "user": user,
        "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "prefix": prefix,
        "info": dict(info or {}),
        "tags": list(dict.fromkeys(tags)),
        "based_on": list(dict.fromkeys(based_on)),
        "files": records,
        "logs": log_records,
        "provenance": {
            "pip_freeze": {"present": True, "packages": 2},
            "git": {"present": True, "commit": "0" * 40, "branch": "main", "dirty": False},
            "python": {"version": "3.11.7", "implementation": "CPython",
                       "executable": "/usr/bin/python3"},
            "platform": {"system": "Linux", "release": "6.1", "machine": "x86_64",
                         "description": "Linux-6.1-x86_64"},
            "host": "worker-1", "user": user, "login": user, "uid": 1000, "pid": 4242,
            "argv": ["train.py", "--epochs", "10"], "cwd": "/home/" + user,
            "process_started": None, "elliptio_version": "0.1.0", "env": {},
        },
    }


USERS = ["andy", "brenda", "charlie", "andy2", "an.dy", "bob_x"]
TAGS = ["dataset", "raw-dataset", "model", "Dataset", "eval", "ünïcode", "a[b]", "x*y", "tmp"]
NAMES = ["train.txt", "test.txt", "model.pth", "notes.TXT", "data.csv", "data_1.csv",
         "data_10.csv", "résumé.pdf", "a b.txt", "weird[1].txt", ".hidden"]
DIRS = ["", "", "data/", "data/sub/", "out/", "çà/"]
TYPES = ["dataset_list", "model", "evaluation", "dataset", "Model", None]
INFO_VALUES: list[Any] = [10, "10", 10.5, True, None, [1, 2], ["a"], "new-cool-method",
                          "Über", 0, False, {"x": 1}]


def random_corpus(seed: int, n: int = 120) -> list[dict[str, Any]]:
    """*n* artifacts over ~40 days with users, files, tags, nested info and lineage."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    ms = T0
    for i in range(n):
        ms += rnd.choice([1, 7, 1000, 3_600_000, DAY // 3])
        files = {}
        for _ in range(rnd.randint(1, 4)):
            files[rnd.choice(DIRS) + rnd.choice(NAMES)] = bytes([rnd.randrange(4)]) * 3
        info: dict[str, Any] = {}
        t = rnd.choice(TYPES)
        if t is not None:
            info["type"] = t
        # keys differing only in case or in - against _: each is its own key
        for key in rnd.sample(["epochs", "lr", "stratification", "flag", "learningRate",
                               "learningrate", "batch-size", "batch_size"], rnd.randint(0, 3)):
            info[key] = rnd.choice(INFO_VALUES)
        if rnd.random() < 0.3:
            info["model"] = {"layers": rnd.choice([3, "3", 4]),
                             "opt": {"name": rnd.choice(["adam", "sgd"])}}
        parents = rnd.sample([m["id"] for m in out[-15:]], min(len(out[-15:]),
                                                                 rnd.choice([0, 0, 1, 1, 2])))
        out.append(make_metadata(
            ms=ms, user=rnd.choice(USERS), files=files, info=info,
            tags=rnd.sample(TAGS, rnd.randint(0, 3)), based_on=parents, logs=i % 2 == 0))
    return out


# -- the reference semantics --------------------------------------------------------------
_glob_db = sqlite3.connect(":memory:", check_same_thread=False)
atexit.register(_glob_db.close)


def glob(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    return bool(_glob_db.execute("SELECT ? GLOB ?", (value, pattern)).fetchone()[0])


def _flat(info: Any, prefix: str = "") -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for k, v in info.items():
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out.add((f"{prefix}{k}", canonical(v)))
    return out


def _ms(aid: str) -> int:
    return round(id_time(aid).timestamp() * 1000)


def _words(md: Mapping[str, Any]) -> str:
    def leaves(v: Any) -> Iterable[str]:
        if isinstance(v, dict):
            for x in v.values():
                yield from leaves(x)
        elif isinstance(v, list):
            for x in v:
                yield from leaves(x)
        elif isinstance(v, str):
            yield v
        elif v is not None:
            yield canonical(v)

    t = (md.get("info") or {}).get("type")
    words = [md["id"], md["user"], "" if t is None else str(t), *md["tags"],
             *(f["path"] for f in md["files"]), *leaves(md.get("info") or {})]
    return "\n".join(words).lower()


def reference_find(q: Query, corpus: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids matching *q*, ordered and limited, computed from first principles."""
    by_id = {m["id"]: m for m in corpus}

    def walk(start: str, up: bool, depth: int) -> set[str]:
        found: set[str] = set()
        level = {start}
        for _ in range(depth):
            nxt = set()
            for m in corpus:
                if up and m["id"] in level:
                    nxt |= set(m["based_on"])
                if not up and level & set(m["based_on"]):
                    nxt.add(m["id"])
            if nxt <= found:
                break
            found |= nxt
            level = nxt
        return found

    def ok(m: Mapping[str, Any]) -> bool:
        aid = m["id"]
        info = m.get("info") or {}
        if q.ids and aid not in q.ids:
            return False
        if q.user is not None and not glob(q.user, m["user"]):
            return False
        if q.since is not None and _ms(aid) < int(q.since.timestamp() * 1000):
            return False
        if q.until is not None and _ms(aid) >= int(q.until.timestamp() * 1000):
            return False
        t = info.get("type")
        if q.type is not None and not glob(q.type, None if t is None else str(t)):
            return False
        for p in q.files:
            names = [f["path"] if "/" in p else f["path"].rsplit("/", 1)[-1]
                     for f in m["files"]]
            if not any(glob(p, n) for n in names):
                return False
        # the type is one of the tags: info.type as text beside the tags as saved
        tags = [*m["tags"], *([] if t is None else [str(t)])]
        for p in q.tags:
            if not any(glob(p, tag) for tag in tags):
                return False
        flat = _flat(info)
        if any(pair not in flat for pair in q.info):
            return False
        if q.based_on is not None:
            if q.transitive:
                if aid not in walk(q.based_on, False, q.depth):
                    return False
            elif q.based_on not in m["based_on"]:
                return False
        if q.ancestor_of is not None:
            if aid not in walk(q.ancestor_of, True, q.depth if q.transitive else 1):
                return False
        if q.text is not None and q.text not in _words(m):
            return False
        if q.after is not None:
            if (aid >= q.after) if q.order == "newest" else (aid <= q.after):
                return False
        return True

    ids = sorted((i for i, m in by_id.items() if ok(m)), reverse=q.order == "newest")
    return ids if q.limit is None else ids[:q.limit]


def random_query(rnd: random.Random, corpus: Sequence[Mapping[str, Any]]) -> Query:
    """A Query combining a random subset of every field, biased towards matches."""
    m = rnd.choice(corpus)
    kw: dict[str, Any] = {}

    def maybe(p: float = 0.3) -> bool:
        return rnd.random() < p

    if maybe():
        kw["user"] = rnd.choice([m["user"], "an*", "?ndy", "[ab]*", "*_x", "andy", "[!a]*"])
    if maybe(0.25):
        base = datetime.fromtimestamp((_ms(m["id"]) + rnd.randint(-DAY, DAY)) / 1000, UTC)
        kw["since"] = base
    if maybe(0.25):
        base = datetime.fromtimestamp((_ms(m["id"]) + rnd.randint(-DAY, 2 * DAY)) / 1000, UTC)
        kw["until"] = rnd.choice([base, base.date().isoformat()])
    if maybe():
        f = rnd.choice(m["files"])["path"]
        kw["files"] = [rnd.choice([f, f.rsplit("/", 1)[-1], "*.txt", "*.TXT", "data_?.csv",
                                   "data/*", "*/sub/*", "*[0-9]*", "weird[[]1].txt",
                                   "*.csv", "d*/*.txt", "[]-a]*", "[z-a]*"])]
    if maybe():
        kw["tags"] = rnd.sample(["*dataset*", "*data*", "model", "Dataset", "ü*", "a[[]b]",
                                 "x[*]y", "*", "eval"] + list(m["tags"]), rnd.randint(1, 2))
    if maybe(0.2):
        kw["type"] = rnd.choice(["model", "*model*", "[Mm]odel", "dataset*", "evaluation"])
    if maybe():
        pairs = sorted(_flat(m.get("info") or {}))
        if pairs and maybe(0.8):
            k, v = rnd.choice(pairs)
            kw["info"] = {k: __import__("json").loads(v)}
        else:
            kw["info"] = {rnd.choice(["epochs", "lr", "flag", "model.layers", "learningRate",
                                      "batch-size"]):
                          rnd.choice(INFO_VALUES)}
    if maybe(0.2):
        target = rnd.choice(corpus)["id"]
        kw[rnd.choice(["based_on", "ancestor_of"])] = target
        kw["transitive"] = maybe(0.6)
        if kw["transitive"] and maybe(0.5):
            kw["depth"] = rnd.randint(1, 4)
    if maybe(0.15):
        kw["text"] = rnd.choice(["DATA", "ü", "andy", m["id"][-6:], "10", "cool", "txt\nd"])
    kw["order"] = rnd.choice(["newest", "oldest"])
    kw["limit"] = rnd.choice([None, 5, 50, 1000])
    info = kw.pop("info", None)
    q = Query.build(**kw)
    if info is not None:
        from dataclasses import replace

        # dotted keys address nested leaves (the text form's reading of info.a.b=...)
        q = replace(q, info=tuple(sorted((k, canonical(v)) for k, v in info.items())))
    return q
