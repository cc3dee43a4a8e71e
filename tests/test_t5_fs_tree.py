"""The tree and the FUSE operations without a mount: operations are awaited directly (trio)
and their errnos checked. READDIRPLUS replies go to a fake ``readdir_reply``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pyfuse3
import pytest
import trio

from elliptio import Lake
from elliptio.errors import CatalogueError, ConfigError, StorageError
from elliptio.ids import new_id
from elliptiofs import dirs as dirs_mod
from elliptiofs import reader as reader_mod
from elliptiofs.nodes import IMMUTABLE_TIMEOUT, QUERY_TIMEOUT, ROOT_INODE, Kind
from elliptiofs.ops import Operations
from elliptiofs.reader import Reader
from elliptiofs.readlog import ReadLog, scope_for
from elliptiofs.scan import ScanAhead
from elliptiofs.tree import Tree
from elliptiofs.workers import Workers
from tests.fixtures.spy import Spy
from tests.fixtures.trees import expected_dirs, make_tree

CTX = SimpleNamespace(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), umask=0o022)


def fake_md(user: str, when: datetime, tags: tuple[str, ...] = (),
            based_on: tuple[str, ...] = ()) -> dict[str, Any]:
    aid = new_id(int(when.timestamp() * 1000))
    prefix = f"{when:%Y/%m/%d}/{user}/{aid}"
    return {"elliptio": 1, "id": aid, "user": user,
            "created": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "prefix": prefix, "info": {}, "tags": list(tags), "based_on": list(based_on),
            "files": [{"path": "f.txt", "size": 3, "sha256": "0" * 64,
                       "object": f"{prefix}/f.txt"}], "logs": {}, "provenance": {}}


class Flaky:
    """Wraps a catalogue or store; raises *error* from every call while ``failing``."""

    def __init__(self, inner: Any, error: Exception) -> None:
        self.inner, self.error, self.failing = inner, error, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            if self.failing:
                raise self.error
            return attr(*a, **k)

        return call


def with_ops(lake: Lake, fn: Callable[[Operations], Any], *, readlog: ReadLog | None = None,
             scope: str = "session", scan: bool = False) -> Any:
    """Run ``await fn(ops)`` under trio with a reader and a catalogue pool, as the daemon
    does (with scan read-ahead if *scan*)."""
    result: list[Any] = []

    async def main() -> None:
        reader = Reader(lambda: lake.store)
        catalogue_workers = Workers(4, "test-cat")
        try:
            tree = Tree(lake)
            ahead = ScanAhead(tree, reader, catalogue_workers) if scan else None
            ops = Operations(tree, reader, readlog, catalogue_workers, scope=scope,
                             scan=ahead)
            result.append(await fn(ops))
        finally:
            reader.close()
            catalogue_workers.close()

    trio.run(main)
    return result[0]


async def walk(ops: Operations, *names: str) -> int:
    ino = ROOT_INODE
    for n in names:
        e = await ops.lookup(ino, n.encode(), CTX)
        if e.st_ino == 0:
            raise FileNotFoundError(n)
        ino = e.st_ino
    return ino


async def errno_of(coro: Any) -> int:
    with pytest.raises(pyfuse3.FUSEError) as info:
        await coro
    return info.value.errno


@pytest.fixture
def collect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``await collect(ops, ino, per_call=N)``: every name of a directory, read through
    readdir with a reply buffer that takes N entries per call (like the kernel's)."""
    state = {"left": 0}
    got: list[tuple[str, int, int]] = []

    def reply(token: Any, name: bytes, attr: pyfuse3.EntryAttributes, next_id: int) -> bool:
        if state["left"] == 0:
            return False
        state["left"] -= 1
        got.append((name.decode(), attr.st_ino, next_id))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)

    async def run(ops: Operations, ino: int, per_call: int = 7,
                  start: int = 0) -> list[tuple[str, int, int]]:
        got.clear()
        fh = await ops.opendir(ino, CTX)
        off = start
        while True:
            state["left"] = per_call
            before = len(got)
            await ops.readdir(fh, off, None)  # type: ignore[arg-type]
            if len(got) == before:
                break
            off = got[-1][2]
        await ops.releasedir(fh)
        return list(got)

    return run


