"""Concurrent saves for bench_catalogue.py: P processes each ``eio.save`` S one-file
artifacts into one lake (a local store) whose catalogue is the backend measured, all
released at once by a barrier; then every id the processes were given must be in the
catalogue, once, and the catalogue must hold exactly P x S artifacts.

Each process runs in a scratch directory outside any git repository, its ``argv[0]`` not
a ``.py`` file, so provenance capture does not diff this checkout on every save (that
cost is bench_core's row, not the catalogue's); pip freeze is taken once before the
barrier (the library caches it for 60 s, so a long run takes it again now and then, as a
real long job would).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from elliptio import Query


def _saver(index: int, store: str, catalogue: str, saves: int, scratch: str,
           barrier: Any, results: Any) -> None:
    os.environ.update(ELLIPTIO_STORE=store, ELLIPTIO_CATALOGUE=catalogue,
                      ELLIPTIO_USER=f"saver{index}",
                      ELLIPTIO_CONFIG=os.path.join(scratch, "no-config.yaml"))
    os.chdir(scratch)
    sys.argv = ["eio-bench-saver"]
    import elliptio as eio
    from elliptio.environment import pip_freeze

    pip_freeze()
    ids: list[str] = []
    uncatalogued = 0
    barrier.wait()
    t = time.perf_counter()
    for i in range(saves):
        src = Path(scratch) / f"result-{index}-{i}.txt"
        src.write_text(f"saver {index}, save {i}\n")  # unique bytes: no dedup hit
        a = eio.save(str(src), info={"type": "bench-save", "saver": index, "i": i},
                     tags=["concurrent"], based_on=[])
        ids.append(a.id)
        uncatalogued += not a.catalogued
    results.put((index, ids, uncatalogued, time.perf_counter() - t))


def concurrent_saves(catalogue_url: str, procs: int, saves: int) -> dict[str, float]:
    """Run the savers into a fresh lake on *catalogue_url*; returns the rates. Raises
    AssertionError when a row is missing or doubled."""
    from elliptio.catalogue import open_catalogue

    ctx = mp.get_context("spawn")  # a clean interpreter each, like P separate jobs
    with tempfile.TemporaryDirectory(prefix="eio-bench-saves-") as tmp:
        store = f"file://{tmp}/store"
        barrier, results = ctx.Barrier(procs + 1), ctx.Queue()
        workers = []
        for i in range(procs):
            scratch = Path(tmp) / f"w{i}"
            scratch.mkdir()
            p = ctx.Process(target=_saver, args=(i, store, catalogue_url, saves,
                                                 str(scratch), barrier, results))
            p.start()
            workers.append(p)
        try:
            barrier.wait(timeout=300)
            t = time.perf_counter()
            got = [results.get(timeout=3600) for _ in workers]
            wall = time.perf_counter() - t
        finally:
            for p in workers:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()  # our own child, by its handle
        ids = [aid for _i, some, _u, _s in got for aid in some]
        uncatalogued = sum(u for _i, _ids, u, _s in got)
        cat = open_catalogue(catalogue_url)
        try:
            total = cat.count(Query())
            present = cat.existing(ids)
        finally:
            cat.close()
    want = procs * saves
    assert len(ids) == want and len(set(ids)) == want, "ids lost or repeated by the savers"
    assert uncatalogued == 0, f"{uncatalogued} saves returned catalogued=False"
    assert present == set(ids), f"{want - len(present)} saved artifacts not in the catalogue"
    assert total == want, f"catalogue holds {total} artifacts, {want} were saved"
    slowest = max(s for _i, _ids, _u, s in got)
    return {"saves": want, "wall": wall, "rate": want / wall,
            "per_proc": saves / slowest, "ms_per_save": slowest / saves * 1000}
