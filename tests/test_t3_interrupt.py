"""An interrupted save never leaves a visible half artifact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import elliptio as eio
from elliptio import indexer
from elliptio.indexer import orphans

CHILD = """
import sys, elliptio as eio
print("ready", flush=True)
a = eio.save(sys.argv[1:], info={"type": "big"})
print("saved", a.id, flush=True)
"""


def _committed_artifacts_are_whole(lake: eio.Lake) -> int:
    n = 0
    for key in lake.store.list_metadata(""):
        md = eio.artifact.load_metadata(lake.store.read_bytes(key))
        for f in md["files"]:
            assert lake.store.size(f["object"]) == f["size"]
        n += 1
    return n


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4, 0.8])
def test_kill_during_save(tmp_path, lake, delay, monkeypatch):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(1 << 20))
    small = tmp_path / "many"
    small.mkdir()
    for i in range(300):
        (small / f"f{i}.txt").write_text(str(i) * 100)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(big), str(small)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    committed = _committed_artifacts_are_whole(lake)
    catalogued = lake.search(limit=None)
    assert len(catalogued) <= committed <= 1
    report = indexer.fsck(lake)
    print(f"delay={delay} committed={committed} orphans={len(report.orphans)}")
    assert not report.mismatches and not report.missing_from_store
    if committed == 0:
        # whatever was written before the kill is an orphan that fsck can remove
        if report.orphans:  # as if a day had passed since (the minimum age)
            monkeypatch.setattr(orphans, "clock", lambda: time.time() + 2 * 86400)
            indexer.fsck(lake, remove_orphans=True)
            assert indexer.fsck(lake).orphans == []
    else:
        indexer.reindex(lake)
        assert len(lake.search()) == 1


@pytest.mark.parametrize("fail_at", ["stage", "commit", "log", "metadata"])
def test_exception_at_each_step_leaves_nothing_visible(tmp_path, lake_env, monkeypatch,
                                                       fail_at):
    """On the in-memory store, whose fault hook makes the chosen step fail (the third
    file staged or committed, the first log or the metadata written)."""
    from elliptio.store.memory import MemoryStore

    url = f"memory://interrupt-{os.urandom(6).hex()}"
    monkeypatch.setenv("ELLIPTIO_STORE", url)
    store = MemoryStore(url)  # the same objects as the lake eio.save opens from the env
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text(f"content {i}")
    files = [str(tmp_path / f"f{i}.txt") for i in range(5)]
    calls = {"n": 0}

    def failing(operation, when):
        def faults(op, key):
            if op != operation:
                return
            calls["n"] += 1
            if when(key) and calls["n"] >= 3:
                raise eio.StorageError("no space left on device (injected)")
        return faults

    if fail_at in ("stage", "commit"):
        store.faults = failing(fail_at, lambda key: True)
    else:
        needle = ".eio/logs/" if fail_at == "log" else ".eio/metadata.yaml"
        calls["n"] = 10
        store.faults = failing("put_bytes", lambda key: needle in key)
    with pytest.raises(eio.StorageError, match="space"):
        eio.save(files)
    store.faults = None
    with eio.Lake() as lake:
        assert lake.search() == []
        assert list(lake.store.list("")) == []  # partial writes were removed
    assert store.staged == 0  # and nothing staged is left behind (no temporaries)