@pytest.fixture
def saved(lake: Lake, tmp_path):
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "d/sub/b.bin").write_bytes(os.urandom(700_000))
    a = lake.save([str(tmp_path / "d")], info={"type": "dataset"}, tags=["t1", "we*ird"],
                  based_on=[])
    b = lake.save({"copy.bin": str(tmp_path / "d/sub/b.bin")}, based_on=[a.id])  # dedup
    return SimpleNamespace(a=a, b=b, big=(tmp_path / "d/sub/b.bin").read_bytes())


def test_lookup_getattr_and_negative_entries(lake, saved):
    a = saved.a

    async def check(ops: Operations) -> None:
        f = await walk(ops, "artifacts", a.id, "d", "sub", "b.bin")
        attr = await ops.getattr(f, CTX)
        assert attr.st_size == 700_000 and attr.st_mode == 0o100444
        assert attr.st_mtime_ns // 1_000_000 == int(a.created.timestamp() * 1000)
        assert attr.attr_timeout == IMMUTABLE_TIMEOUT and attr.st_uid == os.getuid()
        # the same path is the same inode
        assert await walk(ops, "artifacts", a.id, "d", "sub", "b.bin") == f
        # negative entries: cached long inside an artifact, briefly in query directories
        d = await walk(ops, "artifacts", a.id)
        neg = await ops.lookup(d, b"x86_64", CTX)
        assert neg.st_ino == 0 and neg.entry_timeout == IMMUTABLE_TIMEOUT
        neg = await ops.lookup(await walk(ops, "by-user"), b"nobody", CTX)
        assert neg.st_ino == 0 and neg.entry_timeout == QUERY_TIMEOUT
        neg = await ops.lookup(await walk(ops, "artifacts"), b"0" * 26, CTX)
        assert neg.st_ino == 0
        assert (await ops.lookup(await walk(ops, "by-user", "andy"), a.id.encode(),
                                 CTX)).st_ino != 0
        link = await walk(ops, "by-user", "andy", a.id)
        assert await ops.readlink(link, CTX) == f"../../artifacts/{a.id}".encode()
        assert (await ops.getattr(link, CTX)).st_mode == 0o120777
        md = await walk(ops, "artifacts", a.id, ".eio", "metadata.yaml")
        assert (await ops.getattr(md, CTX)).st_size == len(
            lake.store.read_bytes(f"{a.metadata['prefix']}/.eio/metadata.yaml"))
        # errnos
        assert await errno_of(ops.lookup(await walk(ops, "search"), b"user=a,nope=1",
                                         CTX)) == errno.EINVAL
        assert await errno_of(ops.getattr(99999, CTX)) == errno.ENOENT
        assert await errno_of(ops.readlink(f, CTX)) == errno.EINVAL
        tag = await walk(ops, "by-tag", "we*ird")
        assert (await ops.lookup(tag, saved.b.id.encode(), CTX)).st_ino == 0
        assert (await ops.lookup(tag, a.id.encode(), CTX)).st_ino != 0
        assert (await ops.lookup(await walk(ops, "by-tag"), b"we*", CTX)).st_ino == 0

    with_ops(lake, check)


