"""The outbox's parts without a mount: the namespace (pure), the committer's schedule (a
fake clock and a fake save: no sleeps), and the operations on a real local lake awaited
directly, as ops calls them (no pyfuse3 objects); the read log's pruning of readers that
are gone, and one real mount that shows the daemon prunes at start.
tests/test_t6_fs_outbox.py copies into a real mount."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from elliptio import Lake
from elliptio.errors import ConfigError
from elliptio.ids import new_id
from elliptiofs import procinfo
from elliptiofs.outbox import Change, Committer, Failed, Journal, Namespace, Outbox, Refused
from elliptiofs.outbox.committer import RETRY_MAX
from elliptiofs.outbox.namespace import (
    COMMITTING,
    ERROR,
    PENDING,
    RECOVERED,
    RECOVERED_STATE,
    STAGING,
    Item,
)
from elliptiofs.readlog import ReadLog, prune_ended, scope_ended, scope_for

ANDY = SimpleNamespace(uid=1000, gid=1000, pid=os.getpid(), umask=0o022)
BRENDA = SimpleNamespace(uid=1001, gid=1001, pid=os.getpid(), umask=0o077)
ROOT = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def names(ns: Namespace, directory: Item | None = None) -> list[str]:
    return [e.name for e in ns.listing(directory or ns.root, None, 100)]


def code(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    with pytest.raises(OSError) as info:
        fn(*args, **kwargs)
    return info.value.errno


def make_ns(clock: Clock | None = None) -> Namespace:
    return Namespace(uid=0, gid=0, clock=clock or Clock(), owner_name=lambda uid: f"u{uid}")


# -- the namespace ------------------------------------------------------------------------------
def test_create_owner_mode_and_refusals():
    ns = make_ns()
    f = ns.create(ns.root, "model.pth", "file", 0o666, ANDY)
    assert (f.uid, f.gid, f.mode, f.parent) == (1000, 1000, 0o644, ns.root)
    assert f.node.path == ("outbox", f"#{f.sid}") and ns.item_of(f.node) is f
    d = ns.create(ns.root, "run42", "dir", 0o777, BRENDA)
    assert d.mode == 0o700 and names(ns) == ["model.pth", "run42"]
    assert code(ns.create, ns.root, "model.pth", "file", 0o644, ANDY) == errno.EEXIST
    assert code(ns.create, ns.root, RECOVERED, "dir", 0o755, ANDY) == errno.EPERM
    assert code(ns.create, ns.recovered, "x", "file", 0o644, ANDY) == errno.EPERM
    assert code(ns.create, f, "x", "file", 0o644, ANDY) == errno.ENOTDIR
    # outbox/ is sticky: anyone creates there; inside brenda's directory only she (and root)
    assert code(ns.create, d, "x", "file", 0o644, ANDY) == errno.EACCES
    assert ns.create(d, "x", "file", 0o644, BRENDA).parent is d
    assert ns.create(d, "y", "file", 0o644, ROOT).uid == 0
    assert ns.top_of(d.children["x"]) is d and ns.top_of(ns.root) is None
    # changing an entry while it commits is EBUSY
    d.state = COMMITTING
    assert code(ns.create, d, "z", "file", 0o644, BRENDA) == errno.EBUSY
    assert code(ns.check_not_committing, d.children["x"]) == errno.EBUSY


def test_unlink_and_rmdir_rules():
    ns = make_ns()
    d = ns.create(ns.root, "run", "dir", 0o755, ANDY)
    sub = ns.create(d, "sub", "dir", 0o755, ANDY)
    deep = ns.create(sub, "deep.bin", "file", 0o644, ANDY)
    ns.create(ns.root, "mine", "file", 0o644, ANDY)
    assert code(ns.remove, ns.root, "run", ANDY, directory=False) == errno.EISDIR
    assert code(ns.remove, ns.root, "mine", ANDY, directory=True) == errno.ENOTDIR
    assert code(ns.remove, ns.root, "run", ANDY, directory=True) == errno.ENOTEMPTY
    assert code(ns.remove, ns.root, "nothing", ANDY, directory=False) == errno.ENOENT
    # sticky like /tmp: another user cannot delete andy's entries; root can
    assert code(ns.remove, ns.root, "mine", BRENDA, directory=False) == errno.EPERM
    assert code(ns.remove, sub, "deep.bin", BRENDA, directory=False) == errno.EACCES
    assert ns.remove(ns.root, "mine", ROOT, directory=False)[0].name == "mine"
    assert ns.remove(sub, "deep.bin", ANDY, directory=False) == [deep]
    assert deep.sid not in ns.items and d in ns.dirty  # the entry changed
    assert ns.remove(d, "sub", ANDY, directory=True) == [sub]
    assert code(ns.remove, ns.root, RECOVERED, ROOT, directory=True) == errno.ENOENT
    # forget drops everything below, deepest first, and out of the dirty set
    top = ns.create(ns.root, "tree", "dir", 0o755, ANDY)
    a = ns.create(top, "a", "dir", 0o755, ANDY)
    b = ns.create(a, "b", "file", 0o644, ANDY)
    ns.touch(b)
    assert top in ns.dirty
    assert ns.forget(top) == [a, b, top] and top not in ns.dirty
    assert names(ns) == ["run"]


def test_rename_rules():
    ns = make_ns()
    d = ns.create(ns.root, "d", "dir", 0o755, ANDY)
    inner = ns.create(d, "inner", "dir", 0o755, ANDY)
    f = ns.create(ns.root, ".f.XXXXXX", "file", 0o644, ANDY)
    g = ns.create(ns.root, "g", "file", 0o644, ANDY)
    full = ns.create(ns.root, "full", "dir", 0o755, ANDY)
    ns.create(full, "x", "file", 0o644, ANDY)
    assert ns.rename(ns.root, "g", ns.root, "g", 0, ANDY) is None  # onto itself
    assert code(ns.rename, ns.root, "d", inner, "d", 0, ANDY) == errno.EINVAL
    assert code(ns.rename, ns.root, "g", ns.root, "d", 0, ANDY) == errno.EISDIR
    assert code(ns.rename, ns.root, "d", ns.root, "g", 0, ANDY) == errno.ENOTDIR
    assert code(ns.rename, ns.root, "inner", ns.root, "x", 0, ANDY) == errno.ENOENT
    assert code(ns.rename, d, "inner", ns.root, "full", 0, ANDY) == errno.ENOTEMPTY
    assert code(ns.rename, ns.root, "g", ns.root, RECOVERED, 0, ANDY) == errno.EPERM
    assert code(ns.rename, ns.root, "g", ns.root, "h", 2, ANDY) == errno.EINVAL  # exchange
    assert code(ns.rename, ns.root, "g", ns.root, ".f.XXXXXX", 1, ANDY) == errno.EEXIST
    assert code(ns.rename, ns.root, "g", ns.root, "h", 0, BRENDA) == errno.EPERM
    # rsync's temporary replaces the file it was written for
    moved = ns.rename(ns.root, ".f.XXXXXX", ns.root, "g", 0, ANDY)
    assert moved == (f, [g]) and f.name == "g" and g.sid not in ns.items
    assert f in ns.dirty and names(ns) == ["d", "full", "g"]
    # into a directory: the directory's entry changes, the name leaves outbox/
    assert ns.rename(ns.root, "g", d, "g", 0, ANDY) == (f, [])
    assert ns.top_of(f) is d and d in ns.dirty and names(ns, d) == ["g", "inner"]
    # an entry moved back out of .recovered/ stages again
    r = ns.create(ns.root, "r", "file", 0o644, ANDY)
    ns.recover(r)
    assert r.state == RECOVERED_STATE and names(ns, ns.recovered) == ["r"]
    assert RECOVERED in names(ns)
    assert code(ns.create, ns.recovered, "x", "file", 0o644, ANDY) == errno.EPERM
    ns.rename(ns.recovered, "r", ns.root, "r", 0, ANDY)
    assert r.state == STAGING and r.error is None and RECOVERED not in names(ns)
    d.state = COMMITTING
    assert code(ns.rename, d, "g", ns.root, "g", 0, ANDY) == errno.EBUSY


def test_touch_quiet_clock_sidecars_and_xattrs():
    clock = Clock()
    ns = make_ns(clock)
    model = ns.create(ns.root, "model.pth", "file", 0o644, ANDY)
    side = ns.create(ns.root, "model.pth.eio.yaml", "file", 0o644, ANDY)
    clock.now = 200.0
    model.state, model.error = ERROR, "bad sidecar"
    ns.touch(side)  # the entry a sidecar describes changes with it
    assert model.changed == side.changed == 200.0 and {model, side} <= ns.dirty
    assert model.state == STAGING and model.error is None
    model.state, model.error = PENDING, "store down"
    ns.touch(model, reset=False)  # a close: the quiet period restarts, the state stays
    assert model.state == PENDING
    assert ns.sidecars(model) == [("model.pth.eio.yaml", side)]
    assert ns.sidecar_of(model) is side
    model.xattrs["user.eio.type"] = b"model"
    assert ns.xattrs(model) == {"user.eio.type": b"model", "user.eio.state": b"pending",
                                "user.eio.error": b"store down", "user.eio.owner": b"u1000"}
    model.scopes.append("session:x:1:2")
    assert ns.scopes_in_use() == {"session:x:1:2"}
    link, consumed, dropped = ns.replace_by_link(model, "01m885enepz71bzjbdwt9kmdr2")
    assert consumed == [side] and dropped == [model, side] and names(ns) == ["model.pth"]
    assert ns.link_target(link) == "../artifacts/01m885enepz71bzjbdwt9kmdr2"
    assert ns.xattrs(link)["user.eio.id"] == b"01m885enepz71bzjbdwt9kmdr2"
    assert ns.scopes_in_use() == set()
    assert code(ns.link_target, ns.root) == errno.EINVAL
    assert code(ns.item_of, model.node) == errno.ENOENT


# -- the committer ------------------------------------------------------------------------------
class Harness:
    """A committer over a namespace with a fake clock, a fake save and a set of open
    entries; *outcomes* says what the next saves do (None: saved)."""

    def __init__(self, quiet: float = 2.0, retry: float = 10.0) -> None:
        self.clock = Clock()
        self.ns = make_ns(self.clock)
        self.open: set[Item] = set()
        self.saved: list[str] = []
        self.outcomes: list[Exception | None] = []
        self.recorded: list[tuple[str, str]] = []
        self.c = Committer(self.ns, quiet=quiet, retry=retry, save=self.save,
                           record=lambda i: self.recorded.append((i.name, i.state)),
                           is_open=lambda top: top in self.open, clock=self.clock)

    async def save(self, top: Item) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.saved.append(top.name)
        self.ns.replace_by_link(top, "01m885enepz71bzjbdwt9kmdr2")

    def file(self, name: str, parent: Item | None = None) -> Item:
        item = self.ns.create(parent or self.ns.root, name, "file", 0o644, ANDY)
        self.ns.touch(item)  # written
        return item

    async def step(self) -> list[str]:
        """What one tick of the scheduler starts, committed one after the other."""
        ready = self.c.ready()
        for top in ready:
            assert top.state == COMMITTING
            await self.c.commit(top)
        return [t.name for t in ready]


def run(fn: Callable[[], Awaitable[Any]]) -> None:
    trio.run(fn)


def test_an_entry_commits_after_the_quiet_period():
    h = Harness()

    async def main() -> None:
        model = h.file("model.pth")
        h.clock.now += 1.9
        assert await h.step() == []
        h.ns.touch(model)  # written again: the quiet period starts again
        h.clock.now += 1.9
        assert await h.step() == []
        h.clock.now += 0.1
        assert await h.step() == ["model.pth"]
        assert h.saved == ["model.pth"] and h.recorded == [("model.pth", COMMITTING)]
        assert model.done is not None and model.done.is_set()
        h.clock.now += 100
        assert await h.step() == []  # committed once

    run(main)


def test_never_by_itself_hidden_names_sidecars_empty_dirs_recovered():
    h = Harness()

    async def main() -> None:
        h.file(".model.pth.XXXXXX")
        h.file("x.eio.yaml")
        empty = h.ns.create(h.ns.root, "empty", "dir", 0o755, ANDY)
        h.ns.touch(empty)
        rec = h.file("rec")
        h.ns.recover(rec)
        h.clock.now += 100
        assert await h.step() == [] and h.saved == []
        assert h.ns.dirty == set()  # none of them is looked at again until it changes
        h.file("f", empty)  # a file makes the directory committable
        h.clock.now += 2
        assert await h.step() == ["empty"]

    run(main)


def test_a_sidecar_beside_the_entry_holds_it_back():
    h = Harness()

    async def main() -> None:
        h.file("model.pth")
        h.clock.now += 1.5
        side = h.file("model.pth.eio.yaml")  # copied after the entry: it restarts both
        h.clock.now += 1.5
        assert await h.step() == []
        h.open.add(side)
        h.clock.now += 10
        assert await h.step() == []  # the sidecar is still being written
        h.open.clear()
        assert await h.step() == ["model.pth"] and h.saved == ["model.pth"]

    run(main)


def test_nothing_commits_while_a_handle_is_open():
    h = Harness()

    async def main() -> None:
        d = h.ns.create(h.ns.root, "run42", "dir", 0o755, ANDY)
        h.file("a.txt", d)
        h.open.add(d)  # a handle on something in it
        h.clock.now += 1000
        assert await h.step() == []
        with pytest.raises(OSError) as info:
            await h.c.trigger(d.children["a.txt"])
        assert info.value.errno == errno.EBUSY and h.saved == []
        h.open.clear()
        assert await h.step() == ["run42"]

    run(main)


def test_a_failed_save_is_retried_with_doubling_backoff_up_to_the_cap():
    h = Harness(retry=10.0)

    async def main() -> None:
        model = h.file("model.pth")
        h.outcomes = [Failed("the store is down")] * 9
        h.clock.now += 2
        assert await h.step() == ["model.pth"]
        assert model.state == PENDING and model.retry_delay == 10.0
        assert model.error == "the store is down (retrying in 10 s)"
        assert h.recorded[-1] == ("model.pth", PENDING)
        delays = [10.0]
        for _ in range(8):
            h.clock.now = model.retry_at - 0.01
            assert await h.step() == []  # not before its time
            h.open.add(model)
            h.clock.now = model.retry_at
            assert await h.step() == []  # nor while it is open
            h.open.clear()
            assert await h.step() == ["model.pth"]
            delays.append(model.retry_delay)
        assert delays == [10, 20, 40, 80, 160, 320, 600, 600, 600]
        assert RETRY_MAX == 600 and model.state == PENDING
        h.clock.now = model.retry_at
        assert await h.step() == ["model.pth"] and h.saved == ["model.pth"]

    run(main)


def test_a_change_retries_a_pending_entry_afresh():
    h = Harness(retry=10.0)

    async def main() -> None:
        model = h.file("model.pth")
        h.outcomes = [Failed("down"), Failed("down")]
        h.clock.now += 2
        await h.step()
        h.clock.now = model.retry_at
        await h.step()
        assert model.retry_delay == 20
        h.ns.touch(model)  # written again: staging, the backoff starts over
        assert model.state == STAGING and model.retry_delay == 0
        h.outcomes = [Failed("down")]
        h.clock.now += 2
        assert await h.step() == ["model.pth"] and model.retry_delay == 10

    run(main)


def test_the_trigger_commits_at_once_and_reports_the_outcome():
    h = Harness()

    async def main() -> None:
        model = h.file("model.pth")  # no time passes: no quiet period for the trigger
        await h.c.trigger(model)
        assert h.saved == ["model.pth"]
        bad = h.file("bad")
        h.outcomes = [Refused("sidecar bad.eio.yaml is not valid YAML")]
        with pytest.raises(OSError) as info:
            await h.c.trigger(bad)
        assert info.value.errno == errno.EINVAL and bad.state == ERROR
        assert "not valid YAML" in str(info.value)
        h.clock.now += 100
        assert await h.step() == []  # refused: waits for a change
        down = h.file("down")
        h.outcomes = [Failed("the store is down")]
        with pytest.raises(OSError) as info:
            await h.c.trigger(down)
        assert info.value.errno == errno.EIO and down.state == PENDING
        empty = h.ns.create(h.ns.root, "empty", "dir", 0o755, ANDY)
        with pytest.raises(OSError) as info:
            await h.c.trigger(empty)
        assert info.value.errno == errno.EINVAL
        with pytest.raises(OSError) as info:
            await h.c.trigger(h.ns.root.children["model.pth"])  # the link
        assert info.value.errno == errno.EINVAL

    run(main)


def test_a_trigger_during_a_commit_waits_for_it():
    h = Harness()
    release = trio.Event()

    async def slow_save(top: Item) -> None:
        await release.wait()
        h.saved.append(top.name)
        h.ns.replace_by_link(top, "01m885enepz71bzjbdwt9kmdr2")

    h.c.save = slow_save

    async def main() -> None:
        model = h.file("model.pth")
        h.clock.now += 2
        (top,) = h.c.ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.c.commit, top)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(h.c.trigger, model)
            await trio.testing.wait_all_tasks_blocked()
            assert h.saved == []
            release.set()
        assert h.saved == ["model.pth"]  # once

    run(main)


def test_the_scheduler_loop_on_trio_virtual_time():
    """run() itself, on trio's mock clock: virtual seconds, no real sleep."""

    async def main() -> None:
        h = Harness()
        h.clock = trio.current_time  # type: ignore[assignment]
        h.ns.clock = h.c.clock = trio.current_time
        async with trio.open_nursery() as nursery:
            await nursery.start(h.c.run)
            h.file("model.pth")
            await trio.sleep(1.5)
            assert h.saved == []
            await trio.sleep(0.7)
            assert h.saved == ["model.pth"]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the operations, on a real lake, without a mount -------------------------------------------
