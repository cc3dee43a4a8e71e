"""elliptiofs against its peers on the same SeaweedFS and the same objects.

    python bench/bench_fuse.py [--quick] [--keep DIR]

Starts SeaweedFS (``weed mini``, via ``tests.fixtures.s3.SeaweedFS``), writes the objects
once into a bucket with Object Lock, then mounts, side by side, elliptiofs, s3fs-fuse and
``rclone mount --vfs-cache-mode off`` on that bucket, and measures (one run each, like the
issue's table). A fourth mount, ``pyfuse3 floor`` (``bench/floorfs.py``), serves the same
tree from memory through the same binding doing nothing else: the least any pyfuse3
daemon can take for each workload. Every workload also records the CPU time the S3 server
and the whole machine spent on it; from those and the floor, the report derives a lower
bound for elliptiofs on this machine and says which targets that bound allows at all:

- cold sequential read of one large file (1 GiB; 256 MiB with --quick; best of three,
  the file's pages evicted from the reader's page cache before each), and a second read;
  boto3 ``get_object`` single stream as the reference (measured before each cold read:
  the best of those counts). The server has just written the object, so its pages are
  in memory; as root, the cold read is measured again with the page cache emptied
  first (``drop_caches``), for every reader alike: nothing cached anywhere;
- ``ls -l`` of a 1,000-entry virtual directory (elliptiofs: by-user/<u>/, 1,000 artifacts
  whose files reference 1,000 objects of one prefix) against ``ls -l`` of those 1,000
  objects (s3fs, rclone);
- ``cat`` of the 1,000 small (4 KiB) files;
- daemon RSS after ``ls -lR by-user/`` over 100,000 artifacts (catalogue rows generated
  straight into SQLite; a tiny local store; 10,000 with --quick).

Every process it starts (SeaweedFS, the mounts) is stopped by pid; every mount is
unmounted, also on failure. Ratios against the issue's targets are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.mounts import Procs  # noqa: E402
from tests.fixtures.s3 import SeaweedFS  # noqa: E402

SMALL = 1000
SMALL_SIZE = 4096
#: cold reads of the large file per reader (the best counts: this machine is noisy)
COLD_RUNS = 3


# -- the objects and the catalogue ----------------------------------------------------------
def fake_md(aid: str, user: str, files: list[dict[str, Any]], prefix: str,
            tags: list[str] | None = None) -> dict[str, Any]:
    from elliptio.ids import id_time

    created = id_time(aid).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"elliptio": 1, "id": aid, "user": user, "created": created, "prefix": prefix,
            "info": {"type": "bench"}, "tags": tags or [], "based_on": [], "files": files,
            "logs": {}, "provenance": {}}


def populate(s3c: Any, bucket: str, catalogue_url: str, big_size: int) -> dict[str, Any]:
    """Objects: big/big.bin and small/NNNN.bin; artifacts: one per object (user bench for
    the small ones), their files referencing those objects (as dedup does)."""
    from elliptio.catalogue import open_catalogue
    from elliptio.ids import new_id

    def put(key: str, data: bytes) -> None:
        s3c.put_object(Bucket=bucket, Key=key, Body=data)

    small = [os.urandom(SMALL_SIZE) for _ in range(SMALL)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: put(f"small/{i:04d}.bin", small[i]), range(SMALL)))
    big_path = Path(tempfile.mkstemp(prefix="eiobench-big-")[1])
    with open(big_path, "wb") as f:
        for _ in range(big_size >> 24):
            f.write(os.urandom(1 << 24))
    h = hashlib.sha256()
    with open(big_path, "rb") as fr:
        while chunk := fr.read(1 << 24):
            h.update(chunk)
    from boto3.s3.transfer import TransferConfig

    s3c.upload_file(str(big_path), bucket, "big/big.bin",
                    Config=TransferConfig(multipart_chunksize=64 << 20))
    big_path.unlink()
    cat = open_catalogue(catalogue_url)
    mds = []
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(SMALL):
        aid = new_id(int((t0 + timedelta(seconds=i)).timestamp() * 1000))
        mds.append(fake_md(aid, "bench", [{
            "path": "f.bin", "size": SMALL_SIZE,
            "sha256": hashlib.sha256(small[i]).hexdigest(), "object": f"small/{i:04d}.bin"}],
            f"2025/01/01/bench/{aid}"))
    big_id = new_id()
    mds.append(fake_md(big_id, "bigbench", [{"path": "big.bin", "size": big_size,
                                              "sha256": h.hexdigest(),
                                              "object": "big/big.bin"}],
                       f"x/bigbench/{big_id}"))
    cat.upsert_many(mds)
    cat.close()
    return {"small_ids": [m["id"] for m in mds[:SMALL]], "big_id": big_id}


def generate_catalogue(url: str, n: int, users: int = 100) -> None:
    """*n* artifacts of *users* users, rows written straight into the SQLite catalogue."""
    from elliptio.catalogue import open_catalogue
    from elliptio.ids import new_id

    cat = open_catalogue(url)
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    batch = []
    for i in range(n):
        aid = new_id(t0 + i * 60_000)
        user = f"user{i % users:03d}"
        batch.append(fake_md(aid, user, [{"path": "data.csv", "size": 100, "sha256": "0" * 64,
                                          "object": "tiny/data.csv"}],
                             f"2024/01/01/{user}/{aid}", tags=[f"tag{i % 50}"]))
        if len(batch) == 5000:
            cat.upsert_many(batch)
            batch = []
    if batch:
        cat.upsert_many(batch)
    cat.close()


# -- measuring --------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) *pid* has used so far; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> float:
    """CPU seconds all cores have spent busy so far (/proc/stat: everything but idle and
    iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


class Meter:
    """Runs a workload and records its wall time and the CPU time the server process and
    the whole machine spent meanwhile (in ``runs``, under a name)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.runs: dict[tuple[str, str], dict[str, float]] = {}

    def measure(self, work: Callable[[], object], name: tuple[str, str] | None = None
                ) -> float:
        """Run *work*; its wall time. Under *name*, the best run is the one kept."""
        s0, m0 = process_cpu(self.server_pid), machine_cpu()
        t = time.perf_counter()
        work()
        wall = time.perf_counter() - t
        run = {"wall": wall, "server": process_cpu(self.server_pid) - s0,
               "machine": machine_cpu() - m0}
        if name is not None and (name not in self.runs or wall < self.runs[name]["wall"]):
            self.runs[name] = run
        return wall

    def timed(self, cmd: str, name: tuple[str, str] | None = None) -> float:
        """:meth:`measure` of a shell command."""
        return self.measure(lambda: subprocess.run(
            cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            name)


def evict(path: Path) -> None:
    """Drop *path*'s pages from the page cache (the next read goes to its filesystem)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def can_drop_caches() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Empty the page cache (root): the next read is cold for the reader and the server."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def rss_kib(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    vals = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))}
    return vals["VmRSS"], vals["VmHWM"]


@contextlib.contextmanager
def mounted(procs: Procs, kind: str, mnt: Path, root: Path, server: SeaweedFS, bucket: str,
            env: dict[str, str], big_size: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    log = root / f"{mnt.name}.log"
    aws = server.env
    if kind == "elliptiofs":
        p = procs.mount([sys.executable, "-m", "elliptiofs.cli", str(mnt), "--foreground"],
                        mnt, log, env)
    elif kind == "s3fs":
        pw = root / "s3fs.passwd"
        pw.write_text(f"{aws['AWS_ACCESS_KEY_ID']}:{aws['AWS_SECRET_ACCESS_KEY']}\n")
        pw.chmod(0o600)
        p = procs.mount(["s3fs", bucket, str(mnt), "-f", "-o", f"url={server.endpoint}",
                         "-o", "use_path_request_style", "-o", f"passwd_file={pw}",
                         "-o", f"endpoint={aws['AWS_DEFAULT_REGION']}"], mnt, log)
    elif kind == "rclone":
        renv = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
                "RCLONE_CONFIG_EIO_TYPE": "s3",
                "RCLONE_CONFIG_EIO_PROVIDER": "Other",
                "RCLONE_CONFIG_EIO_ENDPOINT": server.endpoint,
                "RCLONE_CONFIG_EIO_REGION": aws["AWS_DEFAULT_REGION"],
                "RCLONE_CONFIG_EIO_ACCESS_KEY_ID": aws["AWS_ACCESS_KEY_ID"],
                "RCLONE_CONFIG_EIO_SECRET_ACCESS_KEY": aws["AWS_SECRET_ACCESS_KEY"]}
        p = procs.mount(["rclone", "mount", f"eio:{bucket}", str(mnt),
                         "--vfs-cache-mode", "off"], mnt, log, renv)
    elif kind == "floor":
        # the ids written by main(); the floor needs nothing else (no store, no server)
        p = procs.mount([sys.executable, str(REPO / "bench/floorfs.py"), str(mnt),
                         "--ids", str(root / "floor-ids.txt"), "--big-size", str(big_size)],
                        mnt, log)
    else:
        raise ValueError(kind)
    try:
        yield p
    finally:
        procs.unmount(mnt, p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB file, 10,000 artifacts")
    ap.add_argument("--keep", help="work directory to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    big_size = (256 if args.quick else 1024) << 20
    n_rss = 10_000 if args.quick else 100_000
    root = Path(args.keep or tempfile.mkdtemp(prefix="eiobench-"))
    root.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    server = SeaweedFS(root / "weed")
    results: dict[str, dict[str, float]] = {}
    meter = Meter(None)
    try:
        server.start()
        meter.server_pid = server.proc.pid if server.proc else None
        bucket = server.create_bucket()  # with Object Lock: the lake's, read by all mounts
        s3c = server.client()
        catalogue = f"sqlite:///{root}/catalogue.sqlite"
        t = time.perf_counter()
        ids = populate(s3c, bucket, catalogue, big_size)
        print(f"populated in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ELLIPTIO_", "AWS_"))}
        env.update(server.env)
        env.update({"ELLIPTIO_STORE": f"s3://{bucket}", "ELLIPTIO_CATALOGUE": catalogue,
                    "ELLIPTIO_READLOG": str(root / "readlog.sqlite"), "HOME": str(root)})

        # the server's 1 GiB of dirty pages would otherwise be written back in the middle
        # of whichever mount runs ~30 s after populating (all three were seen 2-3x slower)
        os.sync()

        def boto3_get() -> None:
            body = s3c.get_object(Bucket=bucket, Key="big/big.bin")["Body"]
            n = 0
            while chunk := body.read(8 << 20):
                n += len(chunk)
            assert n == big_size

        def boto3_read() -> float:
            return meter.measure(boto3_get, ("boto3", "cold"))

        results["boto3"] = {"cold": boto3_read()}

        def warm_server() -> None:
            boto3_read()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: s3c.get_object(Bucket=bucket,
                                                       Key=f"small/{i:04d}.bin")["Body"].read(),
                              range(SMALL)))

        (root / "floor-ids.txt").write_text("\n".join(ids["small_ids"]))
        timed = meter.timed
        for kind in ("elliptiofs", "s3fs", "rclone", "floor"):
            mnt = root / f"mnt-{kind}"
            with mounted(procs, kind, mnt, root, server, bucket, env, big_size):
                if kind in ("elliptiofs", "floor"):
                    big = (mnt / "artifacts" / ids["big_id"] / "big.bin" if kind == "elliptiofs"
                           else mnt / "artifacts/big/big.bin")
                    listing = mnt / "by-user/bench"
                    smalls = " ".join(str(mnt / "artifacts" / i / "f.bin")
                                      for i in ids["small_ids"])
                else:
                    big = mnt / "big/big.bin"
                    listing = mnt / "small"
                    smalls = " ".join(str(mnt / f"small/{i:04d}.bin") for i in range(SMALL))
                r = results[kind] = {}
                r["ls"] = timed(f"ls -l {listing}", (kind, "ls"))
                r["ls2"] = timed(f"ls -l {listing}")
                r["cat"] = timed(f"cat {smalls}", (kind, "cat"))
                # cold reads: best of COLD_RUNS, the file's pages evicted from the reader's
                # page cache before each (the server keeps its own); the boto3 reference
                # again just before, its best time of the whole run counting
                b = results["boto3"]
                cold = []
                for _ in range(COLD_RUNS):
                    b["cold"] = min(b["cold"], boto3_read())
                    evict(big)
                    cold.append(timed(f"cat {big}", (kind, "cold")))
                r["cold"] = min(cold)
                r["second"] = timed(f"cat {big}")  # the last cold read left it cached
                if can_drop_caches() and kind != "floor":  # the server reads its disk too
                    drop_caches()
                    b = results["boto3"]
                    b["dropped"] = min(b.get("dropped", 1e9), boto3_read())
                    drop_caches()
                    r["dropped"] = timed(f"cat {big}")
                    warm_server()  # the next mount finds the server as this one did
                print(f"{kind}: {r}", file=sys.stderr)

        # RSS over a large catalogue (tiny store: listing needs no bytes)
        big_cat = f"sqlite:///{root}/catalogue-{n_rss}.sqlite"
        t = time.perf_counter()
        generate_catalogue(big_cat, n_rss)
        print(f"{n_rss} rows in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        tiny = root / "tinystore"
        tiny.mkdir()
        env_rss = {**env, "ELLIPTIO_STORE": f"file://{tiny}", "ELLIPTIO_CATALOGUE": big_cat}
        mnt = root / "mnt-rss"
        with mounted(procs, "elliptiofs", mnt, root, server, bucket, env_rss) as p:
            before = rss_kib(p.pid)[0]
            dt = timed(f"ls -lR {mnt}/by-user")
            rss, hwm = rss_kib(p.pid)
        results["rss"] = {"n": n_rss, "before_mib": before / 1024, "after_mib": rss / 1024,
                          "peak_mib": hwm / 1024, "ls_lR_s": dt}
    finally:
        procs.close()  # the mounts first, then the server they read from
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(results, big_size, meter.runs)
    return 0


LABELS = {"floor": "pyfuse3 floor (from memory)"}


def report(r: dict[str, dict[str, float]], big_size: int,
           runs: dict[tuple[str, str], dict[str, float]]) -> None:
    mb = big_size / 1e6
    dropped = "dropped" in r.get("boto3", {})
    print(f"\n| | cold {big_size >> 20} MiB read | "
          + ("same, nothing cached anywhere | " if dropped else "")
          + "second read | ls -l 1,000 | cat 1,000 x 4 KiB |")
    print("|---|---|---|---|---|" + ("---|" if dropped else ""))
    for k in ("boto3", "elliptiofs", "s3fs", "rclone", "floor"):
        if k not in r:
            continue
        v = r[k]
        cells = [f"{v['cold']:.2f} s ({mb / v['cold']:.0f} MB/s)"]
        if dropped:
            cells.append(f"{v['dropped']:.2f} s ({mb / v['dropped']:.0f} MB/s)"
                         if "dropped" in v else "")
        if k != "boto3":
            cells += [f"{v['second']:.2f} s", f"{v['ls']:.3f} s (again {v['ls2']:.3f})",
                      f"{v['cat']:.2f} s"]
        else:
            cells += ["", "", ""]
        print(f"| {LABELS.get(k, k)} | " + " | ".join(cells) + " |")
    if runs:
        report_cpu(r, runs, big_size)
    if "rss" in r:
        x = r["rss"]
        print(f"\ndaemon RSS after `ls -lR by-user/` over {int(x['n']):,} artifacts: "
              f"{x['after_mib']:.0f} MiB (peak {x['peak_mib']:.0f}, at start "
              f"{x['before_mib']:.0f}); ls -lR took {x['ls_lR_s']:.1f} s")
    e, s, b = r.get("elliptiofs"), r.get("s3fs"), r.get("boto3")
    if e and s and b:
        checks = [
            ("cold read >= 0.8x boto3", b["cold"] / e["cold"], 0.8, True),
            ("cold read >= 2x s3fs", s["cold"] / e["cold"], 2.0, True),
        ]
        if "dropped" in e and "dropped" in b:
            checks += [
                ("same, nothing cached: >= 0.8x boto3", b["dropped"] / e["dropped"], 0.8,
                 True),
                ("same, nothing cached: >= 2x s3fs", s["dropped"] / e["dropped"], 2.0, True),
            ]
        checks += [
            ("second read >= 5x faster than first", e["cold"] / e["second"], 5.0, True),
            ("ls -l <= 0.1x s3fs", e["ls"] / s["ls"], 0.1, False),
            ("cat 1,000 <= 0.25x s3fs", e["cat"] / s["cat"], 0.25, False),
        ]
        print("\n| target | ratio | met |\n|---|---|---|")
        for name, ratio, target, higher in checks:
            ok = ratio >= target if higher else ratio <= target
            print(f"| {name} | {ratio:.2f} | {'yes' if ok else 'NO'} |")
        if "rss" in r:
            ok = r["rss"]["after_mib"] < 150
            print(f"| RSS < 150 MiB | {r['rss']['after_mib']:.0f} MiB | "
                  f"{'yes' if ok else 'NO'} |")



def report_cpu(r: dict[str, dict[str, float]], runs: dict[tuple[str, str], dict[str, float]],
               big_size: int) -> None:
    """Where the CPU went in each workload (best run), and the lower bound that leaves for
    elliptiofs on this machine against each target."""
    names = {"cold": f"cold {big_size >> 20} MiB read", "ls": "ls -l 1,000",
             "cat": "cat 1,000 x 4 KiB"}
    print(f"\nCPU seconds spent during each workload (its best run; {CPUS} cores):\n")
    print("| workload | reader | wall | S3 server CPU | whole machine CPU |")
    print("|---|---|---|---|---|")
    for w, title in names.items():
        for k in ("boto3", "elliptiofs", "s3fs", "rclone", "floor"):
            if (k, w) in runs:
                x = runs[(k, w)]
                print(f"| {title} | {LABELS.get(k, k)} | {x['wall']:.3f} s | "
                      f"{x['server']:.2f} s | {x['machine']:.2f} s |")

    def bound(w: str) -> float | None:
        # A pyfuse3 daemon takes at least what the floor takes, in wall time and in CPU
        # (the kernel's FUSE path, pyfuse3, the reader); the bytes must also get from the
        # server into the daemon: at least what boto3 took for that (server and receiving
        # process: the whole machine) where it was measured, else at least the least
        # server CPU seen for the workload. All of it shared by CPUS cores.
        floor = runs.get(("floor", w))
        if floor is None:
            return None
        if ("boto3", w) in runs:
            delivery = runs[("boto3", w)]["machine"]
        else:
            delivery = min((x["server"] for (k, ww), x in runs.items()
                            if ww == w and k != "floor"), default=0.0)
        return max(floor["wall"], (delivery + floor["machine"]) / CPUS)

    e, s, b = r.get("elliptiofs"), r.get("s3fs"), r.get("boto3")
    if not (e and s and b):
        return
    rows = [("cold read >= 0.8x boto3", "cold", b["cold"] / 0.8),
            ("cold read >= 2x s3fs", "cold", s["cold"] / 2),
            ("ls -l <= 0.1x s3fs", "ls", s["ls"] * 0.1),
            ("cat 1,000 <= 0.25x s3fs", "cat", s["cat"] * 0.25)]
    print("\nThe targets as times, against the least a pyfuse3 daemon could take here: "
          "max(the floor's wall, (CPU to deliver the bytes + the floor's whole machine CPU) "
          f"/ {CPUS} cores), delivering costing what it cost boto3 (server and receiver; "
          "the cold read) or the least server CPU seen (the others). A daemon doing "
          "anything of its own (parsing, lineage, catalogue, Python per request) takes "
          "more:\n")
    print("| target | elliptiofs | target time | lower bound here | reachable here |")
    print("|---|---|---|---|---|")
    for name, w, target in rows:
        lb = bound(w)
        if lb is None:
            continue
        print(f"| {name} | {e[w]:.3f} s | {target:.3f} s | {lb:.3f} s | "
              f"{'yes' if lb <= target else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