def test_every_write_is_erofs(lake, saved):
    async def check(ops: Operations) -> None:
        f = await walk(ops, "artifacts", saved.a.id, "d", "a.csv")
        d = await walk(ops, "artifacts", saved.a.id)
        out = await walk(ops, "outbox")
        ro = errno.EROFS
        assert await errno_of(ops.open(f, os.O_WRONLY, CTX)) == ro
        assert await errno_of(ops.open(f, os.O_RDONLY | os.O_TRUNC, CTX)) == ro
        assert await errno_of(ops.create(d, b"n", 0o644, os.O_WRONLY, CTX)) == ro
        assert await errno_of(ops.create(out, b"n", 0o644, os.O_WRONLY, CTX)) == ro
        assert await errno_of(ops.mkdir(ROOT_INODE, b"n", 0o755, CTX)) == ro
        assert await errno_of(ops.unlink(d, b"d", CTX)) == ro
        assert await errno_of(ops.rmdir(d, b"d", CTX)) == ro
        assert await errno_of(ops.rename(d, b"d", d, b"e", 0, CTX)) == ro
        assert await errno_of(ops.rename(d, b"d", out, b"e", 0, CTX)) == ro
        assert await errno_of(ops.setattr(f, pyfuse3.EntryAttributes(),
                                          pyfuse3.SetattrFields(), None, CTX)) == ro
        assert await errno_of(ops.setxattr(f, b"user.x", b"1", CTX)) == ro
        assert await errno_of(ops.removexattr(f, b"user.eio.id", CTX)) == ro
        assert await errno_of(ops.symlink(d, b"l", b"x", CTX)) == ro
        assert await errno_of(ops.link(f, d, b"l", CTX)) == ro
        assert await errno_of(ops.mknod(d, b"p", 0o10644, 0, CTX)) == ro
        assert await errno_of(ops.access(f, os.W_OK, CTX)) == ro
        assert await ops.access(f, os.R_OK, CTX)

    with_ops(lake, check)


def test_readdir_pages_by_keyset_and_forget_bounds_the_table(lake, collect, monkeypatch):
    monkeypatch.setattr(dirs_mod, "PAGE", 4)
    mds = [fake_md("carol", datetime(2024, 3, d, 12, tzinfo=UTC), tags=("t",))
           for d in range(1, 12)]
    mds += [fake_md("dave", datetime(2023, 12, 31, tzinfo=UTC))]
    lake.catalogue.upsert_many(mds)
    carol = sorted((m["id"] for m in mds[:11]), reverse=True)

    async def check(ops: Operations) -> None:
        base = len(ops.inodes)
        ino = await walk(ops, "by-user", "carol")
        got = await collect(ops, ino, per_call=3)
        assert [n for n, _, _ in got] == carol  # newest first, every one exactly once
        assert [o for _, _, o in got] == list(range(1, 12))
        # a seekdir back into an earlier page
        again = await collect(ops, ino, per_call=100, start=5)
        assert [n for n, _, _ in again] == carol[5:]
        # READDIRPLUS took one reference per accepted entry; forgetting them empties
        inos = {i for _, i, _ in got}
        assert len(inos) == 11
        await ops.forget([(i, 2) for i in inos])
        assert len(ops.inodes) == base + 2  # by-user and by-user/carol remain (walk refs)
        assert [n for n, _, _ in await collect(ops, await walk(ops, "by-user"))] == \
            ["carol", "dave"]
        assert [n for n, _, _ in await collect(ops, await walk(ops, "by-date"))] == \
            ["2023", "2024"]
        assert [n for n, _, _ in await collect(ops, await walk(ops, "by-date", "2024"))] \
            == ["03"]
        days = await collect(ops, await walk(ops, "by-date", "2024", "03"), per_call=2)
        assert [n for n, _, _ in days] == [f"{d:02d}" for d in range(1, 12)]
        day = await walk(ops, "by-date", "2024", "03", "05")
        assert [n for n, _, _ in await collect(ops, day)] == [mds[4]["id"]]
        assert (await ops.lookup(await walk(ops, "by-date", "2024"), b"13", CTX)).st_ino == 0
        assert len(await collect(ops, await walk(ops, "by-tag", "t"), per_call=5)) == 11
        q = await walk(ops, "search", "user=carol,limit=5")
        assert [n for n, _, _ in await collect(ops, q, per_call=2)] == carol[:5]
        q = await walk(ops, "search", "user=carol,limit=0")  # 0: no limit
        assert [n for n, _, _ in await collect(ops, q, per_call=2)] == carol
        assert len(carol) > 5
        assert [n for n, _, _ in await collect(ops, await walk(ops, "search"))] == []
        root = [n for n, _, _ in await collect(ops, ROOT_INODE)]
        assert root == ["artifacts", "by-user", "by-tag", "by-date", "based-on", "search",
                        "outbox"]

    with_ops(lake, check)