@pytest.fixture
def outbox(lake: Lake, tmp_path: Path):
    settings = SimpleNamespace(spool=str(tmp_path / "spool"), outbox_quiet=2,
                               outbox_retry=10)
    box = Outbox(lake, None, settings)  # type: ignore[arg-type]
    yield box
    box.close()


def test_operations_answer_plain_values(outbox: Outbox, lake: Lake):
    me = SimpleNamespace(uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), umask=0o022)
    committed: list[str] = []
    outbox.on_commit = lambda aid, *a, **k: committed.append(aid)

    async def main() -> None:
        root = outbox.root.node
        node, fh = await outbox.create(root, "model.pth", 0o666, os.O_WRONLY, me)
        assert await outbox.write(fh, 0, b"weights") == 7
        await outbox.release(fh)
        a = outbox.attrs(node)
        assert a is not None and stat.S_ISREG(a.mode) and a.mode & 0o777 == 0o644
        assert (a.size, a.nlink, a.uid, a.entry_timeout) == (7, 1, me.uid, 0.0)
        await outbox.setattr(node, Change(mode=0o100600, size=5), me)
        a = outbox.attrs(node)
        assert a is not None and a.mode & 0o777 == 0o600 and a.size == 5
        space = outbox.statfs()
        assert space.block_size > 0 and 0 <= space.available <= space.blocks
        await outbox.setxattr(node, "user.eio.commit", b"1", me)
        link = outbox.lookup(root, "model.pth", me)
        assert link is not None and outbox.attrs(node) is None  # a new inode
        (aid,) = committed
        la = outbox.attrs(link)
        assert la is not None and stat.S_ISLNK(la.mode)
        assert outbox.readlink(link) == f"../artifacts/{aid}"
        assert la.size == len(outbox.readlink(link))
        art = lake.get(aid)
        assert art is not None and art.files["model.pth"].read_bytes() == b"weigh"

    trio.run(main)


