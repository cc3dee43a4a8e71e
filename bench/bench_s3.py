#!/usr/bin/env python3
"""S3-store benchmark on one SeaweedFS (started here, on loopback), peers in the same run:

- `eio save` of a 1 GiB file (hashing included) vs boto3 `upload_file` of the same file
- 10,000 × 4 KiB files saved as one artifact (files/s) vs boto3 put_object of each file
  from 16 threads
- full, verified download of 1 GiB vs a boto3 single-stream GET to a file, and vs the
  same GET hashing what it writes (eio verifies every full download against the recorded
  sha256; on a 2-core machine that also runs the server, hashing is a large share)

Each timing is the best of --repeat runs; ratios (eio ÷ peer throughput) are what to read:
these machines are noisy.

Usage: python bench/bench_s3.py [--quick] [--repeat N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elliptio import Lake, Settings  # noqa: E402
from tests.fixtures.s3 import SeaweedFS  # noqa: E402


def race(peer, eio, repeat: int) -> tuple[float, float]:
    """Best time of each, runs alternating (peer, eio, eio, peer, ...) so that neither
    always runs second (page cache, dirty-page writeback and server state favour order)."""
    times: dict[str, list[float]] = {"peer": [], "eio": []}
    for i in range(repeat):
        order = [("peer", peer), ("eio", eio)] if i % 2 == 0 else [("eio", eio), ("peer", peer)]
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return min(times["peer"]), min(times["eio"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 MiB and 1,000 files")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    args = ap.parse_args()
    size_mib = 64 if args.quick else 1024
    nfiles = 1000 if args.quick else 10_000
    root = Path(args.dir or tempfile.mkdtemp(prefix="eiobench-s3-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    with SeaweedFS(root / "weed") as server:
        os.environ.update(server.env)
        bucket = server.create_bucket()
        peer_bucket = server.create_bucket()
        client = server.client()
        n = 0

        def lake() -> Lake:
            nonlocal n
            n += 1
            return Lake(Settings.load(store=f"s3://{bucket}/run{n}",
                                      catalogue=f"sqlite:///{root}/cat{n}.sqlite",
                                      user="bench"))

        big = root / "big.bin"
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for i in range(size_mib):
                f.write(block[:-8] + i.to_bytes(8, "big"))  # no two blocks alike
        size = big.stat().st_size

        # -- one big file up ---------------------------------------------------------
        from boto3.s3.transfer import TransferConfig

        def peer_up() -> None:
            client.upload_file(str(big), peer_bucket, f"up/{time.monotonic_ns()}",
                               Config=TransferConfig(max_concurrency=10))

        saved = []

        def eio_up() -> None:
            lk = lake()
            saved.append(lk.save([str(big)], based_on=[]))
            lk.close()

        t_peer, t_eio = race(peer_up, eio_up, args.repeat)
        mib = size / (1 << 20)
        rows.append((f"save {size_mib} MiB file (sha256 incl.)", f"{mib / t_eio:,.0f} MiB/s",
                     f"boto3 upload_file {mib / t_peer:,.0f} MiB/s", f"{t_peer / t_eio:.2f}×"))

        # -- one big file down -------------------------------------------------------
        art = saved[-1]
        reader = Lake(Settings.load(store=art._lake.settings.store,
                                    catalogue=art._lake.settings.catalogue, user="bench"))
        obj = reader.load(art.id).files["big.bin"]
        dest = root / "down"
        dest.mkdir()
        s3key = reader.store._key(obj.object)  # type: ignore[attr-defined]

        def peer_down() -> None:
            resp = client.get_object(Bucket=bucket, Key=s3key)
            with open(dest / "peer.bin", "wb") as f:
                shutil.copyfileobj(resp["Body"], f, 1 << 20)
            resp["Body"].close()

        def eio_down() -> None:
            obj.download(dest / "eio.bin")

        t_peer, t_eio = race(peer_down, eio_down, args.repeat)
        rows.append((f"download {size_mib} MiB, verified", f"{mib / t_eio:,.0f} MiB/s",
                     f"boto3 single GET {mib / t_peer:,.0f} MiB/s", f"{t_peer / t_eio:.2f}×"))

        def peer_down_hashed() -> None:  # the same GET, verifying as eio does
            h = hashlib.sha256()
            resp = client.get_object(Bucket=bucket, Key=s3key)
            with open(dest / "peer.bin", "wb") as f:
                while chunk := resp["Body"].read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            resp["Body"].close()
            assert h.hexdigest() == obj.sha256

        t_peer, t_eio = race(peer_down_hashed, eio_down, args.repeat)
        rows.append((f"download {size_mib} MiB, verified", f"{mib / t_eio:,.0f} MiB/s",
                     f"boto3 single GET + sha256 {mib / t_peer:,.0f} MiB/s",
                     f"{t_peer / t_eio:.2f}×"))
        reader.close()

        # -- many small files --------------------------------------------------------
        small = root / "small"
        small.mkdir()
        for i in range(nfiles):
            (small / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
        names = sorted(os.listdir(small))

        def peer_small() -> None:
            stamp = time.monotonic_ns()

            def put(name: str) -> None:
                client.put_object(Bucket=peer_bucket, Key=f"small/{stamp}/{name}",
                                  Body=(small / name).read_bytes())

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(put, names))

        def eio_small() -> None:
            lk = lake()
            lk.save([str(small)], based_on=[])
            lk.close()

        t_peer, t_eio = race(peer_small, eio_small, 1)
        rows.append((f"save {nfiles:,} × 4 KiB files, one artifact",
                     f"{nfiles / t_eio:,.0f} files/s",
                     f"boto3 put_object ×16 threads {nfiles / t_peer:,.0f} files/s",
                     f"{t_peer / t_eio:.2f}×"))

        # -- ranged reads of small objects (what the mount does per small file) ------------
        lk = lake()
        art = lk.save([str(small / n) for n in names[:1000]], based_on=[])
        store = lk.store
        keys = [f.object for f in art.files.values()]
        s3keys = [store._key(k) for k in keys]  # type: ignore[attr-defined]

        def peer_ranged() -> None:
            for k in s3keys:
                client.get_object(Bucket=bucket, Key=k, Range="bytes=0-4095")["Body"].read()

        def eio_ranged() -> None:
            for k in keys:
                store.read_range(k, 0, 4096)

        t_peer, t_eio = race(peer_ranged, eio_ranged, args.repeat)
        rows.append(("ranged GET of 1,000 × 4 KiB, one at a time",
                     f"{len(keys) / t_eio:,.0f} GETs/s",
                     f"boto3 get_object {len(keys) / t_peer:,.0f} GETs/s",
                     f"{t_peer / t_eio:.2f}×"))
        lk.close()
        client.close()

    w = [max(len(r[i]) for r in rows + [("what", "eio", "peer", "eio/peer")])
         for i in range(4)]
    head = ("what", "eio", "peer", "eio/peer")
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-|-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