def test_reads_sequential_random_dedup_and_budget(lake, saved, monkeypatch):
    monkeypatch.setattr(reader_mod, "PART", 64 << 10)
    monkeypatch.setattr(reader_mod, "STREAM_AFTER", 100 << 10)
    big = saved.big

    async def check(ops: Operations) -> None:
        for path in (("artifacts", saved.a.id, "d", "sub", "b.bin"),
                     ("artifacts", saved.b.id, "copy.bin")):  # a dedup reference
            ino = await walk(ops, *path)
            info = await ops.open(ino, os.O_RDONLY, CTX)
            # the page cache is kept once the object's bytes were read in order and
            # matched: not at the first open, at the dedup reference's (the same object)
            assert info.keep_cache is (path[1] == saved.b.id)
            ops.reader.budget.peak = 0
            out = bytearray()
            while len(out) < len(big) + 1:
                chunk = bytes(await ops.read(info.fh, len(out), 32 << 10))
                if not chunk:
                    break
                out += chunk
            assert bytes(out) == big
            assert ops.reader.budget.peak <= (reader_mod.MAX_AHEAD + 2) * (64 << 10)
            for off, size in ((500_000, 100_000), (3, 10), (699_990, 100), (0, 700_000)):
                assert bytes(await ops.read(info.fh, off, size)) == big[off:off + size]
            await ops.release(info.fh)
        await trio.sleep(0.05)  # fetches still in flight return their charge
        assert ops.reader.budget.used == 0 and len(ops.reader) == 0
        assert saved.b.files["copy.bin"].object == saved.a.files["d/sub/b.bin"].object

    with_ops(lake, check)


def fetched(store: Spy) -> int:
    """Bytes asked of the spied store's ``read_range`` so far."""
    return sum(args[2] for args, _ in store.calls)


def test_concurrent_out_of_order_reads_are_right_and_fetched_once(lake, saved, monkeypatch):
    """The kernel keeps several read-ahead requests of one file in flight; they reach the
    reader out of order and concurrently. Every one gets its bytes (no EIO: a part dropped
    while a request waits for it is still that request's), nothing is fetched twice, and
    a far jump in the middle of it all is served too."""
    monkeypatch.setattr(reader_mod, "PART", 64 << 10)
    monkeypatch.setattr(reader_mod, "STREAM_AFTER", 16 << 10)
    monkeypatch.setattr(reader_mod, "SLACK", 256 << 10)
    big = saved.big
    store = Spy(lake.store, "read_range")
    counted = Lake(lake.settings, store=store, catalogue=lake.catalogue)  # type: ignore[arg-type]
    rng = random.Random(5)

    async def check(ops: Operations) -> None:
        ino = await walk(ops, "artifacts", saved.a.id, "d", "sub", "b.bin")
        info = await ops.open(ino, os.O_RDONLY, CTX)
        req = 16 << 10
        results: dict[int, bytes] = {}

        async def one(off: int, delay: float) -> None:
            await trio.sleep(delay)
            results[off] = bytes(await ops.read(info.fh, off, req))

        offsets = list(range(0, len(big), req))
        for start in range(0, len(offsets), 8):  # windows of 8 requests, shuffled
            window = offsets[start:start + 8]
            if start >= 8:  # the first window in order: the reader is streaming by then
                rng.shuffle(window)
            async with trio.open_nursery() as n:
                for k, off in enumerate(window):
                    n.start_soon(one, off, k / 2000 if start < 8 else rng.random() / 1000)
                if start == 16:
                    n.start_soon(one, len(big) - req, 0.0005)  # a far jump among them
        assert b"".join(results[o] for o in offsets) == big
        # parts are fetched once: the whole file plus the jump's part and the parts
        # refetched after it, not a part per request
        assert fetched(store) <= 2 * len(big), fetched(store)
        await ops.release(info.fh)
        await trio.sleep(0.05)
        assert ops.reader.budget.used == 0

    with_ops(counted, check)