# -- the read log's pruning ---------------------------------------------------------------------
def ended_process() -> int:
    """The pid of a child of ours that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_scope_ended():
    me, uid = os.getpid(), os.getuid()
    assert not scope_ended(scope_for(me, uid, "pid"), procinfo.sessions())
    assert not scope_ended(scope_for(me, uid, "session"), procinfo.sessions())
    assert not scope_ended(f"session:{procinfo.BOOT}:{os.getsid(me)}:gone",
                           procinfo.sessions())  # a session whose leader left: we are in it
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        pid_scope = scope_for(child.pid, uid, "pid")
        session_scope = scope_for(child.pid, uid, "session")
        assert session_scope.split(":")[2] == str(child.pid)
        assert not scope_ended(pid_scope, procinfo.sessions())
        assert not scope_ended(session_scope, procinfo.sessions())
        assert not scope_ended(f"session:{procinfo.BOOT}:{child.pid}:gone",
                               procinfo.sessions())
    finally:
        child.kill()  # by pid: our child
        child.wait()
    assert scope_ended(pid_scope, procinfo.sessions())
    assert scope_ended(session_scope, procinfo.sessions())
    assert scope_ended(f"session:{procinfo.BOOT}:{child.pid}:gone", procinfo.sessions())
    assert not scope_ended(f"session:{procinfo.BOOT}:{child.pid}:gone", None)  # unknown
    assert scope_ended(f"pid:another:{me}:{procinfo.read_start_time(me)}", set())  # a boot
    for never in (f"uid:{uid}", "uid:7", "s1", "pid:x", f"pid:{procinfo.BOOT}:{me}:"):
        assert not scope_ended(never, set())


def test_pruning_drops_readers_that_are_gone_and_keeps_what_is_staged(tmp_path):
    log = ReadLog(str(tmp_path / "r.sqlite"))
    uid, gone = os.getuid(), ended_process()
    mine = scope_for(os.getpid(), uid, "session")
    ended = [f"pid:{procinfo.BOOT}:{gone}:12345", f"session:{procinfo.BOOT}:{gone}:gone",
             f"session:otherboot:{gone}:1"]
    staged = f"pid:{procinfo.BOOT}:{gone}:777"  # ended, but a staged entry's writer
    recent = f"pid:{procinfo.BOOT}:{gone}:999"  # ended a moment ago
    ids = [new_id() for _ in range(3)]
    for scope in (*ended, staged, recent, mine, f"uid:{uid}"):
        log.record(scope, ids[0])
        log.record(scope, ids[1])
    with contextlib.closing(sqlite3.connect(log.path)) as db, db:
        db.execute("UPDATE reads SET first = first - 7200 WHERE scope != ?", (recent,))
    assert set(log.ended_scopes(3600)) == {*ended, staged}
    assert set(log.ended_scopes(0)) == {*ended, staged, recent}

    async def main() -> int:
        return await prune_ended(log, lambda: {staged}, age=3600)

    # trio's mock clock: the wait for cached start times to expire is virtual
    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == 6
    assert log.scopes() == sorted([staged, recent, mine, f"uid:{uid}"])
    assert log.artifacts_for(staged) == ids[:2] and log.artifacts_for(mine) == ids[:2]
    log.record(ended[0], ids[2])  # what it remembered as written is forgotten too
    assert log.artifacts_for(ended[0]) == [ids[2]]
    log.close()


@pytest.mark.fuse
def test_the_daemon_prunes_the_read_log_at_start(lake_env, mount_factory, tmp_path):
    """A writer's session that ended with an entry still staged keeps its reads across a
    restart; the records of other readers that are gone are dropped when the daemon
    starts."""
    readlog = str(tmp_path / "readlog.sqlite")
    env = {**lake_env, "ELLIPTIO_READLOG": readlog, "ELLIPTIO_OUTBOX_QUIET": "600"}
    m = mount_factory(env, name="prune")
    writer = subprocess.run(
        [sys.executable, "-c", "import os, sys; from elliptiofs.readlog import scope_for; "
         "print(scope_for(os.getpid(), os.getuid()));"
         "open(os.path.join(sys.argv[1], '.staged'), 'w').write('x')",
         str(m.path / "outbox")], start_new_session=True, capture_output=True, text=True,
        timeout=60, check=True)
    writer_scope = writer.stdout.strip()
    assert writer_scope.startswith("session:")
    m.unmount()
    gone = ended_process()
    pruned = f"session:{procinfo.BOOT}:{gone}:gone"
    live = scope_for(os.getpid(), os.getuid(), "session")
    log = ReadLog(readlog)
    aid = new_id()
    for scope in (pruned, writer_scope, live):
        log.record(scope, aid)
    with contextlib.closing(sqlite3.connect(readlog)) as db, db:
        db.execute("UPDATE reads SET first = first - 7200")
    m2 = mount_factory(env, name="prune")
    assert os.listdir(m2.path / "outbox/.recovered") == [".staged"]
    deadline = time.monotonic() + 30
    while log.artifacts_for(pruned):
        assert time.monotonic() < deadline, "the daemon did not prune the read log"
        time.sleep(0.1)
    assert log.artifacts_for(writer_scope) == [aid] and log.artifacts_for(live) == [aid]
    log.close()


# -- the journal --------------------------------------------------------------------------------
def test_the_journal_recovers_entries_once_and_keeps_them_across_restarts(tmp_path, caplog):
    """What was staged when the daemon stopped comes back under .recovered/, with its
    metadata and bytes; a second restart leaves it there (it used to move .recovered/
    into itself: outbox/.recovered/.recovered, a loop for find)."""

    def start() -> tuple[Journal, Namespace]:
        journal, ns = Journal(tmp_path / "spool"), make_ns()
        journal.load(ns)
        return journal, ns

    journal, ns = start()
    d = ns.create(ns.root, "run", "dir", 0o755, ANDY)
    f = ns.create(d, "a.txt", "file", 0o644, ANDY)
    f.xattrs["user.eio.type"], f.scopes = b"data", ["session:x:1:2"]
    for item in (d, f):
        journal.persist(item)
    journal.data_path(f).write_bytes(b"abc")
    with pytest.raises(ConfigError, match="in use by another"):  # one daemon per spool
        Journal(tmp_path / "spool")
    journal.close()
    for _ in range(2):
        journal, ns = start()
        assert names(ns) == [RECOVERED] and names(ns, ns.recovered) == ["run"]
        run = ns.recovered.children["run"]
        (a,) = run.children.values()
        assert run.state == RECOVERED_STATE and "before this entry was committed" in run.error
        assert (a.size, a.xattrs, a.scopes) == (3, {"user.eio.type": b"data"},
                                                ["session:x:1:2"])
        assert journal.data_path(a).read_bytes() == b"abc"
        journal.close()
    assert sum("was not committed" in r.getMessage() for r in caplog.records) == 1


def test_a_missing_journal_keeps_every_staged_byte(tmp_path, caplog):
    """The journal is gone (deleted, a spool restored without it) while data/ still holds
    staged bytes: each file comes back as .recovered/unnamed-<sid>, owned by the spool
    file's owner, with its bytes; the next start keeps it (the journal knows it now).
    Data files a journal with rows does not know are the bytes of deleted or committed
    entries, and go."""
    spool = tmp_path / "spool"
    journal, ns = Journal(spool), make_ns()
    journal.load(ns)
    d = ns.create(ns.root, "run", "dir", 0o755, ANDY)
    inner = ns.create(d, "a.txt", "file", 0o644, ANDY)
    top = ns.create(ns.root, "model.pth", "file", 0o644, BRENDA)
    empty = ns.create(ns.root, "empty.txt", "file", 0o644, ANDY)
    for item in (d, inner, top, empty):
        journal.persist(item)
    journal.data_path(inner).write_bytes(b"inner bytes")
    journal.data_path(top).write_bytes(b"weights" * 1000)
    journal.data_path(empty).write_bytes(b"")
    journal.close()
    for f in spool.glob("journal.sqlite*"):
        f.unlink()
    sids = sorted([inner.sid, top.sid, empty.sid])
    expected = {inner.sid: b"inner bytes", top.sid: b"weights" * 1000, empty.sid: b""}
    for start in range(2):
        journal, ns = Journal(spool), make_ns()
        journal.load(ns)
        assert names(ns) == [RECOVERED]
        assert names(ns, ns.recovered) == sorted([f"unnamed-{s}" for s in sids]
                                                 + (["new.txt"] if start else []))
        for sid in sids:
            item = ns.recovered.children[f"unnamed-{sid}"]
            st = journal.data_path(item).stat()
            assert item.sid == sid and journal.data_path(item).read_bytes() == expected[sid]
            assert (item.uid, item.size, item.kind) == (st.st_uid, len(expected[sid]), "file")
            assert item.state == RECOVERED_STATE and "journal was missing" in item.error
        if start == 0:  # a new entry beside them, to see that what the journal knows stays
            staged = ns.create(ns.root, "new.txt", "file", 0o644, ANDY)
            journal.persist(staged)
            journal.data_path(staged).write_bytes(b"new")
            orphan = journal.data_path(staged).with_name("99999")  # a deleted entry's bytes
            orphan.write_bytes(b"deleted")
        else:
            assert journal.data_path(ns.recovered.children["new.txt"]).read_bytes() == b"new"
        journal.close()
    assert not orphan.exists()  # the journal had rows and did not know it
    assert sum("journal" in r.getMessage() and "was missing" in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records) == 1


def test_a_version_1_journal_is_upgraded_in_place(tmp_path):
    """A journal written before the writers' uids were recorded opens, its rows kept: a
    sidecar in it counts when its creator is the entry's owner."""
    spool = tmp_path / "spool"
    (spool / "data").mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(spool / "journal.sqlite")) as db, db:
        db.executescript(
            "CREATE TABLE items (sid INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name TEXT "
            "NOT NULL, kind TEXT NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, mode "
            "INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, state TEXT NOT NULL, artifact "
            "TEXT, error TEXT, xattrs TEXT NOT NULL, scopes TEXT NOT NULL, writers TEXT "
            "NOT NULL); CREATE TABLE schema (version INTEGER NOT NULL);"
            "INSERT INTO schema VALUES (1);"
            "INSERT INTO items VALUES (5, 0, 'x.bin', 'file', 1000, 1000, 420, 1, "
            "'staging', NULL, NULL, '{\"user.eio.type\": \"6d\"}', '[]', '[]');")
    (spool / "data/5").write_bytes(b"x")
    journal, ns = Journal(spool), make_ns()
    journal.load(ns)
    item = ns.recovered.children["x.bin"]
    assert (item.writer_uids, item.xattr_uids) == ([], {})
    assert item.xattrs_set_by(1000) == {"user.eio.type": b"m"}
    assert journal.data_path(item).read_bytes() == b"x"
    journal.close()
    with contextlib.closing(sqlite3.connect(spool / "journal.sqlite")) as db:
        assert db.execute("SELECT version FROM schema").fetchall() == [(2,)]


