"""The outbox against ``eio save`` on the same SeaweedFS.

    python bench/bench_outbox.py [--quick] [--keep DIR]

Starts SeaweedFS (``weed mini``, the S3 area's helper), makes an Object-Lock bucket, and
measures, one run each, like the issue's table:

- a 1 GiB file (256 MiB with --quick): ``eio save`` of it, against ``cp`` into
  ``outbox/`` until its artifact is committed — with the explicit trigger
  (``setfattr -n user.eio.commit``, which returns once committed), and with the default
  quiet period (wait for the symlink); each with the kernel writeback cache off
  (``--no-writeback``) and on (the default). Every run saves different bytes (no dedup);
- ``dd bs=4k`` of 256 MiB into the outbox (the write phase only), writeback off and on;
- ``cp -r`` of 1,000 small files (4 KiB) until committed (files/s), against ``eio save``
  of the same directory.

Every process it starts is stopped by pid; every mount is unmounted, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.mounts import Procs  # noqa: E402

SMALL = 1000
SMALL_SIZE = 4096
DD_SIZE = 256 << 20


def sh(*cmd: str, env: dict[str, str]) -> None:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")


def timed(*cmd: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    sh(*cmd, env=env)
    return time.perf_counter() - t


def variant(base: Path, dest: Path, tag: int) -> Path:
    """A copy of *base* with different first bytes (a new sha256: no dedup)."""
    shutil.copyfile(base, dest)
    with open(dest, "r+b") as f:
        f.write(tag.to_bytes(16, "big"))
    return dest


@contextlib.contextmanager
def mounted(mnt: Path, env: dict[str, str], log: Path, *args: str) -> Iterator[Path]:
    procs = Procs()
    p = procs.mount([sys.executable, "-m", "elliptiofs.cli", str(mnt), "--foreground", *args],
                    mnt, log, env)
    try:
        yield mnt
    finally:
        procs.unmount(mnt, p)
        procs.close()


def wait_link(path: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_symlink():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} was not committed")
        time.sleep(0.01)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    ap.add_argument("--keep", help="work directory to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    big = (256 if args.quick else 1024) << 20
    root = Path(args.keep or tempfile.mkdtemp(prefix="eiobench-outbox-"))
    root.mkdir(parents=True, exist_ok=True)
    from tests.fixtures.s3 import SeaweedFS  # the S3 area's one way to start it

    weed = SeaweedFS(root / "weed")
    (root / "weed").mkdir(exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    try:
        weed.start()
        bucket = weed.create_bucket(lock=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
        env.update(weed.env, ELLIPTIO_STORE=f"s3://{bucket}",
                   ELLIPTIO_CATALOGUE=f"sqlite:///{root}/catalogue.sqlite",
                   ELLIPTIO_READLOG=str(root / "readlog.sqlite"),
                   ELLIPTIO_SPOOL=str(root / "spool"), ELLIPTIO_USER="bench")
        print(f"# SeaweedFS at {weed.endpoint}, bucket {bucket}; work dir {root}",
              file=sys.stderr)
        base = root / "base.bin"
        with open(base, "wb") as f:
            for _ in range(big >> 20):
                f.write(os.urandom(1 << 20))
        n = 0

        def fresh(name: str) -> Path:
            nonlocal n
            n += 1
            return variant(base, root / name, n)

        mib = big >> 20
        src = fresh("save.bin")
        t_save = timed("eio", "save", str(src), env=env)
        rows.append((f"eio save {mib} MiB", f"{t_save:.2f} s",
                     f"{mib / t_save:.0f} MiB/s (reference)"))
        src.unlink()
        for writeback in (False, True):
            flag = () if writeback else ("--no-writeback",)
            label = "writeback on" if writeback else "writeback off"
            with mounted(root / "mnt", env, root / "daemon.log", *flag) as mnt:
                out = mnt / "outbox"
                # (committed links stay in the outbox across mounts: names per run)
                trig, quiet = f"trig-{int(writeback)}.bin", f"quiet-{int(writeback)}.bin"
                src = fresh(trig)
                t0 = time.perf_counter()
                sh("cp", str(src), str(out / trig), env=env)
                t_cp = time.perf_counter() - t0
                sh("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / trig), env=env)
                t = time.perf_counter() - t0
                rows.append((f"cp {mib} MiB + trigger ({label})", f"{t:.2f} s",
                             f"{mib / t:.0f} MiB/s = {t_save / t:.2f}x eio save "
                             f"(cp alone {t_cp:.2f} s)"))
                src.unlink()
                src = fresh(quiet)
                t0 = time.perf_counter()
                sh("cp", str(src), str(out / quiet), env=env)
                wait_link(out / quiet)
                t = time.perf_counter() - t0
                rows.append((f"cp {mib} MiB, quiet 2 s ({label})", f"{t:.2f} s",
                             f"{mib / t:.0f} MiB/s = {t_save / t:.2f}x eio save"))
                src.unlink()
                t = timed("dd", f"if={base}", f"of={out / '.dd.bin'}", "bs=4k",
                          f"count={DD_SIZE // 4096}", env=env)
                rows.append((f"dd bs=4k {DD_SIZE >> 20} MiB, write only ({label})",
                             f"{t:.2f} s", f"{(DD_SIZE >> 20) / t:.0f} MiB/s"))
                os.unlink(out / ".dd.bin")

        small = root / "small"
        small.mkdir()
        for i in range(SMALL):
            (small / f"f{i:04d}.txt").write_bytes(os.urandom(SMALL_SIZE))
        t = timed("eio", "save", str(small), env=env)
        rows.append((f"eio save {SMALL} x 4 KiB", f"{t:.2f} s",
                     f"{SMALL / t:.0f} files/s (reference)"))
        t_small_save = t
        for i in range(SMALL):  # new bytes: no dedup against the save above
            (small / f"f{i:04d}.txt").write_bytes(os.urandom(SMALL_SIZE))
        with mounted(root / "mnt", env, root / "daemon.log") as mnt:
            out = mnt / "outbox"
            t0 = time.perf_counter()
            sh("cp", "-r", str(small), str(out / "small"), env=env)
            t_cp = time.perf_counter() - t0
            sh("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / "small"), env=env)
            t = time.perf_counter() - t0
            rows.append((f"cp -r {SMALL} x 4 KiB + trigger", f"{t:.2f} s",
                         f"{SMALL / t:.0f} files/s = {t_small_save / t:.2f}x eio save "
                         f"(cp -r alone {t_cp:.2f} s, {SMALL / t_cp:.0f} files/s)"))
            for i in range(SMALL):
                (small / f"f{i:04d}.txt").write_bytes(os.urandom(SMALL_SIZE))
            t0 = time.perf_counter()
            sh("cp", "-r", str(small), str(out / "small2"), env=env)
            wait_link(out / "small2")
            t = time.perf_counter() - t0
            rows.append((f"cp -r {SMALL} x 4 KiB, quiet 2 s", f"{t:.2f} s",
                         f"{SMALL / t:.0f} files/s"))
    finally:
        weed.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'time':>8}  result")
    for what, t, result in rows:
        print(f"{what:<{width}}  {t:>8}  {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
