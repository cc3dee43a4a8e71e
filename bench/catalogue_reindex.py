"""The reindex rows of bench_catalogue.py: a store filled with artifacts, the indexer with
the trust checks and without them (the peer), a resumed run and fsck, into fresh
catalogues of any backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from elliptio import Lake, indexer
from elliptio.artifact import dump_metadata
from elliptio.catalogue import Catalogue, open_catalogue
from elliptio.ids import new_id

from bench.catalogue_corpus_gen import metadata


def fill_store(lake: Lake, n: int) -> None:
    """*n* artifacts of one file (and a log) each; every fifth one's file is a dedup
    reference to an earlier artifact's object (the check the trust rules add)."""
    rnd = random.Random(9)
    users = [f"user{i}" for i in range(20)]
    now = int(time.time() * 1000)

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


def reindex_rate(lake: Lake, new_url: Callable[[], str]) -> list[str]:
    """Rates of a first reindex into a fresh catalogue (``new_url()``) with the checks and
    without (the peer; best of 5 each, alternated), of a resumed one (into a catalogue
    that has them all), and fsck's time per 1,000 artifacts on that catalogue."""
    best = {"checked": float("inf"), "unchecked": float("inf")}
    for run in range(5):  # alternated, so a slow spell of a noisy machine hits both
        order = (("checked", contextlib.nullcontext), ("unchecked", unchecked))
        for label, ctx in order if run % 2 == 0 else order[::-1]:
            target = open_catalogue(new_url())
            with ctx():
                t = time.perf_counter()
                report = indexer.reindex(lake, catalogue=target)
                best[label] = min(best[label], time.perf_counter() - t)
            assert report.indexed == report.scanned and not report.quarantined, report
            if label == "checked":
                full: Catalogue = target
            else:
                target.close()
    out = [best["checked"], best["unchecked"]]
    t = time.perf_counter()
    again = indexer.reindex(lake, catalogue=full)
    out.append(time.perf_counter() - t)
    assert again.skipped == again.scanned, again
    t = time.perf_counter()
    report = indexer.fsck(Lake(lake.settings, store=lake.store, catalogue=full))
    out.append(time.perf_counter() - t)
    assert report.clean and report.checked == again.scanned, report
    full.close()
    n = again.scanned
    return [f"{n / out[0]:,.0f}/s", f"{n / out[1]:,.0f}/s", f"{out[0] / out[1]:.2f}",
            f"{n / out[2]:,.0f}/s", f"{out[3] / n * 1000:.2f} s"]