# -- only the owner's metadata counts; another user's staged tree is closed ----------------
def test_only_the_owners_sidecars_count_and_move_the_entry():
    clock = Clock()
    ns = make_ns(clock)
    model = ns.create(ns.root, "model.pth", "file", 0o644, ANDY)
    theirs = ns.create(ns.root, "model.pth.eio.yaml", "file", 0o644, BRENDA)
    model.state, model.error = ERROR, "refused"
    clock.now = 200.0
    ns.touch(theirs)  # brenda writes her sidecar: andy's entry neither waits nor retries
    assert model.changed == 100.0 and (model.state, model.error) == (ERROR, "refused")
    assert ns.sidecar_of(model) is None and ns.sidecars(model) == []
    assert ns.sidecars(model, owners=False) == [("model.pth.eio.yaml", theirs)]
    d = ns.create(ns.root, "run", "dir", 0o755, ANDY)
    inside = ns.create(d, ".eio.yaml", "file", 0o644, ANDY)
    inside.writer_uids = [ANDY.uid]
    assert ns.sidecars(d) == [("run/.eio.yaml", inside)]
    inside.writer_uids.append(ROOT.uid)  # root opened it for writing: no longer andy's alone
    assert ns.sidecars(d) == [] and ns.sidecars(d, owners=False) == [("run/.eio.yaml", inside)]
    link, consumed, dropped = ns.replace_by_link(model, "01m885enepz71bzjbdwt9kmdr2")
    assert consumed == [] and dropped == [model]  # brenda's sidecar is not consumed
    assert ns.root.children["model.pth.eio.yaml"] is theirs and theirs.sid in ns.items


