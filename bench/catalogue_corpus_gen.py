"""The query benchmark's corpus (bench_catalogue.py): N artifacts of realistic metadata,
the same for every backend and every run with the same seed and clock.

Ids are made here from the seeded generator (the ULID layout of :mod:`elliptio.ids`, whose
``new_id`` draws its random bits from ``secrets``), so two backends loaded from the same
``(n, seed, now_ms)`` hold the same rows, and a cached SQLite file can be matched by a
PostgreSQL database loaded later from its recorded ``now_ms``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from elliptio.ids import id_time

#: bump when what :func:`batches` yields changes: cached corpora of another version are
#: regenerated
CORPUS_VERSION = 2
SPAN_MS = 2 * 365 * 86_400_000  # the corpus covers two years up to now
EXTS = ["txt"] * 10 + ["csv"] * 25 + ["parquet"] * 25 + ["pth"] * 10 + ["json"] * 29 + ["h5"]
TYPES = ["dataset_list", "model", "evaluation", "report", "dataset", "checkpoint",
         "features", "predictions", "config", "notebook"]
USERS = [f"user{i:03d}" for i in range(200)]
TAGS = [f"tag{i}" for i in range(480)] + [f"{p}dataset{i}" for p in ("", "my-", "raw-")
                                          for i in range(7)]
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def corpus_id(ms: int, rnd: random.Random) -> str:
    """An artifact id for millisecond *ms* whose 80 random bits come from *rnd*."""
    value = (ms << 80) | rnd.getrandbits(80)
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def metadata(rnd: random.Random, aid: str, users: list[str], tags: list[str],
             parents: list[str]) -> dict:
    created = id_time(aid)
    user = users[min(int(rnd.paretovariate(1.2)) - 1, len(users) - 1)]
    prefix = f"{created:%Y/%m/%d}/{user}/{aid}"
    files = []
    for j in range(rnd.randint(1, 5)):
        ext = rnd.choice(EXTS)
        path = rnd.choice(["", "data/", "out/"]) + f"part_{rnd.randrange(1000)}_{j}.{ext}"
        files.append({"path": path, "size": rnd.randrange(1 << 30),
                      "sha256": f"{rnd.getrandbits(256):064x}", "object": f"{prefix}/{path}"})
    return {
        "elliptio": 1, "id": aid, "user": user,
        "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "prefix": prefix,
        "info": {"type": rnd.choice(TYPES), "epochs": rnd.randrange(100),
                 "lr": rnd.choice([0.1, 0.01, 0.001]),
                 "stratification": f"method-{rnd.randrange(50)}",
                 "model": {"layers": rnd.randrange(1, 12)}},
        "tags": rnd.sample(tags, rnd.randint(0, 3)),
        "based_on": parents,
        "files": files,
        "logs": {"pip_freeze": {"path": ".eio/logs/pip_freeze.txt", "size": 2048,
                                "sha256": f"{rnd.getrandbits(256):064x}",
                                "object": f"{prefix}/.eio/logs/pip_freeze.txt"}},
        "provenance": {"host": f"worker-{rnd.randrange(40)}", "user": user,
                       "python": {"version": "3.11.7"}, "argv": ["train.py"],
                       "git": {"present": True, "commit": f"{rnd.getrandbits(160):040x}",
                               "branch": "main", "dirty": False}},
    }


def batches(n: int, now_ms: int, seed: int = 1, size: int = 20_000) -> Iterator[list[dict]]:
    """The corpus in batches of *size*, oldest first: created times spread over two years
    before *now_ms*; a user's share Pareto-distributed; 0-3 tags of 501 (21 of them
    ``*dataset*``); three in ten based on one or two recent artifacts, and one in 125
    extending one of 50 lineage chains (the transitive queries' depth)."""
    rnd = random.Random(seed)
    times = sorted(rnd.randrange(now_ms - SPAN_MS, now_ms) for _ in range(n))
    recent: list[str] = []
    chains: dict[str, str] = {}  # chain tip -> root
    batch: list[dict] = []
    for i, ms in enumerate(times):
        aid = corpus_id(ms, rnd)
        parents: list[str] = []
        r = rnd.random()
        if r < 0.002 or i < 50:
            chains[aid] = aid
        elif r < 0.01 and chains:  # extend a lineage chain (the transitive case)
            tip = rnd.choice(list(chains)[-50:])
            parents = [tip]
            chains[aid] = chains.pop(tip)
        elif r < 0.3 and recent:
            parents = rnd.sample(recent, min(len(recent), rnd.randint(1, 2)))
        batch.append(metadata(rnd, aid, USERS, TAGS, parents))
        recent.append(aid)
        if len(recent) > 1000:
            recent.pop(0)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate(cat: Any, n: int, seed: int = 1) -> tuple[float, list[str]]:
    """The corpus (clock: now) into catalogue *cat* by ``upsert_many``: (seconds, [])."""
    started = time.perf_counter()
    for items in batches(n, int(time.time() * 1000), seed):
        cat.upsert_many(items)
    return time.perf_counter() - started, []


#: (deep roots, parents) picked from a loaded corpus; ``?`` placeholders, rewritten by
#: backends whose driver wants another
DEEP_ROOTS_SQL = (
    "WITH RECURSIVE d(root, id, depth) AS (SELECT parent, child, 1 FROM based_on "
    " WHERE parent IN (SELECT parent FROM based_on GROUP BY parent HAVING count(*) = 1 "
    " ORDER BY parent LIMIT 400)"
    " UNION ALL SELECT d.root, b.child, d.depth + 1 FROM based_on b JOIN d "
    " ON b.parent = d.id WHERE d.depth < 5) "
    "SELECT root FROM d GROUP BY root HAVING max(depth) = 5 ORDER BY root LIMIT ?")
#: every parent, in id order (the benchmark takes evenly spaced ones: the same on every
#: backend, spread over the two years)
PARENTS_SQL = "SELECT DISTINCT parent FROM based_on ORDER BY parent"
