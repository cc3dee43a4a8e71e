#!/usr/bin/env python3
"""``eio://`` benchmark on one SeaweedFS (started here with
``tests.fixtures.s3.SeaweedFS``, on loopback), peers on the same objects in the same run:

- sequential read of a 1 GiB file through ``eio://`` (verified: sha256 of every byte) vs
  a boto3 single-stream GET of the same object (target: ≥ 0.8× the plain GET's
  throughput), vs that GET hashing what it reads, and vs that GET handing what it reads
  to a second thread that hashes it (the most a verifying reader gets from this stack:
  the socket and sha256 overlapped); with the CPU each run took, ours and the server's
  (on a machine where both share the cores, that bounds the ratios)
- reading 3 of 20 columns of a 1 GiB Parquet file (float64, row groups of 1M rows) with
  ``pyarrow.parquet.read_table`` through ``eio://`` vs through s3fs (fsspec's ``s3://``,
  its defaults) on the same object (target: ≤ 1× its time); bytes fetched by each too

Each timing is the best of --repeat runs, the two sides alternating; read the ratios.
Run it several times on a quiet machine: other load takes CPU from whichever side is
running, and the eio:// side needs more of it (sha256).

Usage: python bench/bench_urlfs.py [--size-mib 1024] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fsspec  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from elliptio import Lake, Settings  # noqa: E402
from tests.fixtures.s3 import SeaweedFS  # noqa: E402

CHUNK = 8 << 20
PICKED = ["c03", "c10", "c17"]


#: what -> (our, the server's) CPU of its best run, and that run's time
CPU: dict[str, tuple[float, float, float]] = {}


def cpu_of(pid: int) -> float:
    """Seconds of CPU process *pid* has used (user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def race(peer: Callable[[], object], eio: Callable[[], object], repeat: int,
         server: int = 0, names: tuple[str, str] = ("", "")) -> tuple[float, float]:
    """Best time of each, alternating which runs first (and the CPU of those best runs
    in :data:`CPU` under *names*, when the server's pid is given)."""
    times: dict[str, list[tuple[float, float, float]]] = {"peer": [], "eio": []}
    for i in range(repeat):
        order = [("peer", peer), ("eio", eio)] if i % 2 == 0 else [("eio", eio), ("peer", peer)]
        for name, fn in order:
            c, s = own_cpu(), cpu_of(server) if server else 0.0
            t = time.perf_counter()
            fn()
            t = time.perf_counter() - t
            times[name].append((t, own_cpu() - c, (cpu_of(server) - s) if server else 0.0))
    best = {k: min(v) for k, v in times.items()}
    for (k, v), name in zip(best.items(), names):
        if server and name:
            CPU[name] = (v[1], v[2], v[0])
    return best["peer"][0], best["eio"][0]


def print_ceiling() -> None:
    """What the CPU allows: when the GET alone keeps every core busy, a reader that also
    hashes every byte cannot finish before its total CPU / cores, whatever it overlaps."""
    if "GET" not in CPU or "eio://" not in CPU:
        return
    cores = len(os.sched_getaffinity(0))
    get_ours, get_server, get_t = CPU["GET"]
    eio_ours, eio_server, _ = CPU["eio://"]
    eio_total = eio_ours + eio_server
    print(f"- on {cores} cores the GET kept {(get_ours + get_server) / get_t:.1f} of them "
          f"busy; eio:// needs {eio_total:.2f} core-seconds, so no run of it finishes "
          f"before {eio_total / cores:.2f} s: at most {get_t * cores / eio_total:.2f}x the "
          f"GET on this machine (server and reader sharing the cores)")


def write_parquet(path: Path, size_mib: int) -> int:
    """20 float64 columns of random numbers (incompressible), about *size_mib* MiB."""
    rows = size_mib * (1 << 20) // (20 * 8)
    group = 1 << 20
    rnd = np.random.default_rng(1)
    schema = pa.schema([(f"c{i:02d}", pa.float64()) for i in range(20)])
    with pq.ParquetWriter(path, schema, compression="none") as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            w.write_table(pa.table({f.name: rnd.random(n) for f in schema}),
                          row_group_size=group)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="eiobench-url-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    with SeaweedFS(root / "weed") as server:
        os.environ.update(server.env)
        bucket = server.create_bucket()
        client = server.client()
        lake = Lake(Settings.load(store=f"s3://{bucket}/lake",
                                  catalogue=f"sqlite:///{root}/cat.sqlite", user="bench"))
        fs = fsspec.filesystem("eio", lake=lake)
        mib = args.size_mib

        # -- sequential read of one big file ---------------------------------------------
        big = root / "big.bin"
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for i in range(mib):
                f.write(block[:-8] + i.to_bytes(8, "big"))
        art = lake.save([str(big)], based_on=[])
        big.unlink()
        entry = art.files["big.bin"]
        s3key = lake.store._key(entry.object)  # type: ignore[attr-defined]

        def peer_get() -> None:
            body = client.get_object(Bucket=bucket, Key=s3key)["Body"]
            while body.read(CHUNK):
                pass
            body.close()

        def peer_get_hashed() -> None:
            h = hashlib.sha256()
            body = client.get_object(Bucket=bucket, Key=s3key)["Body"]
            while chunk := body.read(CHUNK):
                h.update(chunk)
            body.close()
            assert h.hexdigest() == entry.sha256

        def peer_get_hashed_aside() -> None:
            h = hashlib.sha256()
            chunks: queue.Queue[bytes | None] = queue.Queue(4)

            def hasher() -> None:
                while (chunk := chunks.get()) is not None:
                    h.update(chunk)  # hashlib releases the GIL: overlaps the socket

            t = threading.Thread(target=hasher)
            t.start()
            body = client.get_object(Bucket=bucket, Key=s3key)["Body"]
            while chunk := body.read(CHUNK):
                chunks.put(chunk)
            chunks.put(None)
            t.join()
            body.close()
            assert h.hexdigest() == entry.sha256

        def eio_read() -> None:
            with fs.open(entry.eio_url) as fh:
                while fh.read(CHUNK):
                    pass

        pid = server.proc.pid  # type: ignore[union-attr]
        what = f"sequential read of {mib} MiB (verified)"
        for label, peer, cpu_name in (
                ("boto3 single GET", peer_get, "GET"),
                ("boto3 single GET + sha256", peer_get_hashed, "GET + sha256"),
                ("boto3 single GET + sha256 in a 2nd thread", peer_get_hashed_aside,
                 "GET + sha256 in a 2nd thread")):
            t_peer, t_eio = race(peer, eio_read, args.repeat, pid,
                                 (cpu_name, "eio://" if cpu_name == "GET" else ""))
            rows.append((what, f"{mib / t_eio:,.0f} MiB/s",
                         f"{label} {mib / t_peer:,.0f} MiB/s", f"{t_peer / t_eio:.2f}×"))

        # -- 3 of 20 columns of a Parquet file ----------------------------------------------
        path = root / "wide.parquet"
        nrows = write_parquet(path, mib)
        size = path.stat().st_size
        art = lake.save([str(path)], based_on=[])
        path.unlink()
        entry = art.files["wide.parquet"]
        s3path = f"{bucket}/{lake.store._key(entry.object)}"  # type: ignore[attr-defined]
        import s3fs

        peer_fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, skip_instance_cache=True)
        fetched = {"eio": 0, "peer": 0}
        real_fetch = lake.store.read_range

        def counting_fetch(key: str, offset: int, length: int) -> bytes:
            data = real_fetch(key, offset, length)
            fetched["eio"] += len(data)
            return data

        lake.store.read_range = counting_fetch  # type: ignore[method-assign]
        real_peer_fetch = s3fs.core._fetch_range

        def counting_peer_fetch(*a: object, **kw: object) -> bytes:
            data = real_peer_fetch(*a, **kw)
            fetched["peer"] += len(data)
            return data

        s3fs.core._fetch_range = counting_peer_fetch  # what s3fs' files fetch through

        def peer_cols() -> None:
            assert pq.read_table(s3path, columns=PICKED, filesystem=peer_fs).num_rows == nrows

        def eio_cols() -> None:
            assert pq.read_table(entry.eio_url, columns=PICKED, filesystem=fs).num_rows == nrows

        t_peer, t_eio = race(peer_cols, eio_cols, args.repeat)
        per_run = {k: v / args.repeat / (1 << 20) for k, v in fetched.items()}
        rows.append((f"3 of 20 columns of a {size / (1 << 20):,.0f} MiB Parquet file",
                     f"{t_eio:.2f} s, {per_run['eio']:,.0f} MiB fetched",
                     f"s3fs {t_peer:.2f} s, {per_run['peer']:,.0f} MiB fetched",
                     f"{t_eio / t_peer:.2f}× its time"))
        lake.close()
        client.close()

    head = ("what", "eio://", "peer", "ratio")
    w = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
    print(f"\nCPU of the best runs, core-seconds per {mib} MiB (this process / SeaweedFS):")
    for name, (ours, theirs, _) in CPU.items():
        print(f"- {name}: {ours:.2f} / {theirs:.2f} (total {ours + theirs:.2f})")
    print_ceiling()
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