def test_another_users_sidecar_does_not_hold_an_entry_back():
    h = Harness()

    async def main() -> None:
        h.file("model.pth")
        theirs = h.ns.create(h.ns.root, "model.pth.eio.yaml", "file", 0o644, BRENDA)
        h.clock.now += 1.5
        h.ns.touch(theirs)  # brenda keeps writing, and keeps it open
        h.open.add(theirs)
        h.clock.now += 0.5
        assert await h.step() == ["model.pth"] and h.saved == ["model.pth"]

    run(main)


def write_file(outbox: Outbox, parent: Item, name: str, data: bytes, who: Any) -> Item:
    """*who* creates *name* in *parent* and writes *data* into it (closed)."""

    async def main() -> Item:
        node, fh = await outbox.create(parent.node, name, 0o644, os.O_WRONLY, who)
        await outbox.write(fh, 0, data)
        await outbox.release(fh)
        return outbox.ns.item_of(node)

    return trio.run(main)


def commit_code(outbox: Outbox, item: Item, who: Any) -> int:
    """The trigger as *who*: 0 when it committed, else the errno."""
    try:
        trio.run(outbox.setxattr, item.node, "user.eio.commit", b"1", who)
    except OSError as exc:
        return exc.errno or -1
    return 0


def artifact_of(outbox: Outbox, lake: Lake, name: str) -> Any:
    link = outbox.ns.root.children[name]
    assert link.kind == "link", f"{name} was not committed"
    art = lake.get(link.artifact)
    assert art is not None
    return art


