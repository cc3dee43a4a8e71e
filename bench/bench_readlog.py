"""What asking the mounts for this process's reads adds to a save.

    python bench/bench_readlog.py [--rows N] [--saves N] [--lookups N]

A lake on the local store (the lookup does not touch the store; a local store keeps the
save's own time small and steady), a read log filled directly with N rows (default
1,000,000: 10,000 scopes of 100 artifacts, plus 20 of this process's own session), and:

- a save and the lookup alone (``elliptio.mountreads.mount_reads``) with no mount
  running;
- a mount (``elliptiofs``) on that read log, then the lookup alone and a save without
  ``based_on`` (which asks the mount) against one with ``based_on=`` given (which does
  not), interleaved; and the lookup's own time inside the saves that ask (the difference
  of two medians of whole saves is as noisy as a save, tens of ms on a busy machine).

p50/p95 of each, one run. Every process it starts is stopped by pid; the mount is
unmounted, also on failure.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.mounts import Procs  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def row(what: str, xs: list[float]) -> str:
    return f"| {what} | {len(xs)} | {pct(xs, 50) * 1e3:.2f} ms | {pct(xs, 95) * 1e3:.2f} ms |"


def fake_id(rng: random.Random) -> str:
    return "01" + "".join(rng.choices(string.digits + "abcdefghjkmnpqrstvwxyz", k=24))


def fill(readlog: str, rows: int, own_scope: str, own: list[str]) -> None:
    from elliptiofs.readlog import ReadLog

    ReadLog(readlog).close()  # the schema, mode 0600
    import sqlite3

    rng = random.Random(1)
    db = sqlite3.connect(readlog)
    now = time.time() - 60
    per = 100
    with db:
        batch = []
        for i in range(rows // per):
            scope = f"session:bench:{100000 + i}:{rng.randrange(10**6)}"
            for j in range(per):
                batch.append((scope, fake_id(rng), now + j, 100000 + i, 1000))
            if len(batch) >= 100_000:
                db.executemany("INSERT OR IGNORE INTO reads VALUES (?,?,?,?,?)", batch)
                batch.clear()
        db.executemany("INSERT OR IGNORE INTO reads VALUES (?,?,?,?,?)", batch)
        db.executemany("INSERT OR IGNORE INTO reads VALUES (?,?,?,?,?)",
                       [(own_scope, a, now + k, os.getpid(), os.getuid())
                        for k, a in enumerate(own)])
    (n,) = db.execute("SELECT COUNT(*) FROM reads").fetchone()
    db.close()
    print(f"read log: {n:,} rows ({os.path.getsize(readlog) / 1e6:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--saves", type=int, default=60)
    ap.add_argument("--lookups", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-readlog-"))
    env = {"ELLIPTIO_STORE": f"file://{tmp}/store",
           "ELLIPTIO_CATALOGUE": f"sqlite:///{tmp}/catalogue.sqlite",
           "ELLIPTIO_USER": "bench", "ELLIPTIO_READLOG": f"{tmp}/rl/readlog.sqlite"}
    os.environ.update(env)
    from elliptio import Lake, Settings, lineage
    from elliptio.mountreads import mount_reads
    from elliptiofs.readlog import scope_for

    src = tmp / "m.txt"
    lake = Lake(Settings.load())
    own = []
    for i in range(20):
        src.write_text(f"parent {i}\n")
        own.append(lake.save([str(src)], based_on=[]).id)
    fill(env["ELLIPTIO_READLOG"], args.rows, scope_for(os.getpid(), os.getuid()), own)
    store = lake.settings.store

    def lookups() -> list[float]:
        out = []
        for _ in range(args.lookups):
            t = time.perf_counter()
            mount_reads(store)
            out.append(time.perf_counter() - t)
        return out

    import elliptio.mountreads as mountreads

    in_saves: list[float] = []  # the lookup's own time inside each save that asks
    real_mount_reads = mountreads.mount_reads

    def timed_mount_reads(*a: object, **kw: object) -> list[str]:
        t = time.perf_counter()
        try:
            return real_mount_reads(*a, **kw)  # type: ignore[arg-type]
        finally:
            in_saves.append(time.perf_counter() - t)

    mountreads.mount_reads = timed_mount_reads  # type: ignore[assignment]

    def saves(explicit: bool) -> list[float]:
        out = []
        for i in range(args.saves):
            src.write_text(f"{explicit} {i} {time.time()}\n")
            t = time.perf_counter()
            a = lake.save([str(src)], based_on=own if explicit else None)
            out.append(time.perf_counter() - t)
            assert a.based_on == (own if explicit or mounted else []), a.based_on
            lineage.reset()  # based_on= is recorded as used; the next save starts clean
        return out

    mounted = False
    rows = [row("lookup alone, no mount", lookups())]
    assert mount_reads(store) == []
    no_mount = saves(False)
    procs = Procs()
    mnt = tmp / "mnt"
    try:
        daemon_env = {**os.environ, "ELLIPTIO_SPOOL": str(tmp / "spool")}
        p = procs.mount([sys.executable, "-m", "elliptiofs.cli", str(mnt), "--foreground"],
                        mnt, tmp / "mnt.log", daemon_env)
        mounted = True
        assert mount_reads(store) == own
        with_lookup, explicit = [], []
        in_saves.clear()
        for _ in range(3):  # interleaved
            with_lookup += saves(False)
            explicit += saves(True)
        rows += [row("lookup alone, mount running", lookups()),
                 row("save, no mount", no_mount),
                 row("save, mount running, based_on given (no lookup)", explicit),
                 row("save, mount running, lookup (20 parents found)", with_lookup),
                 row("the lookup inside those saves (its own time)", in_saves)]
        added = statistics.median(with_lookup) - statistics.median(explicit)
        procs.unmount(mnt, p)
    finally:
        procs.close()
        lake.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.rows:,}-row read log, local store, one run\n")
    print("| what | n | p50 | p95 |\n|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nadded to a save by the lookup (median difference): {added * 1e3:.2f} ms "
          f"(target < 5 ms)")


if __name__ == "__main__":
    main()