@pytest.fixture
def series(lake: Lake, tmp_path):
    """20 artifacts of andy with a small m.json each (and a big file), 5 of brenda's
    between them in time; returns andy's ids (ascending) and their m.json bytes."""
    ids, data = [], {}
    for i in range(20):
        d = tmp_path / f"a{i}"
        d.mkdir()
        (d / "m.json").write_bytes(b'{"i": %d, "r": "%s"}' % (i, os.urandom(8).hex().encode()))
        (d / "big.bin").write_bytes(b"B" * (2 << 20))
        a = lake.save([str(d / "m.json"), str(d / "big.bin")], based_on=[])
        ids.append(a.id)
        data[a.id] = (d / "m.json").read_bytes()
        if i % 4 == 0:
            (d / "other.txt").write_text("x")
            with Lake(lake.settings.__class__.load(user="brenda")) as brenda:
                brenda.save([str(d / "other.txt")], based_on=[])
    return ids, data


def test_scan_read_ahead_prefetches_the_next_artifacts(lake, series, tmp_path):
    """Opening m.json of andy's artifacts in id order (either direction) has the reader
    fetch the next ones before they are opened: their opens then cost no GET, the bytes
    are right, lineage holds only what was opened, and memory comes back. Out of order,
    another path, or a big file: nothing is prefetched."""
    ids, data = series
    readlog = ReadLog(str(tmp_path / "readlog.sqlite"))
    store = Spy(lake.store, "read_range")
    catalogue = Spy(lake.catalogue, "get")
    counted = Lake(lake.settings, store=store, catalogue=catalogue)  # type: ignore[arg-type]
    gets_by_lookup: list[int] = []  # catalogue reads of the lookups, per file

    async def read_all(ops: Operations, order: list[str], name: str = "m.json") -> list[int]:
        """Open+read+release each; the bytes fetched by the read itself, per file."""
        fetched_by_read = []
        gets_by_lookup.clear()
        for aid in order:
            gets = len(catalogue.calls)
            ino = await walk(ops, "artifacts", aid, name)
            gets_by_lookup.append(len(catalogue.calls) - gets)
            info = await ops.open(ino, os.O_RDONLY, CTX)
            # the read-ahead this open started is planned and fetched before the read, so
            # that what the read fetches is its own (however loaded the machine is)
            with trio.fail_after(10):
                while any(sc.planning for sc in ops.scan._scans.values()):
                    await trio.sleep(0.005)
                for part in list(ops.reader._prefetched.values()):
                    await part.done.wait()
            before = fetched(store)
            got = bytes(await ops.read(info.fh, 0, 1 << 16))
            fetched_by_read.append(fetched(store) - before)
            if name == "m.json":
                assert got == data[aid]
            await ops.release(info.fh)
        return fetched_by_read

    async def ascending(ops: Operations) -> None:
        # as `cat artifacts/*/m.json`: after two opens, the reads fetch nothing
        by_read = await read_all(ops, ids[:12])
        assert by_read[:2] == [len(data[ids[0]]), len(data[ids[1]])]
        assert by_read[3:] == [0] * 9, by_read
        # and their lookups find the artifacts the read-ahead already parsed
        assert gets_by_lookup[:2] == [1, 1]
        assert gets_by_lookup[3:] == [0] * 9, gets_by_lookup
        # lineage: only the 12 opened, not the prefetched ones beyond
        assert set(readlog.artifacts_for(scope_for(CTX.pid, CTX.uid))) == set(ids[:12])
        # what is held is the prefetch cache's, within its quarter of the budget
        await trio.sleep(0.1)
        assert 0 < ops.reader.budget.used == ops.reader._prefetched_bytes
        assert ops.reader._prefetched_bytes <= ops.reader.budget.limit // 4

    async def descending(ops: Operations) -> None:
        # as a newest-first listing
        by_read = await read_all(ops, ids[19:11:-1])
        assert by_read[3:] == [0] * 5, by_read

    async def jumpy(ops: Operations) -> None:
        # directions alternate: every read fetches its own bytes
        order = [ids[5], ids[9], ids[2], ids[7], ids[1]]
        assert await read_all(ops, order) == [len(data[a]) for a in order]

    async def big_files(ops: Operations) -> None:
        await read_all(ops, ids[:4], name="big.bin")
        await trio.sleep(0.1)
        assert not ops.reader._prefetched  # not read ahead across artifacts

    with contextlib.closing(readlog):
        for phase in (ascending, descending, jumpy, big_files):
            with_ops(counted, phase, readlog=readlog, scan=True)


