#!/usr/bin/env python3
"""Web page benchmark: prints one table of request latencies (p50 / p95, ms).

Measured over real HTTP (uvicorn on 127.0.0.1 in a thread of this process, one httpx
client, requests one after another), so the numbers include routing, the catalogue
queries, the result count, template rendering and the transfer:

- the search page (HTML) and ``/api/search`` (JSON) over N artifacts in SQLite (default
  100,000, 50 per page): no filter, by user, the acceptance story's query, a tag glob, an
  info equality, free text, and a page deep in a keyset walk. The N rows are generated
  straight into the catalogue with ``upsert_many`` (bench_catalogue's realistic metadata
  and lineage chains); the time it took is printed.
- an artifact page with 1,000 files (saved for real through ``Lake.save``), and its JSON;
- a lineage page with 200 nodes (a tree below one root, depth 5), and its JSON.

Usage: python bench/bench_web.py [--n 100000] [--runs 50] [--quick]
``--quick`` (or ELLIPTIO_BENCH_QUICK=1): 5,000 artifacts and 10 runs per row, to try it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from bench_catalogue import free_port, generate, metadata  # noqa: E402

from elliptio import Lake, Settings  # noqa: E402
from elliptio.catalogue.sqlite import SQLiteCatalogue  # noqa: E402
from elliptio.ids import new_id  # noqa: E402
from elliptio.web import create_app  # noqa: E402


class Server:
    """The app under uvicorn in a thread; stopped by :meth:`stop`."""

    def __init__(self, lake: Lake) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(lake), host="127.0.0.1", port=self.port,
                                lifespan="off", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def timed(client: httpx.Client, url: str, params: dict | list, runs: int,
          check: Callable[[httpx.Response], int]) -> tuple[float, float, int, int]:
    """(p50 ms, p95 ms, rows per response, bytes per response) after one warm-up."""
    check(client.get(url, params=params))
    times = []
    rows = size = 0
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(url, params=params)
        times.append((time.perf_counter() - t) * 1000)
        rows = check(r)
        size = len(r.content)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return statistics.median(times), p95, rows, size


def html_rows(r: httpx.Response) -> int:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.text.count("<tr data-id=")


def api_rows(r: httpx.Response) -> int:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    body = r.json()
    return len(body.get("items") or body.get("files") or body.get("nodes") or [])


def big_artifact(lake: Lake, root: Path, files: int) -> str:
    src = root / "many"
    for i in range(files):
        d = src / f"part{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"shard_{i:04d}.csv").write_text(f"row,{i}\n")
    return lake.save([str(src)], info={"type": "dataset", "shards": files}).id


LINEAGE_TAGS = ["lineage", "tree", "bench"]


def lineage_tree(cat: SQLiteCatalogue, nodes: int, fanout: int = 3) -> str:
    """A root and nodes-1 descendants, each with one parent (breadth-first, *fanout*
    children each): 200 nodes and fanout 3 is 5 levels deep."""
    rnd = random.Random(3)
    users = [f"user{i:03d}" for i in range(20)]
    now = int(time.time() * 1000) - nodes
    ids = [new_id(now + i) for i in range(nodes)]
    items = [metadata(rnd, ids[0], users, LINEAGE_TAGS, [])]
    for i in range(1, nodes):
        items.append(metadata(rnd, ids[i], users, LINEAGE_TAGS, [ids[(i - 1) // fanout]]))
    cat.upsert_many(items)
    return ids[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="artifacts in the catalogue")
    ap.add_argument("--runs", type=int, default=50, help="requests per row")
    ap.add_argument("--files", type=int, default=1000, help="files of the big artifact")
    ap.add_argument("--nodes", type=int, default=200, help="nodes of the lineage graph")
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("ELLIPTIO_BENCH_QUICK") == "1",
                    help="5,000 artifacts, 10 runs per row")
    args = ap.parse_args()
    if args.quick:
        args.n, args.runs = min(args.n, 5000), min(args.runs, 10)
    with tempfile.TemporaryDirectory(prefix="eio-bench-web-") as tmp:
        root = Path(tmp)
        cat = SQLiteCatalogue(f"sqlite:///{root}/catalogue.sqlite")
        seconds, _ = generate(cat, args.n)
        cat._db().execute("ANALYZE")
        lake = Lake(Settings.load(store=f"file://{root}/store",
                                  catalogue=f"sqlite:///{root}/catalogue.sqlite",
                                  user="bench"), catalogue=cat)
        t = time.perf_counter()
        big = big_artifact(lake, root, args.files)
        save_s = time.perf_counter() - t
        centre = lineage_tree(cat, args.nodes)
        total = args.n + 1 + args.nodes
        print(f"\n## Web page latency over {total:,} artifacts in SQLite "
              f"(HTTP on loopback, {args.runs} requests per row)\n")
        print(f"{args.n:,} artifacts generated in {seconds:.0f} s; the {args.files:,}-file "
              f"artifact saved in {save_s:.1f} s; {os.cpu_count()} CPUs\n")
        print("| request | p50 ms | p95 ms | rows | KiB |")
        print("|---|---:|---:|---:|---:|")
        with Server(lake) as base, httpx.Client(base_url=base, timeout=120) as client:
            # a cursor 20 pages deep, found by walking the keyset pages
            after = None
            for _ in range(20):
                body = client.get("/api/search", params={"after": after or ""}).json()
                after = body["next"]
            searches = [
                ("no filter (newest 50)", ""),
                ("by user", "user=user001"),
                ("story: user+since 30d+*.txt+*dataset*",
                 "user=user000,since=30d,file=*.txt,tag=*dataset*"),
                ("tag glob *dataset*", "tag=*dataset*"),
                ("info equality", "info.stratification=method-7"),
                ("free text", "text=method-7"),
            ]
            rows = []
            for name, q in searches:
                rows.append((f"search page: {name}", "/", {"q": q}, html_rows))
                rows.append((f"/api/search: {name}", "/api/search", {"q": q}, api_rows))
            rows.append(("search page: 21st page (keyset cursor)", "/", {"after": after},
                         html_rows))
            rows.append(("/api/search: 21st page (keyset cursor)", "/api/search",
                         {"after": after}, api_rows))
            rows += [
                (f"artifact page, {args.files:,} files", f"/artifacts/{big}", {},
                 lambda r: html_rows(r) or r.text.count('class="download"')),
                (f"/api/artifacts, {args.files:,} files", f"/api/artifacts/{big}", {},
                 api_rows),
                (f"lineage page, {args.nodes} nodes", f"/artifacts/{centre}/lineage",
                 {"depth": 10}, lambda r: html_rows(r) or r.text.count('class="node ')),
                (f"/api/.../lineage, {args.nodes} nodes",
                 f"/api/artifacts/{centre}/lineage", {"depth": 10}, api_rows),
            ]
            for name, url, params, check in rows:
                p50, p95, n, size = timed(client, url, params, args.runs, check)
                print(f"| {name} | {p50:.1f} | {p95:.1f} | {n} | {size / 1024:.0f} |",
                      flush=True)
        lake.close()


if __name__ == "__main__":
    main()
