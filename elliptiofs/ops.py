"""pyfuse3 operations: translate each FUSE call into the tree, the reader, the read log or
the outbox, and map what they raise through one errno table.

Every handler logs its entry at DEBUG, delegates, and raises only ``FUSEError`` (the
:func:`_op` wrapper enforces it: an unexpected exception is logged with its traceback and
becomes EIO, and the daemon keeps serving).

Caching policy, told to the kernel through entry/attr timeouts:

- artifact contents and the symlinks to them never change: long timeouts, and files are
  opened with ``keep_cache`` so the page cache survives across opens;
- query directories (by-user/<u>, search/<q>, ...) and names found missing in them: short
  timeouts; names missing inside an artifact are remembered long;
- a missing name is answered as a negative entry (``st_ino = 0`` with a timeout) rather
  than ENOENT, so the kernel caches it (shells and loaders probe names constantly).

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
from typing import Any, Protocol, TypeVar

import pyfuse3
import trio

from elliptio.errors import (
    CatalogueError,
    ElliptioError,
    Immutable,
    IntegrityError,
    NotFound,
    QueryError,
    StorageError,
    UsageError,
)

from .inodes import Inodes
from .nodes import Entry, Kind, Node, owner_of
from .outbox import Attrs, Change, Space
from .reader import Reader
from .readlog import ReadLog, ReadLogError, scope_for
from .scan import ScanAhead
from .tree import Tree
from .workers import Workers

log = logging.getLogger(__name__)

#: the one errno table (most specific first); anything else is a bug -> EIO + traceback
ERRNO: tuple[tuple[type[BaseException], int], ...] = (
    (NotFound, errno.ENOENT),
    (QueryError, errno.EINVAL),
    (UsageError, errno.EINVAL),
    (Immutable, errno.EROFS),
    (IntegrityError, errno.EIO),
    (StorageError, errno.EIO),
    (CatalogueError, errno.EIO),
    (ReadLogError, errno.EIO),
    (ElliptioError, errno.EIO),
    (trio.ClosedResourceError, errno.EBADF),
    # the outbox refuses with OSError(errno, message), and spool I/O fails with one
    # (ENOSPC, EIO): the caller gets that errno
    (OSError, -1),
)
#: directory entries fetched from the catalogue per page
PAGE = 1000
#: st_blksize: tools size their reads by it (cp, cat use max(128 KiB, st_blksize))
BLKSIZE = 1 << 20

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
            if isinstance(exc, QueryError):
                log.warning("%s%r: malformed search query: %s", name, args, exc)
            elif code == errno.EIO:
                log.warning("%s%r: %s (answering EIO)", name, args, exc)
            else:
                log.debug("%s%r: %s", name, args, exc)
            raise pyfuse3.FUSEError(code) from None

    return wrapper  # type: ignore[return-value]


class OutboxOps(Protocol):
    """What the outbox implements; :class:`Operations` hands it every node under
    ``outbox/`` (the ``outbox/`` directory itself included, as *parent*).

    Nodes it returns must have paths under ``("outbox", ...)`` and kinds the outbox
    chooses; ops gives them inode numbers from the shared
    :class:`~elliptiofs.inodes.Inodes` table and copies the plain values it answers
    (:class:`~elliptiofs.outbox.Attrs`, :class:`~elliptiofs.outbox.Space`) into pyfuse3's
    objects, and a setattr's fields into a :class:`~elliptiofs.outbox.Change`. File
    handles it returns are its own; ops maps them. Raise
    :mod:`elliptio.errors` exceptions or ``OSError(errno, message)``; ops maps them to
    errnos (an OSError to its own errno).
    """

    def lookup(self, parent: Node, name: str) -> Node | None: ...
    def list_dir(self, directory: Node, after: str | None, limit: int) -> list[Entry]: ...
    def opendir(self, node: Node, ctx: pyfuse3.RequestContext) -> None: ...
    def attrs(self, node: Node) -> Attrs | None: ...
    def readlink(self, node: Node) -> str: ...
    def statfs(self) -> Space: ...
    async def create(self, parent: Node, name: str, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[Node, int]: ...
    async def mkdir(self, parent: Node, name: str, mode: int,
                    ctx: pyfuse3.RequestContext) -> Node: ...
    async def open(self, node: Node, flags: int, ctx: pyfuse3.RequestContext) -> int: ...
    async def read(self, fh: int, off: int, size: int) -> bytes: ...
    async def write(self, fh: int, off: int, buf: bytes) -> int: ...
    async def flush(self, fh: int) -> None: ...
    async def fsync(self, fh: int, datasync: bool) -> None: ...
    async def release(self, fh: int) -> None: ...
    async def setattr(self, node: Node, change: Change,
                      ctx: pyfuse3.RequestContext) -> None: ...
    async def unlink(self, parent: Node, name: str, ctx: pyfuse3.RequestContext) -> None: ...
    async def rmdir(self, parent: Node, name: str, ctx: pyfuse3.RequestContext) -> None: ...
    async def rename(self, parent_old: Node, name_old: str, parent_new: Node, name_new: str,
                     flags: int, ctx: pyfuse3.RequestContext) -> None: ...
    def getxattr(self, node: Node, name: str, ctx: pyfuse3.RequestContext
                 ) -> bytes | None: ...
    def listxattr(self, node: Node, ctx: pyfuse3.RequestContext) -> list[str]: ...
    async def setxattr(self, node: Node, name: str, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None: ...
    async def removexattr(self, node: Node, name: str,
                          ctx: pyfuse3.RequestContext) -> None: ...


class _Dir:
    """An open directory: the current page of entries and the cursors of page starts
    (keyset paging: a FUSE offset maps to an entry of a page, never to a list index of
    the whole directory)."""

    __slots__ = ("node", "page", "page_off", "starts")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.page: list[Entry] = []
        self.page_off = 0
        self.starts: dict[int, str | None] = {0: None}


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
        self.tree = tree
        self.reader = reader
        self.readlog = readlog
        self.scope = scope
        self.inline_catalogue = inline_catalogue
        self.outbox = outbox
        self.scan = scan
        self.inodes = Inodes(tree.root())
        self._dirs: dict[int, _Dir] = {}
        self._files: dict[int, tuple[str, int]] = {}  # fh -> ("reader"|"outbox", their fh)
        self._next_fh = 1
        #: catalogue calls that do not run inline (the daemon shares it with the scan)
        self.catalogue_workers = catalogue_workers

    # -- helpers ---------------------------------------------------------------------
    async def _cat(self, fn: Callable[..., Any], *args: Any, heavy: bool = False) -> Any:
        """Run a catalogue call: inline on the trio thread when the catalogue is a local
        SQLite file and the call is an indexed lookup (~5 µs, less than a thread hop);
        in a worker thread for network catalogues and for searches."""
        if self.inline_catalogue and not heavy:
            return fn(*args)
        return await self.catalogue_workers.run(fn, *args)

    def _fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    async def _sized(self, node: Node) -> Node:
        """*node* with a known size (metadata.yaml's is learned from the store once)."""
        if node.kind is Kind.AFILE and node.size < 0:
            cached = self.tree.cached_metadata(node)
            if cached is not None:
                node.size = len(cached)
            else:
                await self.reader.run(self.tree.metadata_bytes, node)  # a store read
        return node

    def _attrs(self, ino: int, node: Node) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.generation = 0
        e.entry_timeout = e.attr_timeout = node.entry_timeout()
        e.st_mode = node.mode()
        if node.kind is Kind.AFILE:
            e.st_nlink = 1
            e.st_size = max(0, node.size)
        elif node.kind is Kind.LINK:
            e.st_nlink = 1
            e.st_size = len(node.link_target())
        else:
            e.st_nlink = 2
            e.st_size = 0
        e.st_uid, e.st_gid = owner_of(node.user)
        e.st_rdev = 0
        e.st_blksize = BLKSIZE
        e.st_blocks = (e.st_size + 511) // 512
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = node.mtime_ns
        if self.outbox is not None and node.in_outbox:
            a = self.outbox.attrs(node)
            if a is not None:  # None: forgotten by the outbox, not yet by the kernel
                e.entry_timeout, e.attr_timeout = a.entry_timeout, a.attr_timeout
                e.st_mode, e.st_size, e.st_nlink = a.mode, a.size, a.nlink
                e.st_uid, e.st_gid = a.uid, a.gid
                e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
                e.st_blocks = (e.st_size + 511) // 512
        return e

    async def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        node = await self._sized(self.inodes.node_for(node))
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
            node = self.outbox.lookup(parent, text) if self.outbox else None
        else:
            heavy = parent.kind is Kind.TOP and parent.path == ("search",)
            node = await self._cat(self.tree.lookup, parent, text, heavy=heavy)
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
        node = await self._sized(self.inodes.get(inode))
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
        fh = self._fh()
        self._dirs[fh] = _Dir(node)
        return fh

    async def _list(self, d: _Dir, after: str | None) -> list[Entry]:
        node = d.node
        if node.in_outbox:
            return self.outbox.list_dir(node, after, PAGE) if self.outbox else []
        heavy = node.kind is Kind.GROUP and node.path[0] == "search"
        entries: list[Entry] = await self._cat(self.tree.list_dir, node, after, PAGE,
                                               heavy=heavy)
        return entries

    async def _entry_at(self, d: _Dir, off: int) -> Entry | None:
        """The entry at FUSE offset *off*: from the current page, the next page (keyset:
        after the current page's last cursor), or, after a seekdir, the page that holds
        it (refetched from the nearest page start)."""
        if d.page_off <= off < d.page_off + len(d.page):
            return d.page[off - d.page_off]
        end = d.page_off + len(d.page)
        cursor: str | None
        if off == end and d.page:
            if len(d.page) < PAGE:
                return None  # the last page was short: no more entries
            start, cursor = end, d.page[-1].cursor
        else:
            start = max(s for s in d.starts if s <= off)
            cursor = d.starts[start]
        while True:
            page = await self._list(d, cursor)
            d.page, d.page_off = page, start
            d.starts[start] = cursor
            if off < start + len(page):
                return page[off - start]
            if len(page) < PAGE:
                return None
            start, cursor = start + len(page), page[-1].cursor

    @_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        d = self._dirs[fh]
        off = start_id
        while True:
            entry = await self._entry_at(d, off)
            if entry is None:
                return
            node = await self._sized(self.inodes.node_for(entry.node))
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
            fh = self._fh()
            self._files[fh] = ("outbox", ofh)
            return pyfuse3.FileInfo(fh=fh)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.kind is not Kind.AFILE:
            raise pyfuse3.FUSEError(errno.EISDIR if node.is_dir else errno.EINVAL)
        node = await self._sized(node)
        if node.user_file and (self.readlog is not None or self.scan is not None):
            scope = scope_for(ctx.pid, ctx.uid, self.scope)  # the reader, for both
            if self.readlog is not None:
                self._record_read(node, scope, ctx)
            if self.scan is not None:
                self.scan.opened(scope, node)
        assert node.object is not None
        fh = self._fh()
        self._files[fh] = ("reader", self.reader.open(node.object, node.size))
        # immutable content: keep the kernel's page cache across opens
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def _record_read(self, node: Node, scope: str, ctx: pyfuse3.RequestContext) -> None:
        assert self.readlog is not None and node.artifact is not None
        try:
            self.readlog.record(scope, node.artifact, pid=ctx.pid, uid=ctx.uid)
        except ReadLogError as exc:
            # reading must not fail because lineage cannot be written; someone must act
            log.warning("lineage of a read is lost: %s", exc)

    @_op
    async def read(self, fh: int, off: int, size: int  # type: ignore[override]
                   ) -> bytes | memoryview:
        # a memoryview of a fetched part is returned without copying (pyfuse3 takes any
        # buffer)
        kind, their = self._files[fh]
        if kind == "outbox":
            assert self.outbox is not None
            return await self.outbox.read(their, off, size)
        return await self.reader.read(their, off, size)

    @_op
    async def flush(self, fh: int) -> None:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.flush(their)

    @_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.fsync(their, datasync)

    @_op
    async def release(self, fh: int) -> None:
        kind, their = self._files.pop(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.release(their)
        elif kind == "reader":
            self.reader.release(their)

    @_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            return await self.outbox.write(their, off, buf)
        raise pyfuse3.FUSEError(errno.EROFS)

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
        elif not key.startswith("user.eio."):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        else:
            value = self.tree.xattrs(node).get(key)
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
        change = Change(
            size=attr.st_size if fields.update_size else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            mode=attr.st_mode if fields.update_mode else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None)
        await outbox.setattr(node, change, ctx)
        return self._attrs(inode, node)

    @_op
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.inodes.get(parent_inode)
        node, ofh = await self._outbox(parent).create(parent, os.fsdecode(name), mode,
                                                      flags, ctx)
        fh = self._fh()
        self._files[fh] = ("outbox", ofh)
        return pyfuse3.FileInfo(fh=fh), await self._entry(node)

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
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.inodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        if self.outbox is not None:
            # the spool's free space (what the outbox can take), in our block size
            space = self.outbox.statfs()
            scale = space.block_size / s.f_frsize if s.f_frsize else 1
            s.f_blocks = int(space.blocks * scale)
            s.f_bfree = int(space.free * scale)
            s.f_bavail = int(space.available * scale)
            s.f_ffree = s.f_favail = space.files_available
        return s

    # -- after the outbox commits -------------------------------------------------------
    def artifact_committed(self, artifact_id: str, user: str, tags: Sequence[str], *,
                           created: datetime | None = None,
                           based_on: Sequence[str] = ()) -> None:
        """Drop the kernel's (negative) entries that a new artifact makes stale.

        Call on the trio thread after a commit; query directories expire by timeout
        anyway, this makes the new artifact visible at once through this mount.
        """
        names: list[tuple[tuple[str, ...], str]] = [
            (("artifacts",), artifact_id), (("based-on",), artifact_id),
            (("by-user",), user), (("by-user", user), artifact_id),
            *((("by-tag",), t) for t in tags), *((("by-tag", t), artifact_id) for t in tags),
            *((("based-on", p), artifact_id) for p in based_on)]
        if created is not None:
            y, m, d = (f"{created:%Y}", f"{created:%m}", f"{created:%d}")
            names += [(("by-date",), y), (("by-date", y), m), (("by-date", y, m), d),
                      (("by-date", y, m, d), artifact_id)]
        for parent, name in names:
            self.invalidate_name(parent, name)

    def invalidate_name(self, parent: tuple[str, ...], name: str) -> None:
        """Make the kernel forget *name* in directory *parent* (if it holds that
        directory); asynchronous, so safe from inside a request handler."""
        ino = self.inodes.ino_of(parent)
        if ino is not None:
            pyfuse3.invalidate_entry_async(ino, os.fsencode(name), ignore_enoent=True)