def test_a_failed_prefetch_is_not_an_eio(lake, series):
    """A prefetch that fails (the store was down a moment) while the file is being opened
    does not fail the read: the read asks the store itself."""
    import time

    ids, data = series

    class FailingForAWhile:
        def __init__(self, inner: Any) -> None:
            self.inner, self.fail_until, self.failed = inner, 0.0, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def read_range(self, key: str, offset: int, length: int) -> bytes:
            if time.monotonic() < self.fail_until:
                time.sleep(0.2)
                self.failed += 1
                raise StorageError("503 Slow Down, after retries")
            return self.inner.read_range(key, offset, length)

    store = FailingForAWhile(lake.store)
    flaky = Lake(lake.settings, store=store, catalogue=lake.catalogue)  # type: ignore[arg-type]

    async def check(ops: Operations) -> None:
        for i, aid in enumerate(ids[:6]):
            ino = await walk(ops, "artifacts", aid, "m.json")
            info = await ops.open(ino, os.O_RDONLY, CTX)
            if i == 1:  # the scan is detected: its prefetches now fail, slowly
                store.fail_until = time.monotonic() + 0.1
                await trio.sleep(0.05)
            else:
                assert bytes(await ops.read(info.fh, 0, 1 << 16)) == data[aid]
            await ops.release(info.fh)
        assert store.failed > 0  # the prefetches did fail

    with_ops(flaky, check, scan=True)


