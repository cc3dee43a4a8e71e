"""A staged object of the outbox (:class:`Item`) and the vocabulary every part of the
outbox shares: the special sids, the sidecar names, the states of an entry, the xattrs the
outbox computes, and :func:`refuse` (an ``OSError(errno, message)`` that ops answers with
that errno). Pure: nothing here touches a file, the journal or the kernel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from ..nodes import Kind, Node

if TYPE_CHECKING:
    import trio

#: sid of outbox/ itself and of the virtual outbox/.recovered/
ROOT_SID, RECOVERED_SID = 0, -1
RECOVERED = ".recovered"
SIDECAR_SUFFIX = ".eio.yaml"
DIR_SIDECAR = ".eio.yaml"

#: states of a top-level entry (``user.eio.state``)
STAGING, COMMITTING, PENDING, ERROR, COMMITTED, RECOVERED_STATE = (
    "staging", "committing", "pending", "error", "committed", "recovered")
#: xattrs the outbox computes; users cannot set them
READ_ONLY_XATTRS = ("user.eio.state", "user.eio.error", "user.eio.owner", "user.eio.id")
TRIGGER = "user.eio.commit"
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def refuse(code: int, message: str) -> OSError:
    """An error for the caller: ops answers it with *code*."""
    return OSError(code, message)


class Caller(Protocol):
    """Who asks (pyfuse3's request context has these)."""

    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def pid(self) -> int: ...
    @property
    def umask(self) -> int: ...


class Item:
    """One staged object (or a committed link, or outbox/ and .recovered/ themselves)."""

    __slots__ = ("sid", "parent", "name", "kind", "uid", "gid", "mode", "mtime_ns", "size",
                 "state", "artifact", "error", "xattrs", "xattr_uids", "scopes", "writers",
                 "writer_uids", "children", "node", "changed", "retry_at", "retry_delay",
                 "done")

    def __init__(self, sid: int, parent: Item | None, name: str, kind: str, *, uid: int = 0,
                 gid: int = 0, mode: int = 0o644, mtime_ns: int = 0,
                 changed: float = 0.0) -> None:
        self.sid = sid
        self.parent = parent
        self.name = name
        self.kind = kind  # file | dir | link
        self.uid, self.gid, self.mode = uid, gid, mode
        self.mtime_ns = mtime_ns or time.time_ns()
        self.size = 0
        self.state = STAGING
        self.artifact: str | None = None
        self.error: str | None = None
        self.xattrs: dict[str, bytes] = {}
        self.xattr_uids: dict[str, int] = {}  # who set each xattr (the kernel's uid)
        self.scopes: list[str] = []  # the writers' read scopes (lineage)
        self.writers: list[str] = []  # the writers' command lines (provenance)
        self.writer_uids: list[int] = []  # the uids that created it or opened it to write
        self.children: dict[str, Item] | None = {} if kind == "dir" else None
        kinds = {"file": Kind.AFILE, "dir": Kind.OUTBOX, "link": Kind.LINK}
        self.node = Node(kinds[kind], ("outbox",) if sid == ROOT_SID
                         else ("outbox", f"#{sid}"), mtime_ns=self.mtime_ns)
        self.changed = changed  # the quiet period counts from here (Namespace.clock)
        self.retry_at = 0.0
        self.retry_delay = 0.0
        self.done: trio.Event | None = None  # set while committing

    def __repr__(self) -> str:
        return f"Item({self.sid}, {self.kind}, {self.name!r}, {self.state})"

    def written_only_by(self, uid: int) -> bool:
        """Did *uid* alone create this item and open it for writing (the uids the kernel
        reported)? What a sidecar says counts only when its entry's owner wrote it."""
        return self.uid == uid and all(u == uid for u in self.writer_uids)

    def xattrs_set_by(self, uid: int) -> dict[str, bytes]:
        """The ``user.*`` attributes *uid* set (a journal older than the record of who
        set them: the item's owner)."""
        return {n: v for n, v in self.xattrs.items() if self.xattr_uids.get(n, self.uid) == uid}

    def walk(self) -> Iterator[tuple[str, Item]]:
        """(relative path, item) of every item below this directory."""
        for name, child in sorted((self.children or {}).items()):
            yield name, child
            if child.children is not None:
                for rel, sub in child.walk():
                    yield f"{name}/{rel}", sub

    def with_below(self) -> list[Item]:
        """This item and every item below it."""
        return [self, *(i for _, i in self.walk())] if self.children is not None else [self]
