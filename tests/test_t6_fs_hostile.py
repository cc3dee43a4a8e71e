"""Readers re-check, on the mount: rows an older catalogue holds that break the store's
rules are never served, and substituted store bytes are never read as a complete file
(tests/fixtures/hostile.py plants them). One real mount, real programs; then the in-order
check itself, without a mount, against reads completing out of order.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import trio

from elliptio.errors import IntegrityError
from elliptiofs import reader as reader_mod
from elliptiofs.inorder import InOrderCheck
from elliptiofs.reader import Reader
from tests.fixtures.hostile import FINE, LOG_RECORDED, LOG_STORED, plant


def _errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"{fn.__name__}{args} did not fail")


def cat(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["cat", str(path)], capture_output=True, timeout=60)


@pytest.mark.fuse
def test_the_mount_refuses_what_an_older_catalogue_holds(lake, lake_env, mount_factory,
                                                         tmp_path):
    h = plant(lake, tmp_path / "work")
    m = mount_factory(lake_env)
    art = m.path / "artifacts"
    planted = art / h.planted["id"]

    # a path no save writes is not listed (nor found); the others are, refused or not
    assert sorted(os.listdir(planted)) == [".eio", "fine.txt", "future.txt", "stolen.yaml"]
    assert not (planted / "abs").exists()
    assert sorted(os.listdir(planted / ".eio/logs")) == ["pip_freeze.txt"]
    # an object that is another artifact's metadata.yaml, or a newer artifact's file
    for name in ("stolen.yaml", "future.txt"):
        assert _errno(Path.read_bytes, planted / name) == errno.EIO, name
        assert cat(planted / name).stdout == b""
        assert "user.eio.url" not in os.listxattr(planted / name)
    assert (planted / "fine.txt").read_bytes() == FINE  # the innocent file beside them
    # a log whose bytes do not match
    res = cat(planted / ".eio/logs/pip_freeze.txt")
    assert res.returncode != 0 and b"Input/output error" in res.stderr
    assert LOG_STORED not in res.stdout and LOG_RECORDED not in res.stdout
    # an artifact whose prefix is another user's: its files are not listed, its
    # metadata.yaml is refused
    usurper = art / h.usurper["id"]
    assert sorted(os.listdir(usurper)) == [".eio"]
    assert _errno(Path.read_bytes, usurper / ".eio/metadata.yaml") == errno.EIO

    # substituted bytes: a read in order to the end fails on the read that would complete
    # the file, and never hands over all of it
    subst = art / h.subst.id
    for _ in range(2):  # a second try fails too (nothing of it is kept as good)
        res = cat(subst / "big.bin")
        assert res.returncode != 0 and b"Input/output error" in res.stderr
        assert len(res.stdout) < len(h.big_stored) and res.stdout != h.big_stored
        assert h.big_stored.startswith(res.stdout)  # what came before the refusal
    res = subprocess.run(["sha256sum", str(subst / "small.txt")], capture_output=True)
    assert res.returncode != 0 and b"Input/output error" in res.stderr
    assert hashlib.sha256(h.small_stored).hexdigest().encode() not in res.stdout
    # now known bad: every open is refused, even one that would only read a part
    assert _errno(os.open, str(subst / "big.bin"), os.O_RDONLY) == errno.EIO

    # a reader that jumps gets what it asks for; the page it left in the kernel's cache
    # does not complete a later read in order (the cache is dropped at that open)
    h2 = _substituted_again(lake, h, tmp_path)
    with open(art / h2.id / "big.bin", "rb") as f:
        f.seek(-100, os.SEEK_END)
        assert f.read() == h.big[-100:]  # the stored bytes there (recorded: ...b"!")
    res = cat(art / h2.id / "big.bin")
    assert res.returncode != 0 and len(res.stdout) < len(h.big)
    # a file whose bytes match is cached and read again, as before
    good = art / h.victim.id / "ok.txt"
    assert good.read_bytes() == good.read_bytes() == b"andy's own bytes\n"

    log_text = m.log_text()
    assert log_text.count(f"artifact {h.planted['id']} breaks the store's rules") == 1
    assert f"artifact {h.usurper['id']} breaks the store's rules" in log_text
    assert m.proc.poll() is None


def _substituted_again(lake, h, tmp_path):
    """Another artifact with big.bin, whose first bytes were substituted in the store."""
    from tests.fixtures.hostile import substitute

    (tmp_path / "again").mkdir()
    (tmp_path / "again/big.bin").write_bytes(h.big + b"!")  # not deduplicated with subst
    a = lake.save([str(tmp_path / "again/big.bin")], based_on=[])
    substitute(h.store_root, a.files["big.bin"].object, b"?" + h.big)
    return a


# -- the in-order check, without a mount ------------------------------------------------
class Bytes:
    """A store of one object's bytes, answering ranged reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_range(self, key: str, off: int, length: int) -> bytes:
        return self.data[off:off + length]


def test_reads_completing_out_of_order_are_checked_in_order(monkeypatch):
    """The kernel's concurrent read-ahead requests complete in any order: the read of the
    last range waits for the ones before it and is refused when the whole does not
    match; with the right bytes, every read gets its bytes whatever the order."""
    monkeypatch.setattr(reader_mod, "STREAM_AFTER", 1 << 40)  # every read one ranged GET
    data = os.urandom(300_000)
    recorded = hashlib.sha256(data).hexdigest()
    other = data[:-1] + bytes([data[-1] ^ 1])

    async def scenario(stored: bytes, order: list[int]) -> list[object]:
        r = Reader(lambda: Bytes(stored))  # type: ignore[arg-type, return-value]
        fh = r.open("k", len(data), recorded)
        ranges = [(i, min(100_000, len(data) - i)) for i in range(0, len(data), 100_000)]
        out: list[object] = [None] * len(ranges)
        gates = [trio.Event() for _ in ranges]
        real = r._read

        async def gated(stream, off, size):
            got = await real(stream, off, size)
            await gates[off // 100_000].wait()  # completes when the test says
            return got

        r._read = gated  # type: ignore[method-assign]

        async def one(i: int) -> None:
            try:
                out[i] = bytes(await r.read(fh, *ranges[i]))
            except IntegrityError as exc:
                out[i] = exc

        async with trio.open_nursery() as n:
            for i in range(len(ranges)):
                n.start_soon(one, i)
            await trio.sleep(0.01)  # all three started, in the kernel's order
            for i in order:
                gates[i].set()
                await trio.sleep(0.01)
        r.close()
        return out

    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]):
        good = trio.run(scenario, data, order)
        assert b"".join(good) == data, order  # type: ignore[arg-type]
        bad = trio.run(scenario, other, order)
        assert bad[:2] == [other[:100_000], other[100_000:200_000]], order
        assert isinstance(bad[2], IntegrityError), order  # the last range is refused


def test_the_check_follows_only_a_read_in_order():
    c = InOrderCheck(hashlib.sha256(b"abcdef").hexdigest(), 6)
    t = c.started(3, 6)
    c.arrived(t, 3, b"def")  # nothing before it in flight: a jump, not kept
    assert trio.run(c.settled, 3, b"def") is None and c.hashed == 0
    t = c.started(0, 3)
    c.arrived(t, 0, b"abc")
    assert c.hashed == 3 and c.verdict is None
    t = c.started(3, 6)
    c.arrived(t, 3, b"dXf")
    assert c.verdict is False