def test_reader_workers_answer_on_the_trio_thread_bounded_and_cancellable(caplog):
    """The daemon's worker pools: results and exceptions come back to the caller, no more
    than its size run at once, a cancelled caller stops waiting (the call still finishes
    in its thread), an answer callback that raises is logged as a bug instead of ending
    the daemon, a closed pool drops calls (run says so), and an outcome arriving after
    the run is over is dropped quietly."""
    import threading
    import time

    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()
    finished: list[int] = []

    def call(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            release.wait(5)
            if i == 3:
                raise KeyError(i)
            return i * 10
        finally:
            with lock:
                running -= 1
            finished.append(i)

    async def main() -> None:
        workers = Workers(2, "test")
        main_thread = threading.get_ident()
        try:
            got: dict[int, Any] = {}

            async def one(i: int) -> None:
                try:
                    got[i] = await workers.run(call, i)
                except KeyError as exc:
                    got[i] = exc
                assert threading.get_ident() == main_thread

            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(one, i)
                await trio.sleep(0.1)
                assert peak == 2  # the rest wait their turn
                release.set()
            assert got == {0: 0, 1: 10, 2: 20, 3: got[3], 4: 40}
            assert isinstance(got[3], KeyError)
            assert peak == 2
            release.clear()
            with trio.move_on_after(0.1) as scope:  # a caller gives up: no hang
                await workers.run(call, 5)
            assert scope.cancelled_caught
            release.set()
            deadline = time.monotonic() + 5
            while 5 not in finished and time.monotonic() < deadline:
                await trio.sleep(0.01)
            assert 5 in finished

            answered = trio.Event()

            def broken(result: Any, error: BaseException | None) -> None:
                answered.set()
                raise ValueError("a broken callback")

            workers.submit(call, (7,), broken)  # would end trio.run if it escaped
            with trio.fail_after(5):
                await answered.wait()  # logged in the same callback, before this resumes
            assert any("(a bug;" in r.getMessage() and r.exc_info for r in caplog.records)

            release.clear()
            workers.submit(call, (6,), lambda r, e: None)  # answered after the run: dropped
            while running == 0 and time.monotonic() < deadline + 5:
                await trio.sleep(0.01)
            assert running == 1
        finally:
            workers.close()
        workers.submit(call, (8,), lambda r, e: None)  # closed: dropped, no error
        with pytest.raises(trio.ClosedResourceError):
            await workers.run(call, 9)

    trio.run(main)
    release.set()
    deadline = time.monotonic() + 5
    while 6 not in finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 6 in finished
    assert 8 not in finished and 9 not in finished


def test_store_and_catalogue_failures_are_eio_and_pass(lake, saved):
    store = Flaky(lake.store, StorageError("503 after retries"))
    catalogue = Flaky(lake.catalogue, CatalogueError("database is locked"))
    flaky = Lake(lake.settings, store=store, catalogue=catalogue)  # type: ignore[arg-type]

    async def check(ops: Operations) -> None:
        ino = await walk(ops, "artifacts", saved.a.id, "d", "a.csv")
        info = await ops.open(ino, os.O_RDONLY, CTX)
        store.failing = True
        assert await errno_of(ops.read(info.fh, 0, 100)) == errno.EIO
        store.failing = False
        assert bytes(await ops.read(info.fh, 0, 100)) == b"x,y\n1,2\n"
        catalogue.failing = True
        assert await errno_of(ops.lookup(await walk(ops, "artifacts"), b"0" * 26,
                                         CTX)) == errno.EIO
        assert await errno_of(ops.lookup(await walk(ops, "by-user"), b"andy",
                                         CTX)) == errno.EIO
        catalogue.failing = False
        assert await walk(ops, "by-user", "andy", saved.a.id)

    with_ops(flaky, check)


def test_xattrs(lake, saved):
    async def check(ops: Operations) -> None:
        f = await walk(ops, "artifacts", saved.a.id, "d", "sub", "b.bin")
        names = await ops.listxattr(f, CTX)
        assert set(names) == {b"user.eio.id", b"user.eio.user", b"user.eio.created",
                              b"user.eio.sha256", b"user.eio.url"}
        assert await ops.getxattr(f, b"user.eio.sha256", CTX) == \
            hashlib.sha256(saved.big).hexdigest().encode()
        assert (await ops.getxattr(f, b"user.eio.url", CTX)).startswith(b"file:///")
        assert await errno_of(ops.getxattr(f, b"security.selinux", CTX)) == errno.EOPNOTSUPP
        assert await errno_of(ops.getxattr(f, b"system.posix_acl_access", CTX)) \
            == errno.EOPNOTSUPP
        assert await errno_of(ops.getxattr(f, b"user.other", CTX)) == pyfuse3.ENOATTR
        assert await ops.listxattr(ROOT_INODE, CTX) == []

    with_ops(lake, check)


def test_open_records_reads_in_the_readlog(lake, saved, tmp_path):
    log = ReadLog(str(tmp_path / "readlog.sqlite"))

    async def check(ops: Operations) -> None:
        for path in (("artifacts", saved.a.id, "d", "a.csv"),
                     ("artifacts", saved.b.id, ".eio", "metadata.yaml")):  # not lineage
            info = await ops.open(await walk(ops, *path), os.O_RDONLY, CTX)
            await ops.release(info.fh)

    with_ops(lake, check, readlog=log)
    mine = scope_for(os.getpid(), os.getuid(), "session")
    assert log.artifacts_for(mine) == [saved.a.id]
    with_ops(lake, check, readlog=log, scope="uid")
    assert log.artifacts_for(f"uid:{os.getuid()}") == [saved.a.id]
    log.close()


def test_readlog_api_and_scopes(tmp_path):
    log = ReadLog(str(tmp_path / "r.sqlite"))
    a, b = new_id(), new_id()
    log.record("s1", b)
    log.record("s1", a)
    log.record("s1", b)
    log.record("s2", a)
    assert log.artifacts_for("s1") == [b, a]
    assert log.artifacts_for("s3") == []
    other = ReadLog(str(tmp_path / "r.sqlite"))  # another process, same file
    assert other.artifacts_for("s2") == [a]
    other.close()
    log.close()
    me = os.getpid()
    s = scope_for(me, 0, "session")
    assert s.startswith("session:") and s.split(":")[2] == str(os.getsid(me))
    assert scope_for(me, 0, "session") == s
    assert scope_for(me, 0, "pid").startswith(f"pid:{s.split(':')[1]}:{me}:")
    assert scope_for(me, 7, "uid") == "uid:7"
    assert scope_for(0, 7, "session") == "uid:7"  # another pid namespace
    with pytest.raises(ConfigError):
        scope_for(me, 0, "host")


def test_tree_lists_artifacts_and_based_on(lake, saved):
    tree = Tree(lake)
    top = tree.lookup(tree.root(), "artifacts")
    assert top is not None
    ids = [e.name for e in tree.list_dir(top, None, 10)]
    assert ids == [saved.b.id, saved.a.id]
    assert [e.name for e in tree.list_dir(top, saved.b.id, 10)] == [saved.a.id]
    based = tree.lookup(tree.root(), "based-on")
    assert based is not None
    children = tree.lookup(based, saved.a.id)
    assert children is not None and children.kind is Kind.GROUP
    assert [e.name for e in tree.list_dir(children, None, 10)] == [saved.b.id]
    adir = tree.lookup(top, saved.a.id)
    assert adir is not None
    assert [e.name for e in tree.list_dir(adir, None, 10)] == [".eio", "d"]
    eio = tree.lookup(adir, ".eio")
    assert eio is not None
    assert [e.name for e in tree.list_dir(eio, None, 10)] == ["logs", "metadata.yaml"]


def test_empty_directories_are_directories_of_the_tree(lake, tmp_path, caplog):
    a = lake.save([str(make_tree(tmp_path / "tree"))], based_on=[])

    async def check(ops: Operations) -> None:
        for rel in expected_dirs("tree"):
            ino = await walk(ops, "artifacts", a.id, *rel.split("/"))
            attr = await ops.getattr(ino, CTX)
            assert attr.st_mode == 0o040555 and attr.entry_timeout == IMMUTABLE_TIMEOUT
            fh = await ops.opendir(ino, CTX)
            await ops.releasedir(fh)
        tree = ops.tree
        parent = tree.lookup(tree.lookup(tree.lookup(tree.root(), "artifacts"), a.id),
                             "tree")
        assert parent is not None
        assert [e.name for e in tree.list_dir(parent, None, 10)] == ["a", "c", "files",
                                                                     "top.txt"]
        c = tree.lookup(parent, "c")
        assert c is not None and c.kind is Kind.ADIR and tree.list_dir(c, None, 10) == []

    with_ops(lake, check)
    # a catalogue row naming a directory save would not write: the others are shown, the
    # artifact's empty directories are not, and the log says why
    hostile = {**a.metadata, "dirs": ["tree/c", "../../escape"]}
    lake.catalogue.upsert(hostile)
    tree = Tree(lake)
    adir = tree.lookup(tree.lookup(tree.root(), "artifacts"), a.id)
    assert adir is not None
    assert [e.name for e in tree.list_dir(adir, None, 10)] == [".eio", "tree"]
    assert tree.lookup(adir, "..") is None
    inner = tree.lookup(adir, "tree")
    assert inner is not None and tree.lookup(inner, "c") is None
    assert tree.lookup(inner, "top.txt") is not None
    assert "its empty directories are not shown" in caplog.text
