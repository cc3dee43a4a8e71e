"""The outbox seam: what :class:`~elliptiofs.ops.Operations` hands the outbox
(:class:`OutboxOps`), and which names a new artifact makes stale in the kernel's cache
(:func:`stale_names`, told to the kernel after a commit); a setattr's fields as the
outbox's :class:`~elliptiofs.outbox.Change` (:func:`change_of`).

Plain Python: pyfuse3's types appear in annotations only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from .nodes import Entry, Node
from .outbox import Attrs, Change, Space

if TYPE_CHECKING:
    import pyfuse3


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

    def lookup(self, parent: Node, name: str, ctx: pyfuse3.RequestContext
               ) -> Node | None: ...
    def check_stat(self, node: Node, ctx: pyfuse3.RequestContext) -> None: ...
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


def stale_names(artifact_id: str, user: str, tags: Sequence[str], *,
                created: datetime | None = None,
                based_on: Sequence[str] = ()) -> list[tuple[tuple[str, ...], str]]:
    """The (directory, name) pairs whose (negative) kernel entries a new artifact makes
    stale: its id under artifacts/ and based-on/, its user, tags, parents and dates."""
    names: list[tuple[tuple[str, ...], str]] = [
        (("artifacts",), artifact_id), (("based-on",), artifact_id),
        (("by-user",), user), (("by-user", user), artifact_id),
        *((("by-tag",), t) for t in tags), *((("by-tag", t), artifact_id) for t in tags),
        *((("based-on", p), artifact_id) for p in based_on)]
    if created is not None:
        y, m, d = (f"{created:%Y}", f"{created:%m}", f"{created:%d}")
        names += [(("by-date",), y), (("by-date", y), m), (("by-date", y, m), d),
                  (("by-date", y, m, d), artifact_id)]
    return names


def change_of(attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> Change:
    """The fields a setattr changes (None: left as they are)."""
    return Change(
        size=attr.st_size if fields.update_size else None,
        uid=attr.st_uid if fields.update_uid else None,
        gid=attr.st_gid if fields.update_gid else None,
        mode=attr.st_mode if fields.update_mode else None,
        mtime_ns=attr.st_mtime_ns if fields.update_mtime else None)
