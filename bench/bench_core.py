#!/usr/bin/env python3
"""Library-core benchmark: prints one table.

- save of 10,000 × 4 KiB files as one artifact (files/s)
- save of a 1 GiB file, hashing included, relative to `cp` of the same file
- eio.search over 100,000 artifacts in SQLite (user + time range + file glob + tag glob):
  p50 / p95
- catalogue bytes per artifact
- provenance capture per save: 300 more packages, a 10 MB git diff

Usage: python bench/bench_core.py [--quick] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elliptio import Lake, Query, Settings  # noqa: E402
from elliptio.ids import new_id  # noqa: E402
from elliptio.layout import artifact_prefix  # noqa: E402


def lake_at(root: Path, name: str) -> Lake:
    return Lake(Settings.load(store=f"file://{root}/{name}/store",
                              catalogue=f"sqlite:///{root}/{name}/cat.sqlite", user="bench"))


def bench_small_files(root: Path, n: int) -> tuple[str, str]:
    src = root / "small"
    src.mkdir()
    for i in range(n):
        (src / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    lake = lake_at(root, "small-lake")
    t = time.perf_counter()
    a = lake.save([str(src)], based_on=[])
    dt = time.perf_counter() - t
    assert len(a.files) == n
    return f"save {n} × 4 KiB files, one artifact", f"{n / dt:,.0f} files/s ({dt:.2f} s)"


def bench_big_file(root: Path, size_mib: int) -> list[tuple[str, str]]:
    big = root / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(size_mib):
            f.write(block)
    lake = lake_at(root, "big-lake")
    rows = []
    cps, saves = [], []
    for i in range(3):
        dst = root / f"cp-{i}.bin"
        os.sync()  # start each timing with no dirty pages of the previous one
        t = time.perf_counter()
        subprocess.run(["cp", str(big), str(dst)], check=True)
        cps.append(time.perf_counter() - t)
        dst.unlink()
        os.sync()
        t = time.perf_counter()
        lake.save({f"big{i}.bin": str(big)}, based_on=[])  # dedup is per content: make unique
        saves.append(time.perf_counter() - t)
        if i < 2:
            with open(big, "r+b") as f:  # change one byte so the next save is not deduplicated
                f.write(bytes([i + 1]))
    cp_t, save_t = min(cps), min(saves)
    rows.append((f"cp of a {size_mib} MiB file (best of 3)",
                 f"{size_mib / cp_t:,.0f} MiB/s ({cp_t:.2f} s)"))
    rows.append(("eio save of it (sha256 included, best of 3)",
                 f"{size_mib / save_t:,.0f} MiB/s ({save_t:.2f} s) = {cp_t / save_t:.2f}× cp"))
    os.sync()
    t = time.perf_counter()
    lake.save({"again.bin": str(big)}, based_on=[])
    dt = time.perf_counter() - t
    rows.append(("eio save of identical content (dedup)", f"{dt:.2f} s (hash only, no copy)"))
    return rows


def bench_search(root: Path, n: int) -> list[tuple[str, str]]:
    lake = lake_at(root, "search-lake")
    cat = lake.catalogue
    rnd = random.Random(42)
    users = [f"user{i:03d}" for i in range(200)]
    kinds = ["dataset", "model", "report", "eval", "features"]
    start = datetime.now(UTC) - timedelta(days=365)
    t = time.perf_counter()
    batch = []
    for i in range(n):
        created = start + timedelta(seconds=i * 365 * 86400 / n)
        aid = new_id(int(created.timestamp() * 1000))
        user = rnd.choice(users)
        kind = rnd.choice(kinds)
        files = [{"path": f"part-{j}.{rnd.choice(['txt', 'csv', 'parquet', 'pth'])}",
                  "size": 100, "sha256": f"{rnd.getrandbits(256):064x}", "object": "x"}
                 for j in range(rnd.randint(1, 4))]
        batch.append({
            "elliptio": 1, "id": aid, "user": user,
            "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "prefix": artifact_prefix(created, user, aid),
            "info": {"type": kind, "seed": rnd.randint(0, 100), "note": f"run {i}"},
            "tags": rnd.sample(["dataset", "raw", "clean", "v1", "v2", "prod", "exp"], 2),
            "based_on": [], "files": files, "logs": {},
            "provenance": {"host": "bench", "argv": ["train.py"]},
        })
        if len(batch) == 5000:
            cat.upsert_many(batch)
            batch.clear()
    if batch:
        cat.upsert_many(batch)
    gen = time.perf_counter() - t
    queries = []
    for _ in range(60):
        queries.append(Query.build(user=rnd.choice(users), since=f"{rnd.randint(20, 300)}d",
                                   files="*.txt", tags="*a*"))
    times = []
    for q in queries:
        t = time.perf_counter()
        lake.search(q)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(len(times) * 0.95) - 1]
    db = Path(cat.path)  # type: ignore[attr-defined]
    cat.close()
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return [
        (f"catalogue of {n:,} artifacts built", f"{n / gen:,.0f} artifacts/s ({gen:.1f} s)"),
        ("search user+since+file glob+tag glob", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms "
                                                 f"(target p50 < 50 ms)"),
        ("catalogue size per artifact", f"{size / n:,.0f} bytes (metadata JSON included)"),
    ]


def bench_reproduce_dry_run(root: Path) -> tuple[str, str]:
    """`eio reproduce --dry-run` (a CLI process: start, load, plan, print) of an artifact
    saved from this environment inside a git repository with a 1 MB diff; median of 5."""
    repo = root / "repro-repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.org"]
    (repo / "big.txt").write_text("".join(f"line {i}\n" for i in range(100_000)))
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "b"], cwd=repo, check=True)
    (repo / "big.txt").write_text("".join(f"LINE {i}\n" for i in range(100_000)))
    lake = lake_at(root, "repro-lake")
    here = os.getcwd()
    os.chdir(repo)  # provenance captures the git state of the working directory
    try:
        a = lake.save({"x.txt": str(repo / "big.txt")}, based_on=[])
    finally:
        os.chdir(here)
        lake.close()
    packages = a.provenance["pip_freeze"].get("packages", 0)
    env = {**os.environ, "ELLIPTIO_STORE": f"file://{root}/repro-lake/store",
           "ELLIPTIO_CATALOGUE": f"sqlite:///{root}/repro-lake/cat.sqlite"}
    times = []
    for i in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "elliptio", "reproduce", a.id,
                        str(root / f"repro-{i}"), "--dry-run"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return (f"eio reproduce --dry-run ({packages} packages, 1 MB diff)",
            f"{statistics.median(times) * 1000:,.0f} ms median of 5 (a whole CLI process)")


def _capture_site(root: Path) -> Path:
    """300 more distributions, one in ten installed from git (direct_url.json)."""
    site = root / "capture-site"
    for i in range(300):
        info = site / f"pkg{i:03d}-1.{i}.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pkg{i:03d}\n"
                                       f"Version: 1.{i}.0\n")
        if i % 10 == 0:  # one in ten from git, as a team's own packages are
            (info / "direct_url.json").write_text(
                '{"url": "https://git.example.com/t/p.git", "vcs_info": {"vcs": "git", '
                '"commit_id": "0123456789abcdef0123456789abcdef01234567"}}')
    return site


def _capture_repo(root: Path, name: str, files: int, lines: int, every: int) -> Path:
    """A repository whose working tree changes every *every*-th line of *files* files of
    *lines* lines each (every=1: every line, git diff's worst case)."""
    repo = root / name
    repo.mkdir()
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.org"]
    rnd = random.Random(7)
    for f in range(files):
        (repo / f"data{f}.csv").write_text("".join(
            f"{i},{rnd.random():.6f},{rnd.random():.6f}\n" for i in range(lines)))
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "b"], cwd=repo, check=True)
    for f in range(files):
        rows = (repo / f"data{f}.csv").read_text().splitlines(True)
        for i in range(0, len(rows), every):
            rows[i] = f"{i},{rnd.random():.6f},{rnd.random():.6f},changed\n"
        (repo / f"data{f}.csv").write_text("".join(rows))
    return repo


