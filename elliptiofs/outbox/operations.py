"""The outbox's POSIX operations (:class:`Outbox`, the :class:`elliptiofs.ops.OutboxOps`
that ops hands every node under ``outbox/``): each asks the namespace, then does the I/O —
the staged bytes and the journal — and starts the quiet period again.

Answers are plain values (:class:`~.values.Attrs`, :class:`~.values.Space`) and changes
come in as plain values (:class:`~.values.Change`); ops copies them from and into
pyfuse3's objects, so nothing here needs pyfuse3. Everything runs on the trio thread
except the save itself and the parsing of its sidecars (worker threads) and fsync.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from elliptio import Lake
from elliptio.errors import ElliptioError, UsageError

from ..nodes import Entry, Node
from ..procinfo import command_line, killed_by
from ..readlog import ReadLog, scope_for
from ..settings import DaemonSettings
from .backlog import Backlog
from .committer import RETRY_MAX, Committer
from .journal import Journal
from .metadata import MAX_WRITERS, xattr_metadata
from .namespace import (
    ERROR,
    READ_ONLY_XATTRS,
    ROOT_SID,
    TRIGGER,
    Caller,
    Item,
    Namespace,
    refuse,
)
from .saving import Saver
from .values import Attrs, Change, Space

log = logging.getLogger(__name__)

#: kernel attribute cache of staged entries; entry timeout is 0 (a commit turns an entry
#: into a link, a new inode: the next path walk must see it)
ATTR_TIMEOUT = 1.0


class Handle:
    __slots__ = ("item", "fd", "pid", "writable", "wrote")

    def __init__(self, item: Item, fd: int, pid: int, writable: bool) -> None:
        self.item, self.fd, self.pid, self.writable = item, fd, pid, writable
        self.wrote = False


class Outbox:
    """The staging area behind ``outbox/`` (see the package docstring)."""

    def __init__(self, lake: Lake, readlog: ReadLog | None, settings: DaemonSettings, *,
                 scope: str = "session") -> None:
        self.lake = lake
        self.readlog = readlog
        self.scope = scope
        self.spool = Path(settings.spool)
        self.journal = Journal(self.spool)
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        # outbox/ itself is the daemon's, as stat shows it
        self.ns = Namespace(uid=os.getuid(), gid=os.getgid())
        try:
            self.journal.load(self.ns)
        except BaseException:
            self.journal.close()
            raise
        self.saver = Saver(lake, readlog, self.ns, self.journal)
        self.committer = Committer(self.ns, quiet=float(settings.outbox_quiet),
                                   retry=float(settings.outbox_retry), save=self._save,
                                   record=self.journal.persist, is_open=self._open_in)
        # saved while the catalogue failed: claimed again until it takes them
        self.backlog = Backlog(lake, retry=float(settings.outbox_retry), retry_max=RETRY_MAX,
                               on_catalogued=self._tell_kernel)
        self.root = self.ns.root
        # what the daemon wires in: ops.artifact_committed and a dentry invalidation
        self.on_commit: Callable[..., None] = lambda *a, **k: None
        self.invalidate: Callable[[tuple[str, ...], str], None] = lambda path, name: None

    def detach(self) -> None:
        """Stop telling the kernel about commits (the FUSE session is closing)."""
        self.on_commit = lambda *a, **k: None
        self.invalidate = lambda path, name: None

    def close(self) -> None:
        for h in self._handles.values():
            with contextlib.suppress(OSError):
                os.close(h.fd)
        self._handles.clear()
        self.journal.close()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The commit scheduler (:meth:`.committer.Committer.run`) and the catalogue's
        backlog (:meth:`.backlog.Backlog.run`)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.backlog.run)
            await nursery.start(self.committer.run)
            task_status.started()

    def scopes_in_use(self) -> set[str]:
        """Read scopes that staged entries will take their lineage from (keep them)."""
        return self.ns.scopes_in_use()

    # -- names and attributes -----------------------------------------------------------
    def lookup(self, parent: Node, name: str, ctx: Caller) -> Node | None:
        directory = self.ns.item_of(parent)
        self.ns.check_owner(directory, ctx)  # in a staged directory: as listing it
        child = (directory.children or {}).get(name)
        return child.node if child is not None else None

    def check_stat(self, node: Node, ctx: Caller) -> None:
        """Refuse a stat of what lies inside another user's staged directory (EACCES,
        as listing it): a lookup refused it already, but the kernel may still hold the
        inode from its owner's (a top-level entry is anyone's to stat, as in /tmp)."""
        try:
            item = self.ns.item_of(node)
        except OSError:
            return  # no longer staged: attrs() answers for it
        if item.parent is not None:  # outbox/ and .recovered/ are skipped by check_owner
            self.ns.check_owner(item.parent, ctx)

    def list_dir(self, directory: Node, after: str | None, limit: int) -> list[Entry]:
        return self.ns.listing(self.ns.item_of(directory), after, limit)

    def opendir(self, node: Node, ctx: Caller) -> None:
        item = self.ns.item_of(node)
        if item.sid > ROOT_SID:
            self.ns.check_owner(item, ctx)

    def attrs(self, node: Node) -> Attrs | None:
        """stat of *node*; None when it is no longer staged (committed, deleted) but the
        kernel has not forgotten it yet."""
        try:
            item = self.ns.item_of(node)
        except OSError:
            return None
        if item.kind == "file":
            mode, size = stat.S_IFREG | item.mode, item.size
        elif item.kind == "link":
            mode, size = stat.S_IFLNK | 0o777, len(self.ns.link_target(item))
        else:
            mode, size = stat.S_IFDIR | item.mode, 0
        return Attrs(mode=mode, size=size, nlink=2 if item.kind == "dir" else 1,
                     uid=item.uid, gid=item.gid, mtime_ns=item.mtime_ns,
                     entry_timeout=0.0 if item.sid > ROOT_SID else 1.0,
                     attr_timeout=ATTR_TIMEOUT)

    def readlink(self, node: Node) -> str:
        return self.ns.link_target(self.ns.item_of(node))

    def statfs(self) -> Space:
        """The spool's free space: what the outbox can take."""
        v = os.statvfs(self.spool)
        return Space(block_size=v.f_frsize, blocks=v.f_blocks, free=v.f_bfree,
                     available=v.f_bavail, files_available=v.f_favail)

    # -- creating, opening, I/O -----------------------------------------------------------
    def _note_writer(self, item: Item, ctx: Caller) -> bool:
        """Remember the writer's read scope (lineage) and command line (provenance)."""
        changed = False
        try:
            scope = scope_for(ctx.pid, ctx.uid, self.scope)
        except ElliptioError:
            scope = f"uid:{ctx.uid}"
        if scope not in item.scopes:
            item.scopes.append(scope)
            changed = True
        if ctx.uid not in item.writer_uids:  # whose sidecar this is (metadata.plan)
            item.writer_uids.append(ctx.uid)
            changed = True
        cmd = command_line(ctx.pid)
        if cmd not in item.writers and len(item.writers) < MAX_WRITERS:
            item.writers.append(cmd)
            changed = True
        return changed

    def _new(self, parent: Item, name: str, kind: str, mode: int, ctx: Caller) -> Item:
        item = self.ns.create(parent, name, kind, mode, ctx)
        self._note_writer(item, ctx)
        self.journal.persist(item)
        return item

    def _open_fd(self, item: Item, pid: int, writable: bool, trunc: bool = False) -> int:
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if trunc else 0)
        fd = os.open(self.journal.data_path(item), flags, 0o600)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(item, fd, pid, writable)
        return fh

    async def create(self, parent: Node, name: str, mode: int, flags: int,
                     ctx: Caller) -> tuple[Node, int]:
        p = self.ns.item_of(parent)
        existing = (p.children or {}).get(name)
        if existing is not None and existing.kind == "file" and not flags & os.O_EXCL:
            return existing.node, await self.open(existing.node, flags, ctx)
        item = self._new(p, name, "file", mode, ctx)
        return item.node, self._open_fd(item, ctx.pid, True, trunc=True)

    async def mkdir(self, parent: Node, name: str, mode: int, ctx: Caller) -> Node:
        return self._new(self.ns.item_of(parent), name, "dir", mode, ctx).node

    async def open(self, node: Node, flags: int, ctx: Caller) -> int:
        item = self.ns.item_of(node)
        if item.kind != "file":
            raise refuse(errno.EISDIR if item.kind == "dir" else errno.ELOOP, item.name)
        self.ns.check_owner(item, ctx)
        writable = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC))
        if writable:
            self.ns.check_not_committing(item)
            if self._note_writer(item, ctx):
                self.journal.persist(item)
        trunc = bool(flags & os.O_TRUNC) and writable
        fh = self._open_fd(item, ctx.pid, writable, trunc=trunc)
        if trunc:
            item.size = 0
            self.ns.touch(item)
        return fh

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self._handles[fh].fd, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self._handles[fh]
        if not h.writable:
            raise refuse(errno.EBADF, "not open for writing")
        # pwrite into the spool's page cache, inline on the trio thread: a thread hop
        # costs more than the copy (a kill of the daemon keeps what the kernel holds)
        n = os.pwrite(h.fd, buf, off)
        item = h.item
        if off + n > item.size:
            item.size = off + n
        h.wrote = True
        self.ns.touch(item)
        return n

    async def flush(self, fh: int) -> None:
        h = self._handles.get(fh)
        if h is None or not h.wrote:
            return
        sig = killed_by(h.pid)
        top = self.ns.top_of(h.item)
        if sig is not None and top is not None:
            # a close from a process that is dying of a signal: a partial copy
            top.state = ERROR
            top.error = (f"the writer (pid {h.pid}) was killed by signal {sig} while "
                         f"writing {h.item.name}: not committed (write it again, or "
                         f"setfattr -n {TRIGGER} -v 1 to commit it as it is)")
            self.journal.persist(top)
            log.warning("outbox: %s of %s: %s", top.name, self.ns.owner_name(top.uid),
                        top.error)

    async def fsync(self, fh: int, datasync: bool) -> None:
        fd = self._handles[fh].fd
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, fd)

    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is None:
            return
        os.close(h.fd)
        if h.writable:
            # the quiet period counts from the last close too; a partial copy marked by
            # flush() stays refused
            self.ns.touch(h.item, mtime=False, reset=False)

    def _open_in(self, top: Item) -> bool:
        return any(self.ns.top_of(h.item) is top for h in self._handles.values())

    async def setattr(self, node: Node, change: Change, ctx: Caller) -> None:
        item = self.ns.item_of(node)
        if item.sid <= ROOT_SID:
            raise refuse(errno.EPERM, "outbox/ itself cannot be changed")
        self.ns.check_owner(item, ctx, errno.EPERM)
        persist = False
        if change.size is not None:
            if item.kind != "file":
                raise refuse(errno.EISDIR, item.name)
            self.ns.check_not_committing(item)
            os.truncate(self.journal.data_path(item), change.size)
            item.size = change.size
            if ctx.uid not in item.writer_uids:
                item.writer_uids.append(ctx.uid)
                persist = True
            self.ns.touch(item)
        if change.uid is not None and change.uid not in (item.uid, 0xFFFFFFFF) \
                and ctx.uid != 0:
            raise refuse(errno.EPERM, "only root can give an entry away")
        # root's chown is accepted and ignored: the owner is the uid that wrote it
        if change.gid is not None:
            item.gid, persist = change.gid, True
        if change.mode is not None:
            item.mode, persist = stat.S_IMODE(change.mode), True
        if change.mtime_ns is not None:
            item.mtime_ns, persist = change.mtime_ns, True
        if persist and item.kind != "link":
            self.journal.persist(item)

    # -- removing and renaming ------------------------------------------------------------
    async def unlink(self, parent: Node, name: str, ctx: Caller) -> None:
        self.journal.delete(self.ns.remove(self.ns.item_of(parent), name, ctx,
                                           directory=False))

    async def rmdir(self, parent: Node, name: str, ctx: Caller) -> None:
        self.journal.delete(self.ns.remove(self.ns.item_of(parent), name, ctx,
                                           directory=True))

    async def rename(self, parent_old: Node, name_old: str, parent_new: Node, name_new: str,
                     flags: int, ctx: Caller) -> None:
        moved = self.ns.rename(self.ns.item_of(parent_old), name_old,
                               self.ns.item_of(parent_new), name_new, flags, ctx)
        if moved is None:
            return  # renamed onto itself
        item, dropped = moved
        self.journal.delete(dropped)
        self.journal.persist(item)

    # -- extended attributes --------------------------------------------------------------
    def getxattr(self, node: Node, name: str, ctx: Caller) -> bytes | None:
        """A ``user.*`` attribute (the other namespaces are refused before: ops)."""
        item = self.ns.item_of(node)
        self.ns.check_owner(item, ctx)
        return self.ns.xattrs(item).get(name)

    def listxattr(self, node: Node, ctx: Caller) -> list[str]:
        item = self.ns.item_of(node)
        if not self.ns.is_owner(item, ctx) and item.sid > ROOT_SID:
            return []
        return sorted(self.ns.xattrs(item))

    async def setxattr(self, node: Node, name: str, value: bytes, ctx: Caller) -> None:
        item = self.ns.item_of(node)
        if not name.startswith("user."):
            raise refuse(errno.EOPNOTSUPP, "only user.* attributes can be set in the outbox")
        if item.sid <= ROOT_SID:
            raise refuse(errno.EPERM, "set attributes on an entry, not on the outbox")
        self.ns.check_owner(item, ctx, errno.EPERM)
        if name == TRIGGER:
            await self.committer.trigger(item)
            return
        if name in READ_ONLY_XATTRS:
            raise refuse(errno.EPERM, f"{name} is set by the outbox")
        self.ns.check_not_committing(item)
        if name.startswith("user.eio."):
            try:
                xattr_metadata({name: value})  # refuse a bad value now, not at commit
            except UsageError as exc:
                raise refuse(errno.EINVAL, str(exc)) from None
        item.xattrs[name] = bytes(value)
        item.xattr_uids[name] = ctx.uid  # only the owner's count (metadata.plan)
        self.journal.persist(item)
        self.ns.touch(item, mtime=False)

    async def removexattr(self, node: Node, name: str, ctx: Caller) -> None:
        item = self.ns.item_of(node)
        self.ns.check_owner(item, ctx, errno.EPERM)
        if name not in item.xattrs:
            raise refuse(errno.ENODATA, name)
        self.ns.check_not_committing(item)
        del item.xattrs[name]
        item.xattr_uids.pop(name, None)
        self.journal.persist(item)
        self.ns.touch(item, mtime=False)

    # -- the commit itself ----------------------------------------------------------------
    async def _save(self, top: Item) -> None:
        """The committer's *save*: save *top*, then tell the kernel (through the daemon's
        hooks) that its name and its sidecar's changed and that the artifact exists."""
        parent = top.parent
        assert parent is not None
        artifact, names = await self.saver.save(top)
        for name in names:
            self.invalidate(parent.node.path, name)
        if artifact.catalogued:
            self._tell_kernel(artifact)
        else:  # in the store, not in the catalogue the mount answers from: not yet
            self.backlog.add(artifact)

    def _tell_kernel(self, artifact: Any) -> None:
        """The artifact is in the catalogue: the kernel's entries it makes stale go."""
        self.on_commit(artifact.id, artifact.user, artifact.tags, created=artifact.created,
                       based_on=artifact.based_on)