def test_another_users_sidecar_and_xattrs_are_ignored_and_do_not_block(
        outbox: Outbox, lake: Lake, populated_parent: str, caplog):
    parent = populated_parent
    root = outbox.root
    model = write_file(outbox, root, "model.pth", b"weights", ANDY)
    theirs = write_file(outbox, root, "model.pth.eio.yaml",
                        f"type: evil\ntags: [pwned]\nbased_on: [{parent}]\n".encode(), BRENDA)
    trio.run(outbox.setxattr, model.node, "user.eio.type", b"model", ANDY)
    trio.run(outbox.setxattr, model.node, "user.eio.tags", b"rooted", ROOT)  # root's
    assert commit_code(outbox, model, ANDY) == 0
    art = artifact_of(outbox, lake, "model.pth")
    assert (art.info, art.tags, art.based_on) == ({"type": "model"}, [], [])
    assert root.children["model.pth.eio.yaml"] is theirs  # left alone, still brenda's
    (line,) = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert "model.pth of" in line and "sidecar model.pth.eio.yaml" in line
    assert "user.eio.tags (set by" in line and "user.eio.type" not in line
    # brenda's invalid sidecar beside andy's entry does not block it
    data = write_file(outbox, root, "data.bin", b"data", ANDY)
    write_file(outbox, root, "data.bin.eio.yaml", b"type: [unclosed\n", BRENDA)
    assert commit_code(outbox, data, ANDY) == 0
    assert artifact_of(outbox, lake, "data.bin").files["data.bin"].read_bytes() == b"data"
    # andy's own sidecar counts; once root has rewritten it, it no longer does
    for name, rewrite, info in (("mine.bin", False, {"type": "mine"}),
                                ("theirs.bin", True, {})):
        item = write_file(outbox, root, name, b"x", ANDY)
        side = write_file(outbox, root, f"{name}.eio.yaml", b"type: mine\n", ANDY)
        if rewrite:
            async def rewrite_as_root(side: Item = side) -> None:
                fh = await outbox.open(side.node, os.O_WRONLY | os.O_TRUNC, ROOT)
                await outbox.write(fh, 0, b"type: root's\n")
                await outbox.release(fh)

            trio.run(rewrite_as_root)
        assert commit_code(outbox, item, ANDY) == 0
        assert artifact_of(outbox, lake, name).info == info, name
        assert (f"{name}.eio.yaml" in root.children) == rewrite  # consumed when it counted


