"""pyfuse3 operations: translate each FUSE call into the tree, the reader, the read log or
the outbox, and map what they raise through one errno table.

Every handler logs its entry at DEBUG, delegates, and raises only ``FUSEError`` (the
:func:`_op` wrapper enforces it: an unexpected exception is logged with its traceback and
becomes EIO, and the daemon keeps serving).

The caching policy told to the kernel through entry/attr timeouts is
:mod:`elliptiofs.nodes`' (each node's timeouts; a missing name is a negative entry).

The outbox seam: every node under ``outbox/`` is handed to ``self.outbox`` (an
:class:`OutboxOps`, :class:`elliptiofs.outbox.Outbox` in the daemon) when there is one;
without it ``outbox/`` is an empty directory and every write anywhere is EROFS. The
outbox refuses with ``OSError(errno, message)``; the table answers with that errno.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import pyfuse3
import trio

from elliptio import errors

from .attrs import BLKSIZE, attrs_of, space_of
from .dirs import OpenDir
from .handles import Handles
from .inodes import Inodes
from .nodes import Entry, Kind, Node
from .reader import Reader
from .readlog import ReadLog, ReadLogError
from .readonly import ReadOnly
from .scan import ScanAhead
from .seam import OutboxOps, change_of, stale_names
from .tree import Tree
from .workers import Workers

log = logging.getLogger(__name__)

#: the one errno table (most specific first); anything else is a bug -> EIO + traceback
ERRNO: tuple[tuple[type[BaseException], int], ...] = (
    (errors.NotFound, errno.ENOENT),
    (errors.QueryError, errno.EINVAL),
    (errors.UsageError, errno.EINVAL),
    (errors.Immutable, errno.EROFS),
    (errors.IntegrityError, errno.EIO),
    (errors.StorageError, errno.EIO),
    (errors.CatalogueError, errno.EIO),
    (ReadLogError, errno.EIO),
    (errors.ElliptioError, errno.EIO),
    (trio.ClosedResourceError, errno.EBADF),
    # the outbox refuses with OSError(errno, message), and spool I/O fails with one
    # (ENOSPC, EIO): the caller gets that errno
    (OSError, -1),
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def errno_of(exc: BaseException) -> int | None:
    for cls, code in ERRNO:
        if isinstance(exc, cls):
            if code == -1:
                return getattr(exc, "errno", None) or errno.EIO
            return code
    return None


def _op(fn: F) -> F:
    """Log the call at DEBUG, map exceptions to FUSEError through :data:`ERRNO`."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: Operations, *args: Any) -> Any:
        log.debug("%s%r", name, args)
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            code = errno_of(exc)
            if code is None:
                log.exception("%s%r failed (a bug; answering EIO)", name, args)
                raise pyfuse3.FUSEError(errno.EIO) from None
            if isinstance(exc, errors.QueryError):
                log.warning("%s%r: malformed search query: %s", name, args, exc)
            elif code == errno.EIO:
                log.warning("%s%r: %s (answering EIO)", name, args, exc)
            else:
                log.debug("%s%r: %s", name, args, exc)
            raise pyfuse3.FUSEError(code) from None

    return wrapper  # type: ignore[return-value]


