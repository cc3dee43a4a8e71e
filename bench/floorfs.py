"""The floor of a pyfuse3 daemon: the bench's tree, served from memory, doing nothing else.

    python bench/floorfs.py MOUNTPOINT --ids FILE --big-size BYTES

A peer in ``bench_fuse.py``: the same shape of tree as elliptiofs shows there, through the
same binding (pyfuse3 + trio), with the same mount options, timeouts and kernel tuning
(``elliptiofs.kernel.when_initialised``), but no catalogue, no store, no lineage and no worker
threads: every answer comes from memory on the trio thread. What it takes for a workload
is what pyfuse3 and the kernel's FUSE path take for it, the least any pyfuse3 daemon can
take::

    by-user/bench/<id>  -> ../../artifacts/<id>    (symlinks, as in docs/mount.md, "Layout")
    artifacts/<id>/f.bin                           (4 KiB each)
    artifacts/big/big.bin                          (--big-size bytes)

*FILE* holds the ids, one per line. The bytes are random (one 8 MiB block repeated for
big.bin), not the store's: nothing here is compared, only timed. Unmount with
``fusermount3 -u`` (the daemon then exits); it mounts with ``auto_unmount``, so a killed
daemon leaves no mount behind.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from pathlib import Path

import pyfuse3
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from elliptiofs.kernel import when_initialised  # noqa: E402

SMALL_SIZE = 4096
BLOCK = 8 << 20
LONG = 300.0  # the timeouts elliptiofs gives immutable entries (and more than any run)
ROOT, BY_USER, BENCH, ARTIFACTS, BIG_DIR, BIG = 1, 2, 3, 4, 5, 6
FIRST = 16  # inodes from here: per id a link, a directory and a file


class Floor(pyfuse3.Operations):
    def __init__(self, ids: list[str], big_size: int) -> None:
        super().__init__()
        self.ids = ids
        self.index = {name.encode(): i for i, name in enumerate(ids)}
        self.big_size = big_size
        self.block = memoryview(os.urandom(BLOCK))
        self.small = [os.urandom(SMALL_SIZE) for _ in ids]
        n = len(ids)
        self.links = range(FIRST, FIRST + n)
        self.dirs = range(FIRST + n, FIRST + 2 * n)
        self.files = range(FIRST + 2 * n, FIRST + 3 * n)

    def attr(self, ino: int) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.entry_timeout = e.attr_timeout = LONG
        e.st_uid, e.st_gid = os.getuid(), os.getgid()
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = 0
        e.st_blksize = 1 << 20
        if ino in self.links:
            e.st_mode, e.st_nlink = stat.S_IFLNK | 0o777, 1
            e.st_size = len(self.target(ino))
        elif ino in self.files or ino == BIG:
            e.st_mode, e.st_nlink = stat.S_IFREG | 0o444, 1
            e.st_size = self.big_size if ino == BIG else SMALL_SIZE
        else:
            e.st_mode, e.st_nlink, e.st_size = stat.S_IFDIR | 0o555, 2, 0
        e.st_blocks = (e.st_size + 511) // 512
        return e

    def target(self, link: int) -> bytes:
        return b"../../artifacts/" + self.ids[link - self.links.start].encode()

    def children(self, ino: int) -> list[tuple[bytes, int]]:
        if ino == ROOT:
            return [(b"artifacts", ARTIFACTS), (b"by-user", BY_USER)]
        if ino == BY_USER:
            return [(b"bench", BENCH)]
        if ino == BENCH:
            return [(name.encode(), self.links[i]) for i, name in enumerate(self.ids)]
        if ino == ARTIFACTS:
            return [(b"big", BIG_DIR)] + [(name.encode(), self.dirs[i])
                                          for i, name in enumerate(self.ids)]
        if ino == BIG_DIR:
            return [(b"big.bin", BIG)]
        if ino in self.dirs:
            return [(b"f.bin", self.files[ino - self.dirs.start])]
        return []

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None
                      ) -> pyfuse3.EntryAttributes:
        return self.attr(inode)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        i = self.index.get(name)
        if parent_inode == BENCH and i is not None:
            return self.attr(self.links[i])
        if parent_inode == ARTIFACTS and i is not None:
            return self.attr(self.dirs[i])
        if parent_inode in self.dirs and name == b"f.bin":
            return self.attr(self.files[parent_inode - self.dirs.start])
        for child, ino in self.children(parent_inode) if parent_inode < FIRST else []:
            if child == name:
                return self.attr(ino)
        negative = pyfuse3.EntryAttributes()
        negative.st_ino, negative.entry_timeout = 0, LONG
        return negative

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        if inode not in self.links:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return self.target(inode)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self.children(fh)
        for k in range(start_id, len(entries)):
            name, ino = entries[k]
            if not pyfuse3.readdir_reply(token, name, self.attr(ino), k + 1):
                return

    async def releasedir(self, fh: int) -> None:
        pass

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext
                   ) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EROFS)
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        if fh == BIG:
            size = max(0, min(size, self.big_size - off))
            lo = off % BLOCK
            if lo + size <= BLOCK:
                return self.block[lo:lo + size]
            return bytes(self.block[lo:]) + bytes(self.block[:size - (BLOCK - lo)])
        return self.small[fh - self.files.start][off:off + size]

    async def flush(self, fh: int) -> None:
        pass

    async def release(self, fh: int) -> None:
        pass

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        # as elliptiofs answers: only user.* exists (ls -l asks security.selinux once)
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR if name.startswith(b"user.")
                                else errno.EOPNOTSUPP)


async def serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(when_initialised, mountpoint, lambda: None,
                           "fuse.elliptiofs-floor")
        await pyfuse3.main()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mountpoint")
    ap.add_argument("--ids", required=True, help="file with one artifact id per line")
    ap.add_argument("--big-size", type=int, required=True)
    args = ap.parse_args()
    ids = Path(args.ids).read_text().split()
    fs = Floor(ids, args.big_size)
    options = {"fsname=floorfs", "subtype=elliptiofs-floor", "auto_unmount", "noatime"}
    pyfuse3.init(fs, args.mountpoint, options)
    try:
        trio.run(serve, args.mountpoint)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
