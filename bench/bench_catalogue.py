#!/usr/bin/env python3
"""Catalogue and indexer benchmark: prints two tables.

1. Query latency (p50 / p95, default limit 100, newest first — what ``eio search``, the
   mount and the web page ask) on N artifacts in SQLite (default 1,000,000): by user,
   user + since, file glob (a common and a rare suffix), tag glob, info equality,
   based_on direct, based_on transitive depth 5, and the acceptance story's query.
   The N rows are generated straight into the catalogue with ``upsert_many`` in big
   batches (realistic metadata, lineage chains); the time it took is printed. The file is
   kept (``--db``) and reused by later runs with the same N.
2. Reindex throughput (artifacts/s) from a local store, and from S3 on SeaweedFS
   (``weed mini``, started here with ``tests.fixtures.s3.SeaweedFS``; a bucket with
   Object Lock) when ``weed`` is available: with the trust checks of
   :mod:`elliptio.trust` and, in the same run, without them (the indexer of beca792,
   patched back in by :func:`unchecked`), as a ratio; a resumed run; and ``eio fsck``'s
   time per 1,000 artifacts.

Usage: python bench/bench_catalogue.py [--n 1000000] [--reindex-n 2000] [--db PATH]
       [--runs 25] [--no-s3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elliptio import Lake, Settings, indexer  # noqa: E402
from elliptio.artifact import dump_metadata  # noqa: E402
from elliptio.catalogue.sqlite import SQLiteCatalogue  # noqa: E402
from elliptio.ids import id_time, new_id  # noqa: E402
from elliptio.query import Query  # noqa: E402
from tests.fixtures.s3 import SeaweedFS  # noqa: E402

SPAN_MS = 2 * 365 * 86_400_000  # the corpus covers two years up to now
EXTS = ["txt"] * 10 + ["csv"] * 25 + ["parquet"] * 25 + ["pth"] * 10 + ["json"] * 29 + ["h5"]
TYPES = ["dataset_list", "model", "evaluation", "report", "dataset", "checkpoint",
         "features", "predictions", "config", "notebook"]


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


def generate(cat: SQLiteCatalogue, n: int, seed: int = 1) -> tuple[float, list[str]]:
    """N artifacts; returns (seconds, ids of chain roots with >= 5 levels of descendants)."""
    rnd = random.Random(seed)
    users = [f"user{i:03d}" for i in range(200)]
    tags = [f"tag{i}" for i in range(480)] + [f"{p}dataset{i}" for p in ("", "my-", "raw-")
                                              for i in range(7)]
    now = int(time.time() * 1000)
    times = sorted(rnd.randrange(now - SPAN_MS, now) for _ in range(n))
    recent: list[str] = []
    roots: list[str] = []
    chains: dict[str, str] = {}  # chain tip -> root
    started = time.perf_counter()
    batch: list[dict] = []
    for i, ms in enumerate(times):
        aid = new_id(ms)
        parents: list[str] = []
        r = rnd.random()
        if r < 0.002 or (i < 50):
            roots.append(aid)
            chains[aid] = aid
        elif r < 0.01 and chains:  # extend a lineage chain (the transitive case)
            tip = rnd.choice(list(chains)[-50:])
            parents = [tip]
            chains[aid] = chains.pop(tip)
        elif r < 0.3 and recent:
            parents = rnd.sample(recent, min(len(recent), rnd.randint(1, 2)))
        batch.append(metadata(rnd, aid, users, tags, parents))
        recent.append(aid)
        if len(recent) > 1000:
            recent.pop(0)
        if len(batch) >= 20_000:
            cat.upsert_many(batch)
            batch.clear()
            print(f"\r  generated {i + 1:,}/{n:,}", end="", file=sys.stderr, flush=True)
    if batch:
        cat.upsert_many(batch)
    print(file=sys.stderr)
    return time.perf_counter() - started, roots


def timed(cat: SQLiteCatalogue, queries: list[Query]) -> tuple[float, float, int]:
    times, hits = [], 0
    for q in queries:
        t = time.perf_counter()
        hits += len(cat.find(q))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return statistics.median(times), p95, hits // max(1, len(queries))


def bench_queries(db: Path, n: int, runs: int) -> None:
    marker = db.with_suffix(".n")
    if db.exists() and marker.exists() and marker.read_text().split()[0] == str(n):
        gen = f"reused {db} (generated earlier in {marker.read_text().split()[1]} s)"
        cat = SQLiteCatalogue(f"sqlite:///{db}")
    else:
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
        cat = SQLiteCatalogue(f"sqlite:///{db}")
        seconds, _ = generate(cat, n)
        cat._db().execute("ANALYZE")
        marker.write_text(f"{n} {seconds:.0f}")
        gen = f"{n:,} artifacts generated in {seconds:.0f} s ({n / seconds:,.0f}/s)"
    rnd = random.Random(5)
    db_ = cat._db()
    # chain roots with the deepest lineage, and parents with direct children
    deep = [r[0] for r in db_.execute(
        "WITH RECURSIVE d(root, id, depth) AS (SELECT parent, child, 1 FROM based_on "
        " WHERE parent IN (SELECT parent FROM based_on GROUP BY parent HAVING count(*) = 1 "
        " LIMIT 400)"
        " UNION ALL SELECT d.root, b.child, d.depth + 1 FROM based_on b JOIN d "
        " ON b.parent = d.id WHERE d.depth < 5) "
        "SELECT root FROM d GROUP BY root HAVING max(depth) = 5 LIMIT ?", (runs,))]
    parents = [r[0] for r in db_.execute(
        "SELECT parent FROM based_on ORDER BY random() LIMIT ?", (runs,))]
    users = [f"user{rnd.choice([0, 1, 5, 20, 80, 199]):03d}" for _ in range(runs)]
    cases = [
        ("by user", [Query.build(user=u) for u in users]),
        ("user + since 10d", [Query.build(user=u, since="10d") for u in users]),
        ("file glob *.txt (10% of files)", [Query.build(files="*.txt")] * runs),
        ("file glob *.h5 (1% of files)", [Query.build(files="*.h5")] * runs),
        ("file glob data/part_1*", [Query.build(files="data/part_1*")] * runs),
        ("tag glob *dataset*", [Query.build(tags="*dataset*")] * runs),
        ("info equality", [Query.build(info={"stratification": f"method-{rnd.randrange(50)}"})
                           for _ in range(runs)]),
        ("info nested int", [Query.build(info={"model": {"layers": 3}, "epochs": 7})] * runs),
        ("based_on direct", [Query.build(based_on=p) for p in parents]),
        ("based_on transitive depth 5",
         [Query.build(based_on=r, transitive=True, depth=5) for r in deep]),
        ("story: user+since+*.txt+*dataset*",
         [Query.build(user=u, since="30d", files="*.txt", tags="*dataset*") for u in users]),
        ("count(user)", None),
        # worst cases beyond the targets: globs nothing (or almost nothing) matches scan
        ("worst: file glob *.nomatch (no match)", [Query.build(files="*.nomatch")] * 5),
        ("worst: tag glob *nomatch* (no match)", [Query.build(tags="*nomatch*")] * 5),
        ("exact file name (rare)", [Query.build(files=f"part_{rnd.randrange(1000)}_4.h5")
                                    for _ in range(runs)]),
        ("free text (substring)", [Query.build(text=u) for u in users]),
    ]
    print(f"\n## Query latency on {n:,} artifacts in SQLite (limit 100, newest first)\n")
    print(f"{gen}; {db.stat().st_size / n:,.0f} bytes/artifact on disk\n")
    print("| query | p50 ms | p95 ms | rows/query |")
    print("|---|---:|---:|---:|")
    for name, queries in cases:
        if queries is None:
            times = []
            for u in users:
                t = time.perf_counter()
                cat.count(Query.build(user=u))
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            print(f"| {name} | {statistics.median(times):.1f} | "
                  f"{times[int(len(times) * 0.95)]:.1f} | 1 |")
            continue
        if not queries:
            print(f"| {name} | – | – | no such data |")
            continue
        timed(cat, queries[:2])  # warm the page cache
        p50, p95, rows = timed(cat, queries)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {rows} |", flush=True)
    cat.close()


# -- reindex throughput ---------------------------------------------------------------------
def fill_store(lake: Lake, n: int) -> None:
    """*n* artifacts of one file (and a log) each; every fifth one's file is a dedup
    reference to an earlier artifact's object (the check the trust rules add)."""
    rnd = random.Random(9)
    users = [f"user{i}" for i in range(20)]
    now = int(time.time() * 1000)
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> dict:
        aid = new_id(now - (n - i) * 60_000)
        md = metadata(rnd, aid, users, ["dataset", "model", "raw", "eval"], [])
        body = f"content {i}".encode()
        md["files"] = md["files"][:1]
        md["files"][0].update(size=len(body), sha256=hashlib.sha256(body).hexdigest())
        lake.store.put_bytes(md["files"][0]["object"], body)
        lake.store.put_bytes(md["logs"]["pip_freeze"]["object"], b"x" * 2048)
        md["logs"]["pip_freeze"]["sha256"] = hashlib.sha256(b"x" * 2048).hexdigest()
        return md

    with ThreadPoolExecutor(16) as pool:
        mds = list(pool.map(one, range(n)))
    for i in range(4, n, 5):  # a reference to an older artifact's object
        ref, owner = mds[i], mds[i - 4]
        ref["files"][0] = {**owner["files"][0], "path": ref["files"][0]["path"]}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda md: lake.store.put_bytes(
            f"{md['prefix']}/.eio/metadata.yaml", dump_metadata(md)), mds))