@pytest.fixture
def populated_parent(lake: Lake, tmp_path: Path) -> str:
    (tmp_path / "parent.csv").write_text("a\n")
    return lake.save([str(tmp_path / "parent.csv")], based_on=[]).id


def test_lookup_and_stat_inside_another_users_staged_directory_are_refused(outbox: Outbox):
    async def main() -> None:
        run_dir = await outbox.mkdir(outbox.root.node, "run", 0o755, ANDY)
        node, fh = await outbox.create(run_dir, "a.txt", 0o644, os.O_WRONLY, ANDY)
        await outbox.release(fh)
        listing = code(outbox.opendir, run_dir, BRENDA)
        assert listing == errno.EACCES
        assert code(outbox.lookup, run_dir, "a.txt", BRENDA) == listing
        assert code(outbox.lookup, run_dir, "missing", BRENDA) == listing  # no hint either
        assert code(outbox.check_stat, node, BRENDA) == listing
        for who in (ANDY, ROOT):  # the owner, and root
            assert outbox.lookup(run_dir, "a.txt", who) is node
            assert outbox.lookup(run_dir, "missing", who) is None
            outbox.check_stat(node, who)
        # outbox/ is like /tmp: anyone sees and stats the top-level entries
        assert outbox.lookup(outbox.root.node, "run", BRENDA) is run_dir
        outbox.check_stat(run_dir, BRENDA)
        outbox.check_stat(outbox.root.node, BRENDA)

    trio.run(main)