class Operations(pyfuse3.Operations):
    """The mount's FUSE operations. See the module docstring."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, reader: Reader, readlog: ReadLog | None,
                 catalogue_workers: Workers, *, scope: str = "session",
                 inline_catalogue: bool = True,
                 outbox: OutboxOps | None = None, scan: ScanAhead | None = None) -> None:
        super().__init__()
        #: everything not under outbox/: the tree, the reader, the read log, the scan
        self.lake = ReadOnly(tree, reader, readlog, catalogue_workers, scope=scope,
                             inline_catalogue=inline_catalogue, scan=scan)
        self.tree, self.reader, self.readlog, self.scan = tree, reader, readlog, scan
        self.outbox = outbox
        self.inodes = Inodes(tree.root())
        self._dirs: dict[int, OpenDir] = {}
        #: open files, the reader's or the outbox's (its outbox is fixed here)
        self.files = Handles(reader, outbox)

    # -- helpers ---------------------------------------------------------------------
    def _attrs(self, ino: int, node: Node) -> pyfuse3.EntryAttributes:
        a = attrs_of(node, self.outbox)
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.generation = 0
        e.entry_timeout, e.attr_timeout = a.entry_timeout, a.attr_timeout
        e.st_mode, e.st_size, e.st_nlink = a.mode, a.size, a.nlink
        e.st_uid, e.st_gid = a.uid, a.gid
        e.st_rdev = 0
        e.st_blksize = BLKSIZE
        e.st_blocks = (e.st_size + 511) // 512
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
        return e

    async def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        node = await self.lake.sized(self.inodes.node_for(node))
        return self._attrs(self.inodes.ref(node), node)

    def _outbox(self, node: Node) -> OutboxOps:
        """The outbox for a node under outbox/, else EROFS: the rest is read-only."""
        if node.in_outbox and self.outbox is not None:
            return self.outbox
        raise pyfuse3.FUSEError(errno.EROFS)

    # -- names -----------------------------------------------------------------------
    @_op
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode)
        text = os.fsdecode(name)
        if parent.in_outbox:
            node = self.outbox.lookup(parent, text, ctx) if self.outbox else None
        else:
            node = await self.lake.lookup(parent, text)
        if node is None:
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0  # a negative entry: the kernel caches the absence
            negative.entry_timeout = parent.negative_timeout()
            return negative
        return await self._entry(node)

    @_op
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext
                      ) -> pyfuse3.EntryAttributes:
        node = await self.lake.sized(self.inodes.get(inode))
        if node.in_outbox and self.outbox is not None:
            self.outbox.check_stat(node, ctx)  # inside a staged directory: its owner's
        return self._attrs(inode, node)

    @_op
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.inodes.get(inode)
        if node.in_outbox and self.outbox is not None:
            return os.fsencode(self.outbox.readlink(node))
        if node.kind is not Kind.LINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(node.link_target())

    # -- directories -------------------------------------------------------------------
    @_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.inodes.get(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if node.in_outbox and self.outbox is not None:
            self.outbox.opendir(node, ctx)  # staged directories: their owner's only
        fh = self.files.new()
        self._dirs[fh] = OpenDir(node)
        return fh

    async def _list(self, node: Node, after: str | None, limit: int) -> list[Entry]:
        if node.in_outbox:
            return self.outbox.list_dir(node, after, limit) if self.outbox else []
        return await self.lake.list_dir(node, after, limit)

    @_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        d = self._dirs[fh]
        off = start_id
        while True:
            entry = await d.entry_at(off, self._list)
            if entry is None:
                return
            node = await self.lake.sized(self.inodes.node_for(entry.node))
            # READDIRPLUS: every entry the kernel accepts takes a lookup reference
            ino = self.inodes.ref(node)
            if not pyfuse3.readdir_reply(token, os.fsencode(entry.name),
                                         self._attrs(ino, node), off + 1):
                self.inodes.forget(ino, 1)
                return
            off += 1

    @_op
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files -------------------------------------------------------------------------
    @_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext
                   ) -> pyfuse3.FileInfo:
        node = self.inodes.get(inode)
        if node.in_outbox:
            ofh = await self._outbox(node).open(node, flags, ctx)
            return pyfuse3.FileInfo(fh=self.files.add("outbox", ofh))
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.kind is not Kind.AFILE:
            raise pyfuse3.FUSEError(errno.EISDIR if node.is_dir else errno.EINVAL)
        their = await self.lake.open(node, ctx.pid, ctx.uid)  # page cache kept once checked
        return pyfuse3.FileInfo(fh=self.files.add("reader", their),
                                keep_cache=self.reader.keeps_cache(their))

    @_op
    async def read(self, fh: int, off: int, size: int  # type: ignore[override]
                   ) -> bytes | memoryview:
        return await self.files.read(fh, off, size)

    @_op
    async def flush(self, fh: int) -> None:
        await self.files.flush(fh)

    @_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.files.fsync(fh, datasync)

    @_op
    async def release(self, fh: int) -> None:
        await self.files.release(fh)

    @_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.files.write(fh, off, buf)

    # -- extended attributes ------------------------------------------------------------
    @_op
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.inodes.get(inode)
        key = os.fsdecode(name)
        if not key.startswith("user."):
            # Only the user.* namespace exists here; for the others the answer is the
            # VFS's own for a namespace a filesystem has no handler for (EOPNOTSUPP).
            # `ls -l` probes security.selinux of every entry, but remembers per device
            # that it is unsupported: one round trip per listing instead of one per entry.
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        if node.in_outbox and self.outbox is not None:
            value = self.outbox.getxattr(node, key, ctx)
        else:
            value = self.tree.xattrs(node).get(key) if key.startswith("user.eio.") else None
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    @_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        node = self.inodes.get(inode)
        if node.in_outbox and self.outbox is not None:
            return [os.fsencode(n) for n in self.outbox.listxattr(node, ctx)]
        return [os.fsencode(n) for n in self.tree.xattrs(node)]

    @_op
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        node = self.inodes.get(inode)
        await self._outbox(node).setxattr(node, os.fsdecode(name), value, ctx)

    @_op
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.inodes.get(inode)
        await self._outbox(node).removexattr(node, os.fsdecode(name), ctx)

    # -- everything that writes: the outbox's, EROFS elsewhere ----------------------------
    @_op
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode)
        outbox = self._outbox(node)
        await outbox.setattr(node, change_of(attr, fields), ctx)
        return self._attrs(inode, node)

    @_op
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.inodes.get(parent_inode)
        node, ofh = await self._outbox(parent).create(parent, os.fsdecode(name), mode,
                                                      flags, ctx)
        return pyfuse3.FileInfo(fh=self.files.add("outbox", ofh)), await self._entry(node)

    @_op
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode)
        node = await self._outbox(parent).mkdir(parent, os.fsdecode(name), mode, ctx)
        return await self._entry(node)

    @_op
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.inodes.get(parent_inode)
        await self._outbox(parent).unlink(parent, os.fsdecode(name), ctx)

    @_op
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.inodes.get(parent_inode)
        await self._outbox(parent).rmdir(parent, os.fsdecode(name), ctx)

    @_op
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        old = self.inodes.get(parent_inode_old)
        new = self.inodes.get(parent_inode_new)
        if not (old.in_outbox and new.in_outbox):
            raise pyfuse3.FUSEError(errno.EROFS)  # nothing moves into or out of the lake
        await self._outbox(old).rename(old, os.fsdecode(name_old), new,
                                       os.fsdecode(name_new), flags, ctx)

    @_op
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS if not self.inodes.get(parent_inode).in_outbox
                                else errno.EPERM)

    @_op
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS if not self.inodes.get(parent_inode).in_outbox
                                else errno.EPERM)

    @_op
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @_op
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        node = self.inodes.get(inode)
        if mode & os.W_OK and not node.in_outbox:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    @_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = BLKSIZE
        s.f_files = len(self.inodes)
        s.f_namemax = 255
        s.f_blocks, s.f_bfree, s.f_bavail, files_available = space_of(self.outbox)
        s.f_ffree = s.f_favail = files_available
        return s

    # -- after the outbox commits -------------------------------------------------------
    def artifact_committed(self, artifact_id: str, user: str, tags: Sequence[str], *,
                           created: datetime | None = None,
                           based_on: Sequence[str] = ()) -> None:
        """Drop the kernel's (negative) entries that a new artifact makes stale.

        Call on the trio thread after a commit; query directories expire by timeout
        anyway, this makes the new artifact visible at once through this mount.
        """
        names = stale_names(artifact_id, user, tags, created=created, based_on=based_on)
        for parent, name in names:
            self.invalidate_name(parent, name)

    def invalidate_name(self, parent: tuple[str, ...], name: str) -> None:
        """Make the kernel forget *name* in directory *parent* (if it holds that
        directory); asynchronous, so safe from inside a request handler."""
        ino = self.inodes.ino_of(parent)
        if ino is not None:
            pyfuse3.invalidate_entry_async(ino, os.fsencode(name), ignore_enoent=True)