@contextlib.contextmanager
def unchecked():
    """The indexer as it was before the trust rules (main at beca792): metadata.yaml read
    whole and parsed with yaml.load, only its id and prefix compared with its key, rows
    upserted without reference checks or first-claim. The peer of the checked run."""
    from elliptio import layout
    from elliptio.artifact import load_metadata
    from elliptio.indexer import claims, reading, rebuild

    def read_metadata(lake: Lake, key: str) -> dict:
        md = load_metadata(lake.store.read_bytes(key), key)
        k = layout.parse_key(key)
        assert k is not None and md["id"] == k.id and md["prefix"] == k.prefix
        return md

    def claim(cat, store, batch):
        cat.upsert_many([md for _k, md in batch])
        return claims.Claimed(indexed=[md["id"] for _k, md in batch])

    saved = reading.read_metadata, rebuild.claim, rebuild._read_or_error
    rebuild.claim = claim
    rebuild._read_or_error = lambda lake, key: read_metadata(lake, key)
    try:
        yield
    finally:
        reading.read_metadata, rebuild.claim, rebuild._read_or_error = saved


def reindex_rate(lake: Lake, root: Path, name: str) -> list[str]:
    """Rates of a first reindex with the checks and without (the peer; best of 5 each,
    alternated), of a resumed one, and fsck's time per 1,000 artifacts."""
    best = {"checked": float("inf"), "unchecked": float("inf")}
    for run in range(5):  # alternated, so a slow spell of a noisy machine hits both
        order = (("checked", contextlib.nullcontext), ("unchecked", unchecked))
        for label, ctx in order if run % 2 == 0 else order[::-1]:
            target = SQLiteCatalogue(f"sqlite:///{root}/{name}-{label}-{run}.sqlite")
            with ctx():
                t = time.perf_counter()
                report = indexer.reindex(lake, catalogue=target)
                best[label] = min(best[label], time.perf_counter() - t)
            assert report.indexed == report.scanned and not report.quarantined, report
            target.close()
    out = [best["checked"], best["unchecked"]]
    t = time.perf_counter()
    again = indexer.reindex(lake)
    out.append(time.perf_counter() - t)
    t = time.perf_counter()
    report = indexer.fsck(lake)
    out.append(time.perf_counter() - t)
    assert report.clean and report.checked == again.scanned, report
    n = again.scanned
    return [f"{n / out[0]:,.0f}/s", f"{n / out[1]:,.0f}/s", f"{out[0] / out[1]:.2f}",
            f"{n / out[2]:,.0f}/s", f"{out[3] / n * 1000:.2f} s"]