BOMB = (b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + b"".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n".encode()
                   for p, c in zip("abcdefg", "bcdefgh")))


def test_a_yaml_bomb_sidecar_is_refused_fast_and_the_entry_kept(outbox: Outbox, lake: Lake):
    """A sidecar of aliases expanding to 10**8 nodes (a few hundred bytes) is refused
    unparsed; the entry stays staged with its bytes, and commits once the sidecar is
    fixed. A sidecar over the size bound is refused unread."""
    assert len(BOMB) < 400
    item = write_file(outbox, outbox.root, "bomb.bin", b"precious", ANDY)
    side = write_file(outbox, outbox.root, "bomb.bin.eio.yaml", BOMB, ANDY)
    started = time.monotonic()
    assert commit_code(outbox, item, ANDY) == errno.EINVAL
    assert time.monotonic() - started < 10  # generous: it takes milliseconds
    assert item.state == ERROR and "sidecar bomb.bin.eio.yaml" in item.error
    assert "expands to more than" in item.error
    assert outbox.journal.data_path(item).read_bytes() == b"precious"
    big = write_file(outbox, outbox.root, "big.bin", b"x", ANDY)
    write_file(outbox, outbox.root, "big.bin.eio.yaml", b"#" * (64 << 10) + b"\n", ANDY)
    assert commit_code(outbox, big, ANDY) == errno.EINVAL
    assert "sidecar big.bin.eio.yaml" in big.error and "at most 65536" in big.error

    async def fix() -> None:
        fh = await outbox.open(side.node, os.O_WRONLY | os.O_TRUNC, ANDY)
        await outbox.write(fh, 0, b"type: fixed\n")
        await outbox.release(fh)

    trio.run(fix)
    assert commit_code(outbox, item, ANDY) == 0
    art = artifact_of(outbox, lake, "bomb.bin")
    assert art.info == {"type": "fixed"} and art.files["bomb.bin"].read_bytes() == b"precious"
