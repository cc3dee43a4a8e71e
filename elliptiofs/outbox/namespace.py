"""The outbox's namespace, in memory: the staged entries (:class:`Item`), their names and
parents, their owners and the rules of who may do what to them.

Pure: nothing here touches a file, the journal, ``/proc`` or the kernel. The operations
(:mod:`.operations`) ask the namespace, then do the I/O (staged bytes, the journal) for
what it changed; the committer (:mod:`.committer`) reads the states and the quiet clock it
keeps. Refusals are ``OSError(errno, message)`` (:func:`refuse`), which ops answers with
that errno. *clock* (monotonic seconds) stamps when an entry last changed; *owner_name*
turns a uid into the user that messages and ``user.eio.owner`` name.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from ..nodes import Entry, Node
from ..procinfo import user_name
from .items import (  # the vocabulary, re-exported: the other parts import it from here
    COMMITTED,
    COMMITTING,
    DIR_SIDECAR,
    ERROR,
    PENDING,
    READ_ONLY_XATTRS,
    RECOVERED,
    RECOVERED_SID,
    RECOVERED_STATE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ROOT_SID,
    SIDECAR_SUFFIX,
    STAGING,
    TRIGGER,
    Caller,
    Item,
    refuse,
)

__all__ = ["COMMITTED", "COMMITTING", "DIR_SIDECAR", "ERROR", "PENDING", "READ_ONLY_XATTRS",
           "RECOVERED", "RECOVERED_SID", "RECOVERED_STATE", "RENAME_EXCHANGE",
           "RENAME_NOREPLACE", "ROOT_SID", "SIDECAR_SUFFIX", "STAGING", "TRIGGER", "Caller",
           "Item", "Namespace", "refuse"]


class Namespace:
    """``outbox/`` and everything staged in it. *uid*/*gid* own outbox/ itself (the
    daemon's); :attr:`dirty` holds the top-level entries changed since the committer
    last looked."""

    def __init__(self, *, uid: int, gid: int, clock: Callable[[], float] = time.monotonic,
                 owner_name: Callable[[int], str] = user_name) -> None:
        self.clock = clock
        self.owner_name = owner_name
        self.items: dict[int, Item] = {}
        self.dirty: set[Item] = set()
        self.next_sid = 1
        self.root = self.add(Item(ROOT_SID, None, "outbox", "dir", mode=0o1777, uid=uid,
                                  gid=gid, changed=clock()))
        self.recovered = self.add(Item(RECOVERED_SID, self.root, RECOVERED, "dir",
                                       mode=0o755, uid=uid, gid=gid, changed=clock()))
        # .recovered is listed only when it holds something

    # -- structure --------------------------------------------------------------------------
    def add(self, item: Item) -> Item:
        self.items[item.sid] = item
        self.next_sid = max(self.next_sid, item.sid + 1)
        return item

    def make(self, name: str, kind: str, *, uid: int, gid: int, mode: int) -> Item:
        """A new item with the next sid, not yet in any directory."""
        return self.add(Item(self.next_sid, None, name, kind, uid=uid, gid=gid, mode=mode,
                             changed=self.clock()))

    def attach(self, item: Item, parent: Item, name: str) -> None:
        assert parent.children is not None and self.root.children is not None
        item.parent, item.name = parent, name
        parent.children[name] = item
        if parent is self.recovered:
            self.root.children[RECOVERED] = self.recovered

    def detach(self, item: Item) -> None:
        parent = item.parent
        if parent is not None and parent.children is not None:
            parent.children.pop(item.name, None)
            if parent is self.recovered and not parent.children:
                assert self.root.children is not None
                self.root.children.pop(RECOVERED, None)

    def forget(self, item: Item) -> list[Item]:
        """Drop *item* and everything below it (deepest first); return what was dropped,
        whose journal rows and staged bytes the caller deletes."""
        dropped = [*(i for _, i in item.walk()), item] if item.children is not None \
            else [item]
        for sub in dropped:
            self.detach(sub)
            self.items.pop(sub.sid, None)
            self.dirty.discard(sub)
        return dropped

    @staticmethod
    def free_name(parent: Item, name: str) -> str:
        """*name*, or ``name~N`` when *parent* holds it already."""
        assert parent.children is not None
        n, candidate = 1, name
        while candidate in parent.children:
            candidate = f"{name}~{n}"
            n += 1
        return candidate

    def item_of(self, node: Node) -> Item:
        if node.path == ("outbox",):
            return self.root
        try:
            return self.items[int(node.path[1][1:])]
        except (KeyError, ValueError, IndexError):
            raise refuse(errno.ENOENT, f"{node} is no longer staged") from None

    def child(self, parent: Item, name: str) -> Item:
        child = (parent.children or {}).get(name)
        if child is None:
            raise refuse(errno.ENOENT, f"no {name!r} in the outbox")
        return child

    def listing(self, directory: Item, after: str | None, limit: int) -> list[Entry]:
        children = directory.children or {}
        names = sorted(n for n in children if after is None or n > after)[:limit]
        return [Entry(n, children[n].node, n) for n in names]

    def top_of(self, item: Item) -> Item | None:
        """The committable entry *item* belongs to (a child of outbox/ or .recovered/)."""
        while item.parent is not None and item.parent.sid > ROOT_SID:
            item = item.parent
        if item.parent is None or item.sid <= ROOT_SID:
            return None
        return item

    def sidecar_of(self, top: Item) -> Item | None:
        """The top-level ``<name>.eio.yaml`` beside *top*, if its owner wrote it (another
        user's sidecar neither describes the entry nor holds it back)."""
        side = (self.root.children or {}).get(top.name + SIDECAR_SUFFIX)
        return side if side is not None and side.written_only_by(top.uid) else None

    def sidecars(self, top: Item, *, owners: bool = True) -> list[tuple[str, Item]]:
        """(where, item) of the sidecars of *top*: beside it, then inside a directory —
        those its owner alone wrote, which count; with ``owners=False`` the others
        (another user's, or written by one: ignored)."""
        out = []
        parent = top.parent
        assert parent is not None and parent.children is not None
        beside = parent.children.get(top.name + SIDECAR_SUFFIX)
        if beside is not None and beside.kind == "file":
            out.append((beside.name, beside))
        if top.children is not None:
            inside = top.children.get(DIR_SIDECAR)
            if inside is not None and inside.kind == "file":
                out.append((f"{top.name}/{DIR_SIDECAR}", inside))
        return [(where, side) for where, side in out
                if side.written_only_by(top.uid) == owners]

    @staticmethod
    def has_files(top: Item) -> bool:
        return top.kind != "dir" or any(i.kind == "file" for _, i in top.walk())

    def scopes_in_use(self) -> set[str]:
        """The read scopes of every writer of anything staged (lineage still to come)."""
        return {s for i in self.items.values() if i.kind != "link" for s in i.scopes}

    def touch(self, item: Item, *, mtime: bool = True, reset: bool = True) -> None:
        """Something changed in *item*: its entry's quiet period starts again, and (with
        *reset*) a failed or refused commit is tried afresh."""
        if mtime:
            item.mtime_ns = time.time_ns()
        top = self.top_of(item)
        if top is None or top.kind == "link":
            return
        tops = [top]
        if top.name.endswith(SIDECAR_SUFFIX) and top.parent is not None:
            # the entry a sidecar describes changes with it (and waits for it)
            target = (top.parent.children or {}).get(top.name[:-len(SIDECAR_SUFFIX)])
            if target is not None and target.kind != "link" \
                    and top.written_only_by(target.uid):  # not another user's sidecar
                tops.append(target)
        for t in tops:
            t.changed = self.clock()
            if reset and t.state in (ERROR, PENDING):
                t.state, t.error = STAGING, None
                t.retry_delay = 0.0
            if t.parent is self.root:
                self.dirty.add(t)

    def recover(self, item: Item) -> None:
        """Move *item*, a top-level entry found uncommitted at start, under .recovered/."""
        was = item.state
        self.detach(item)
        self.attach(item, self.recovered, self.free_name(self.recovered, item.name))
        item.state = RECOVERED_STATE
        item.error = ("the daemon stopped while committing this entry; it may be "
                      f"saved already: check by-user/{self.owner_name(item.uid)}/ before "
                      "committing it again" if was == COMMITTING else
                      f"the daemon stopped before this entry was committed (it was {was})")

    # -- what the user sees -----------------------------------------------------------------
    def link_target(self, item: Item) -> str:
        if item.kind != "link":
            raise refuse(errno.EINVAL, f"{item.name} is not a symlink")
        depth = 1 if item.parent is self.root else 2
        return "../" * depth + f"artifacts/{item.artifact}"

    def xattrs(self, item: Item) -> dict[str, bytes]:
        """The user's ``user.*`` attributes and the ones the outbox computes."""
        out = dict(item.xattrs)
        if self.top_of(item) is item:
            out["user.eio.state"] = item.state.encode()
            if item.error:
                out["user.eio.error"] = item.error.encode()
            if item.artifact:
                out["user.eio.id"] = item.artifact.encode()
        if item.sid > ROOT_SID:
            out["user.eio.owner"] = self.owner_name(item.uid).encode()
        return out

    # -- permissions ------------------------------------------------------------------------
    @staticmethod
    def is_owner(item: Item, caller: Caller) -> bool:
        return caller.uid == 0 or caller.uid == item.uid

    def check_owner(self, item: Item, caller: Caller, code: int = errno.EACCES) -> None:
        if item.sid > ROOT_SID and not self.is_owner(item, caller):
            raise refuse(code, f"{item.name} belongs to {self.owner_name(item.uid)}")

    def check_writable_dir(self, parent: Item, caller: Caller) -> None:
        """May *caller* add or remove names in *parent*?"""
        if parent is self.recovered:
            raise refuse(errno.EPERM, "nothing can be added to outbox/.recovered/")
        if parent.kind != "dir":
            raise refuse(errno.ENOTDIR, f"{parent.name} is not a directory")
        self.check_owner(parent, caller)
        self.check_not_committing(parent)

    def check_not_committing(self, item: Item) -> None:
        top = self.top_of(item)
        if top is not None and top.state == COMMITTING:
            raise refuse(errno.EBUSY, f"{top.name} is being committed")

    def check_removable(self, parent: Item, child: Item, caller: Caller) -> None:
        if parent is not self.recovered:
            self.check_writable_dir(parent, caller)
        self.check_owner(child, caller, errno.EPERM)  # sticky, like /tmp
        self.check_not_committing(child)

    # -- changes ----------------------------------------------------------------------------
    def create(self, parent: Item, name: str, kind: str, mode: int, caller: Caller) -> Item:
        """A new file or directory *name* in *parent*, owned by *caller*."""
        self.check_writable_dir(parent, caller)
        if parent is self.root and name == RECOVERED:
            raise refuse(errno.EPERM, f"{RECOVERED} is reserved")
        assert parent.children is not None
        if name in parent.children:
            raise refuse(errno.EEXIST, f"{name} exists")
        item = self.make(name, kind, uid=caller.uid, gid=caller.gid,
                         mode=mode & ~caller.umask & 0o7777)
        self.attach(item, parent, name)
        self.touch(parent)
        return item

    def remove(self, parent: Item, name: str, caller: Caller, *, directory: bool
               ) -> list[Item]:
        """unlink (or, with *directory*, rmdir) *name*; returns what was dropped."""
        child = self.child(parent, name)
        if directory:
            if child is self.recovered:
                raise refuse(errno.EPERM, f"{RECOVERED} is the daemon's")
            if child.kind != "dir":
                raise refuse(errno.ENOTDIR, name)
            if child.children:
                raise refuse(errno.ENOTEMPTY, name)
        elif child.kind == "dir":
            raise refuse(errno.EISDIR, name)
        self.check_removable(parent, child, caller)
        dropped = self.forget(child)
        self.touch(parent)
        return dropped

    def rename(self, old: Item, name_old: str, new: Item, name_new: str, flags: int,
               caller: Caller) -> tuple[Item, list[Item]] | None:
        """Move *name_old* of *old* to *name_new* of *new*; returns the moved item and what
        was dropped (the target it replaced), or None when it is renamed onto itself."""
        if flags & RENAME_EXCHANGE:
            raise refuse(errno.EINVAL, "rename --exchange is not supported in the outbox")
        item = self.child(old, name_old)
        if item is self.recovered:
            raise refuse(errno.EPERM, f"{RECOVERED} is the daemon's")
        self.check_removable(old, item, caller)
        self.check_writable_dir(new, caller)
        if new is self.root and name_new == RECOVERED:
            raise refuse(errno.EPERM, f"{RECOVERED} is reserved")
        up: Item | None = new
        while up is not None:
            if up is item:
                raise refuse(errno.EINVAL, "cannot move a directory into itself")
            up = up.parent
        target = (new.children or {}).get(name_new)
        if target is item:
            return None
        dropped: list[Item] = []
        if target is not None:
            if flags & RENAME_NOREPLACE:
                raise refuse(errno.EEXIST, name_new)
            if item.kind == "dir" and target.kind != "dir":
                raise refuse(errno.ENOTDIR, name_new)
            if item.kind != "dir" and target.kind == "dir":
                raise refuse(errno.EISDIR, name_new)
            if target.children:
                raise refuse(errno.ENOTEMPTY, name_new)
            self.check_removable(new, target, caller)
            dropped = self.forget(target)
        self.touch(item, mtime=False)  # the entry it leaves changed
        self.detach(item)
        self.attach(item, new, name_new)
        if old is self.recovered and new is not self.recovered and item.kind != "link":
            item.state, item.error = STAGING, None  # back in outbox/: commits as usual
        self.touch(item, mtime=False)
        if item.parent is not None and item.parent.sid > ROOT_SID:
            self.touch(item.parent)
        return item, dropped

    def replace_by_link(self, top: Item, artifact_id: str
                        ) -> tuple[Item, list[Item], list[Item]]:
        """*top* was committed as *artifact_id*: it and the sidecars beside it go, a link
        to the artifact takes its name. Returns the link, the sidecars beside it that the
        commit consumed, and everything dropped."""
        parent = top.parent
        assert parent is not None
        consumed = [side for _, side in self.sidecars(top) if side.parent is parent]
        link = self.make(top.name, "link", uid=top.uid, gid=top.gid, mode=0o777)
        link.state, link.artifact = COMMITTED, artifact_id
        dropped = self.forget(top)
        for side in consumed:
            dropped += self.forget(side)
        self.attach(link, parent, top.name)
        return link, consumed, dropped