def bench_capture(root: Path) -> list[tuple[str, str]]:
    """Provenance capture of one save (elliptio.provenance.capture: pip freeze of 300
    more distributions, git state with a diff of about 10 MB of tracked files, the rest),
    the pip freeze cache emptied before each so every save pays for it; median of 5. Two
    shapes of diff: a change spread over 25 files (each changed on every other line),
    which git emits file by file, so capture stops it at the 1 MiB it keeps; and every
    line of 2 big files changed, git diff's worst case, where git must diff a whole file
    before its first byte (its own time is shown beside)."""
    from elliptio import environment, provenance

    site = _capture_site(root)
    rows = []
    for label, name, files, lines, every in (
            ("spread over 25 files", "capture-spread", 25, 10_000, 2),
            ("2 files, every line changed", "capture-worst", 2, 85_000, 1)):
        repo = _capture_repo(root, name, files, lines, every)
        git_times = []
        for _ in range(3):
            t = time.perf_counter()
            diff = subprocess.run(["git", "diff", "HEAD"], cwd=repo, check=True,
                                  capture_output=True).stdout
            git_times.append(time.perf_counter() - t)
        here = os.getcwd()
        sys.path.insert(0, str(site))
        os.chdir(repo)
        try:
            times = []
            for _ in range(5):
                environment._pip_cache = None
                t = time.perf_counter()
                summary, _logs = provenance.capture("bench", "bench")
                times.append(time.perf_counter() - t)
        finally:
            os.chdir(here)
            sys.path.remove(str(site))
            environment._pip_cache = None
        packages = summary["pip_freeze"]["packages"]
        rows.append((f"provenance capture per save ({packages} packages, "
                     f"{len(diff) / 1e6:.0f} MB diff, {label})",
                     f"{statistics.median(times) * 1000:,.0f} ms median of 5 (target "
                     f"< 200 ms); the whole git diff alone "
                     f"{statistics.median(git_times) * 1000:,.0f} ms"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--dir", help="where to work (default: a temp dir on the store's disk)")
    ap.add_argument("--only-provenance", action="store_true",
                    help="only the capture and reproduce --dry-run rows")
    args = ap.parse_args()
    n_small, big_mib, n_search = (1000, 64, 10_000) if args.quick else (10_000, 1024, 100_000)
    root = Path(tempfile.mkdtemp(prefix="eio-bench-", dir=args.dir))
    try:
        rows = [bench_small_files(root, n_small)] if not args.only_provenance else []
        if not args.only_provenance:
            rows += bench_big_file(root, big_mib)
            rows += bench_search(root, n_search)
        rows += bench_capture(root)
        rows.append(bench_reproduce_dry_run(root))
    finally:
        for p in root.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'benchmark':<{w}}  result")
    print(f"{'-' * w}  {'-' * 50}")
    for name, value in rows:
        print(f"{name:<{w}}  {value}")


if __name__ == "__main__":
    main()