def seaweed_lake(root: Path, stack: contextlib.ExitStack) -> Lake | None:
    """A lake on a fresh bucket with Object Lock in a SeaweedFS started here (stopped when
    *stack* closes); None when ``weed`` is not installed."""
    if shutil.which("weed") is None:
        print("  (weed not on PATH: SeaweedFS row skipped)", file=sys.stderr)
        return None
    server = stack.enter_context(SeaweedFS(root / "weed"))
    os.environ.update(server.env)
    bucket = server.create_bucket()
    lake = Lake(Settings.load(store=f"s3://{bucket}/lake", lock_days=1,
                              catalogue=f"sqlite:///{root}/s3-cat.sqlite", user="bench"))
    stack.callback(lake.close)
    return lake


def bench_reindex(n: int, no_s3: bool) -> None:
    print(f"\n## Reindex throughput and fsck ({n:,} artifacts, one in five a dedup "
          "reference; into fresh SQLite catalogues; best of 5, alternated)\n")
    print("| source | reindex with the trust checks | without (beca792's indexer) | "
          "time ratio | resumed run | fsck per 1,000 artifacts |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="eio-bench-") as tmp:
        root = Path(tmp)
        local = Lake(Settings.load(store=f"file://{root}/store",
                                   catalogue=f"sqlite:///{root}/cat.sqlite", user="bench"))
        fill_store(local, n)
        print(f"| local store | {' | '.join(reindex_rate(local, root, 'local'))} |",
              flush=True)
        local.close()
        if not no_s3:
            with contextlib.ExitStack() as stack:  # the server stops before tmp is removed
                s3 = seaweed_lake(root, stack)
                if s3 is not None:
                    fill_store(s3, n)
                    print(f"| S3 on SeaweedFS (weed mini, loopback) | "
                          f"{' | '.join(reindex_rate(s3, root, 's3'))} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="artifacts in the query corpus")
    ap.add_argument("--reindex-n", type=int, default=2000, help="artifacts to reindex")
    ap.add_argument("--runs", type=int, default=25, help="queries per row")
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "eio-bench-1m"
                    / "catalogue.sqlite", help="where the query corpus is kept between runs")
    ap.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS row")
    ap.add_argument("--skip-queries", action="store_true")
    ap.add_argument("--skip-reindex", action="store_true")
    args = ap.parse_args()
    if not args.skip_queries:
        args.db.parent.mkdir(parents=True, exist_ok=True)
        db = args.db if args.n == 1_000_000 else args.db.with_name(f"catalogue-{args.n}.sqlite")
        bench_queries(db, args.n, args.runs)
    if not args.skip_reindex:
        bench_reindex(args.reindex_n, args.no_s3)


if __name__ == "__main__":
    main()
