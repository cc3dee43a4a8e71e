"""The outbox: files and directories written into ``outbox/`` are staged on local disk and
committed as one artifact each, through the library's one save path
(:meth:`elliptio.api.Lake.save_entries`). A directory's empty sub-directories are saved
too (the metadata's ``dirs``); a directory holding no file at all is not committed.

Shape (DESIGN.md §5)::

    outbox/model.pth              a staged file: one artifact with that one file
    outbox/model.pth.eio.yaml     its sidecar (metadata; consumed by the commit)
    outbox/run42/                 a staged directory: one artifact, files run42/<rel path>
    outbox/run42/.eio.yaml        the directory's sidecar (not saved as a file)
    outbox/model.pth -> ../artifacts/<id>     after the commit, until the user removes it
    outbox/.recovered/...         entries found uncommitted after the daemon stopped

**Staging.** Every staged object is an :class:`Item` with a stable number (*sid*). A
file's bytes live in ``<spool>/data/<sid>`` (written with ``pwrite``, read back by the
commit); the namespace (names, parents, owners, modes, metadata xattrs, the writers'
lineage scopes, commit state; empty directories too) is journalled in
``<spool>/journal.sqlite`` on every change of the namespace, not on every write. Both
survive a kill of the daemon: data sits in the kernel's page cache of a local file, the
journal is SQLite in WAL mode.

**When a top-level entry commits.** When no handle is open anywhere in it and nothing
has changed in it (write, create, rename, unlink, truncate, attribute, xattr, close) for
``Settings.outbox_quiet`` seconds; or at once on ``setfattr -n user.eio.commit -v 1``
(which then waits for the commit and reports its failure as the call's error). Never
automatically: names starting with ``.`` (rsync's and editors' temporaries), sidecars,
directories that hold no file, entries under ``.recovered/``, and entries whose writer
was killed by a signal while it had them open (a partial copy: the close arrives from a
dying process; the entry is marked ``error`` until it is written again or triggered).

**Commit.** While an entry commits, changing it is ``EBUSY``. On success the entry turns
into a symlink ``../artifacts/<id>`` (a new inode: the kernel's dentry is invalidated, and
outbox entries have a zero entry timeout, so the next path walk sees the link), its staged
bytes and its sidecar are dropped, and the daemon's query directories are invalidated.
A :class:`~elliptio.errors.UsageError` (bad sidecar, bad tag, a reserved name) leaves the
entry staged in state ``error`` with the message in ``user.eio.error`` and a WARNING log
line; any other :class:`~elliptio.errors.ElliptioError` (store or catalogue down) leaves it
``pending`` and retries with backoff. Nothing staged is dropped before the artifact exists.

**Owner and permissions.** The owner of an entry is the uid of the process that created
it (the FUSE request context), its artifact user that uid's login name (``uid<N>`` without
a passwd entry); environment variables do not enter. Only the owner (and root) may open,
list, change, rename or delete a staged entry or read its ``user.*`` xattrs; ``outbox/`` is
sticky like ``/tmp``, so anyone may create top-level entries.

**Lineage.** Creating or opening a file for writing records the writer's read scope
(:func:`~elliptiofs.readlog.scope_for`, the daemon's ``--scope``); the commit's
``based_on`` is every artifact the read log holds for those scopes, deduplicated in
first-read order — unless the sidecar or ``user.eio.based_on`` names it explicitly.

**Crash recovery.** On start, every top-level entry the journal holds uncommitted is
moved under ``.recovered/`` (never committed or dropped silently); the user commits it
(``mv`` it back into ``outbox/``, or the trigger xattr) or deletes it.

Everything here runs on the trio thread except the commit itself (a worker thread).
Nothing imports pyfuse3: refusals are ``OSError(errno, message)``, which ops maps to the
same errno.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import shlex
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import trio
import yaml

from elliptio.api import Entry as SaveEntry
from elliptio.api import Lake, check_tags
from elliptio.config import Settings, valid_user
from elliptio.errors import ConfigError, ElliptioError, UsageError
from elliptio.ids import check_id
from elliptio.provenance import redact_argv

from .readlog import ReadLog, ReadLogError, scope_for
from .tree import Entry, Kind, Node

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: sid of outbox/ itself and of the virtual outbox/.recovered/
ROOT_SID, RECOVERED_SID = 0, -1
RECOVERED = ".recovered"
SIDECAR_SUFFIX = ".eio.yaml"
DIR_SIDECAR = ".eio.yaml"
MAX_SIDECAR = 1 << 20
#: how often the scheduler looks for entries to commit (seconds)
TICK = 0.1
#: retry delays of a failing commit double up to this (seconds)
RETRY_MAX = 600.0
#: kernel attribute cache of staged entries; entry timeout is 0 (see the module docstring)
ATTR_TIMEOUT = 1.0
#: writer command lines remembered per entry (provenance)
MAX_WRITERS = 20
PF_EXITING = 0x4

#: states of a top-level entry (``user.eio.state``)
STAGING, COMMITTING, PENDING, ERROR, COMMITTED, RECOVERED_STATE = (
    "staging", "committing", "pending", "error", "committed", "recovered")
#: xattrs the outbox computes; users cannot set them
READ_ONLY_XATTRS = ("user.eio.state", "user.eio.error", "user.eio.owner", "user.eio.id")
TRIGGER = "user.eio.commit"


def refuse(code: int, message: str) -> OSError:
    """An error for the caller: ops answers it with *code*."""
    return OSError(code, message)


def create_tables(db: sqlite3.Connection) -> None:
    db.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS items (
            sid      INTEGER PRIMARY KEY,  -- stable number; a file's bytes are data/<sid>
            parent   INTEGER NOT NULL,     -- 0 outbox/, -1 outbox/.recovered/, else a dir's sid
            name     TEXT NOT NULL,        -- name in the parent
            kind     TEXT NOT NULL,        -- file | dir | link (a committed entry)
            uid      INTEGER NOT NULL,     -- owner: the creating process's uid
            gid      INTEGER NOT NULL,
            mode     INTEGER NOT NULL,     -- permission bits shown by stat
            mtime_ns INTEGER NOT NULL,
            state    TEXT NOT NULL,        -- staging|committing|pending|error|committed|recovered
            artifact TEXT,                 -- link: the committed artifact's id
            error    TEXT,                 -- why it is not committed (user.eio.error)
            xattrs   TEXT NOT NULL,        -- JSON {{name: hex value}}: user.* set by the user
            scopes   TEXT NOT NULL,        -- JSON [read scope of each writer] (lineage)
            writers  TEXT NOT NULL         -- JSON [command line of each writer] (provenance)
        );
        CREATE TABLE IF NOT EXISTS schema (
            version INTEGER NOT NULL       -- SCHEMA_VERSION of the code that created it
        );
        INSERT INTO schema(version) SELECT {SCHEMA_VERSION}
            WHERE NOT EXISTS (SELECT 1 FROM schema);
        """
    )


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """The artifact user for *uid*: its login name, else ``uid<N>``."""
    try:
        return valid_user(pwd.getpwuid(uid).pw_name)
    except (KeyError, ConfigError):
        return f"uid{uid}"


def _proc_stat(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].decode().split()


def killed_by(pid: int) -> int | None:
    """The signal killing *pid* if it is exiting because of one, else None.

    A close from a dying process arrives while it is in do_exit: PF_EXITING is set and
    its exit code (field 52 of /proc/<pid>/stat) already holds the signal number.
    """
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 50:
        return None
    flags, code = int(fields[6]), int(fields[49])
    if flags & PF_EXITING and code & 0x7F:
        return code & 0x7F
    return None


def command_line(pid: int) -> str:
    """The command line of *pid*, secret-looking values redacted (it goes into the
    artifact's provenance), at most 1,000 characters."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return shlex.join(redact_argv(argv))[:1000]


def _split_command(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # cut at 1,000 characters inside a quote
        return line.split()


class Item:
    """One staged object (or a committed link, or outbox/ and .recovered/ themselves)."""

    __slots__ = ("sid", "parent", "name", "kind", "uid", "gid", "mode", "mtime_ns", "size",
                 "state", "artifact", "error", "xattrs", "scopes", "writers", "children",
                 "node", "changed", "requested", "retry_at", "retry_delay", "done")

    def __init__(self, sid: int, parent: Item | None, name: str, kind: str, *, uid: int = 0,
                 gid: int = 0, mode: int = 0o644, mtime_ns: int = 0) -> None:
        self.sid = sid
        self.parent = parent
        self.name = name
        self.kind = kind
        self.uid, self.gid, self.mode = uid, gid, mode
        self.mtime_ns = mtime_ns or time.time_ns()
        self.size = 0
        self.state = STAGING
        self.artifact: str | None = None
        self.error: str | None = None
        self.xattrs: dict[str, bytes] = {}
        self.scopes: list[str] = []
        self.writers: list[str] = []
        self.children: dict[str, Item] | None = {} if kind == "dir" else None
        kinds = {"file": Kind.AFILE, "dir": Kind.OUTBOX, "link": Kind.LINK}
        self.node = Node(kinds[kind], ("outbox",) if sid == ROOT_SID
                         else ("outbox", f"#{sid}"), mtime_ns=self.mtime_ns)
        self.changed = time.monotonic()
        self.requested = False  # an explicit trigger waits for the last close
        self.retry_at = 0.0
        self.retry_delay = 0.0
        self.done: trio.Event | None = None  # set while committing

    def __repr__(self) -> str:
        return f"Item({self.sid}, {self.kind}, {self.name!r}, {self.state})"

    def walk(self) -> Iterator[tuple[str, Item]]:
        """(relative path, item) of every item below this directory."""
        for name, child in sorted((self.children or {}).items()):
            yield name, child
            if child.children is not None:
                for rel, sub in child.walk():
                    yield f"{name}/{rel}", sub


class Handle:
    __slots__ = ("item", "fd", "pid", "writable", "wrote")

    def __init__(self, item: Item, fd: int, pid: int, writable: bool) -> None:
        self.item, self.fd, self.pid, self.writable = item, fd, pid, writable
        self.wrote = False


class Outbox:
    """The staging area behind ``outbox/`` (implements :class:`elliptiofs.ops.OutboxOps`)."""

    def __init__(self, lake: Lake, readlog: ReadLog | None, settings: Settings, *,
                 scope: str = "session") -> None:
        self.lake = lake
        self.readlog = readlog
        self.scope = scope
        self.quiet = float(settings.outbox_quiet)
        self.retry = float(settings.outbox_retry)
        self.spool = Path(settings.spool)
        self.data = self.spool / "data"
        self._lock_fd = self._lock_spool()
        self._db = self._open_journal()
        self._items: dict[int, Item] = {}
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._dirty: set[Item] = set()
        self._committing = trio.CapacityLimiter(2)
        me = {"uid": os.getuid(), "gid": os.getgid()}  # the daemon's: shown by stat
        self.root = self._add(Item(ROOT_SID, None, "outbox", "dir", mode=0o1777, **me))
        self.recovered = self._add(Item(RECOVERED_SID, self.root, RECOVERED, "dir",
                                        mode=0o755, **me))
        self.root.children = {}  # .recovered is listed only when it holds something
        self._next_sid = 1
        self._load()
        # what the daemon wires in: ops.artifact_committed and a dentry invalidation
        self.on_commit: Callable[..., None] = lambda *a, **k: None
        self.invalidate: Callable[[tuple[str, ...], str], None] = lambda path, name: None

    # -- the spool and the journal ------------------------------------------------------
    def _lock_spool(self) -> int:
        try:
            self.data.mkdir(parents=True, exist_ok=True)
            os.chmod(self.spool, 0o700)  # staged bytes of every user: the daemon's only
            fd = os.open(self.spool / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot use the spool directory {self.spool}: "
                              f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"the spool directory {self.spool} is in use by another "
                              "elliptiofs; give each mount its own ELLIPTIO_SPOOL") from None
        return fd

    def _open_journal(self) -> sqlite3.Connection:
        path = self.spool / "journal.sqlite"
        try:
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # survives a kill of the daemon
            create_tables(db)
            (version,) = db.execute("SELECT version FROM schema").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the outbox journal {path}: {exc}") from None
        if version != SCHEMA_VERSION:
            raise ConfigError(f"outbox journal {path} has schema version {version}, this "
                              f"elliptiofs needs {SCHEMA_VERSION}")
        return db

    def detach(self) -> None:
        """Stop telling the kernel about commits (the FUSE session is closing)."""
        self.on_commit = lambda *a, **k: None
        self.invalidate = lambda path, name: None

    def close(self) -> None:
        for h in self._handles.values():
            with contextlib.suppress(OSError):
                os.close(h.fd)
        self._handles.clear()
        self._db.close()
        os.close(self._lock_fd)

    def _persist(self, item: Item) -> None:
        if item.sid <= ROOT_SID:
            return
        assert item.parent is not None
        self._db.execute(
            "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item.sid, item.parent.sid, item.name, item.kind, item.uid, item.gid, item.mode,
             item.mtime_ns, item.state, item.artifact, item.error,
             json.dumps({k: v.hex() for k, v in item.xattrs.items()}),
             json.dumps(item.scopes), json.dumps(item.writers)))

    def _data_path(self, item: Item) -> Path:
        return self.data / str(item.sid)

    def _load(self) -> None:
        """Rebuild the namespace from the journal; move what was not committed into
        .recovered/ (the daemon stopped: nothing is committed or dropped silently)."""
        rows = self._db.execute("SELECT * FROM items ORDER BY sid").fetchall()
        by_sid: dict[int, tuple[Any, ...]] = {r[0]: r for r in rows}
        for r in rows:
            sid, _, name, kind, uid, gid, mode, mtime_ns, state, aid, error, xa, sc, wr = r
            item = Item(sid, None, name, kind, uid=uid, gid=gid, mode=mode,
                        mtime_ns=mtime_ns)
            item.state, item.artifact, item.error = state, aid, error
            item.xattrs = {k: bytes.fromhex(v) for k, v in json.loads(xa).items()}
            item.scopes, item.writers = json.loads(sc), json.loads(wr)
            self._add(item)
            self._next_sid = max(self._next_sid, sid + 1)
        for r in rows:
            item = self._items[r[0]]
            parent = self._items.get(r[1]) if r[1] in by_sid or r[1] <= ROOT_SID else None
            if parent is None or parent.children is None:
                parent = self.recovered  # its directory's row is gone: keep it anyway
            self._attach(item, parent, self._free_name(parent, item.name))
            if item.kind == "file":
                path = self._data_path(item)
                try:
                    st = path.stat()
                    item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
                except FileNotFoundError:
                    path.touch(mode=0o600)  # created, never written
        for item in list((self.root.children or {}).values()):
            if item.kind == "link":
                continue
            was = item.state
            self._detach(item)
            self._attach(item, self.recovered, self._free_name(self.recovered, item.name))
            item.state = RECOVERED_STATE
            item.error = ("the daemon stopped while committing this entry; it may be "
                          f"saved already: check by-user/{user_name(item.uid)}/ before "
                          "committing it again" if was == COMMITTING else
                          f"the daemon stopped before this entry was committed (it was {was})")
            self._persist(item)
            log.warning("outbox: %s of %s was not committed when the daemon stopped; kept "
                        "as outbox/%s/%s (commit or delete it)", item.name,
                        user_name(item.uid), RECOVERED, item.name)
        known = {str(s) for s, i in self._items.items() if i.kind == "file"}
        for f in self.data.iterdir():
            if f.name not in known:  # the bytes of an entry deleted or committed
                f.unlink()

    # -- the namespace --------------------------------------------------------------------
    def _add(self, item: Item) -> Item:
        self._items[item.sid] = item
        return item

    def _attach(self, item: Item, parent: Item, name: str) -> None:
        assert parent.children is not None
        item.parent, item.name = parent, name
        parent.children[name] = item
        if parent is self.recovered:
            self.root.children[RECOVERED] = self.recovered  # type: ignore[index]

    def _detach(self, item: Item) -> None:
        parent = item.parent
        if parent is not None and parent.children is not None:
            parent.children.pop(item.name, None)
            if parent is self.recovered and not parent.children:
                self.root.children.pop(RECOVERED, None)  # type: ignore[union-attr]

    @staticmethod
    def _free_name(parent: Item, name: str) -> str:
        assert parent.children is not None
        n, candidate = 1, name
        while candidate in parent.children:
            candidate = f"{name}~{n}"
            n += 1
        return candidate

    def _item(self, node: Node) -> Item:
        if node.path == ("outbox",):
            return self.root
        try:
            return self._items[int(node.path[1][1:])]
        except (KeyError, ValueError, IndexError):
            raise refuse(errno.ENOENT, f"{node} is no longer staged") from None

    def _child(self, parent: Item, name: str) -> Item:
        child = (parent.children or {}).get(name)
        if child is None:
            raise refuse(errno.ENOENT, f"no {name!r} in the outbox")
        return child

    def top_of(self, item: Item) -> Item | None:
        """The committable entry *item* belongs to (a child of outbox/ or .recovered/)."""
        while item.parent is not None and item.parent.sid > ROOT_SID:
            item = item.parent
        if item.parent is None or item.sid <= ROOT_SID:
            return None
        return item

    def _touch(self, item: Item, *, mtime: bool = True, reset: bool = True) -> None:
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
            if target is not None and target.kind != "link":
                tops.append(target)
        for t in tops:
            t.changed = time.monotonic()
            if reset and t.state in (ERROR, PENDING):
                t.state, t.error = STAGING, None
                t.retry_delay = 0.0
            if t.parent is self.root:
                self._dirty.add(t)

    # -- permissions ------------------------------------------------------------------------
    @staticmethod
    def _owner(item: Item, ctx: Any) -> bool:
        return ctx.uid == 0 or ctx.uid == item.uid

    def _check_owner(self, item: Item, ctx: Any, code: int = errno.EACCES) -> None:
        if item.sid > ROOT_SID and not self._owner(item, ctx):
            raise refuse(code, f"{item.name} belongs to {user_name(item.uid)}")

    def _check_writable_dir(self, parent: Item, ctx: Any) -> None:
        """May *ctx* add or remove names in *parent*?"""
        if parent is self.recovered:
            raise refuse(errno.EPERM, "nothing can be added to outbox/.recovered/")
        if parent.kind != "dir":
            raise refuse(errno.ENOTDIR, f"{parent.name} is not a directory")
        self._check_owner(parent, ctx)
        self._check_not_committing(parent)

    def _check_not_committing(self, item: Item) -> None:
        top = self.top_of(item)
        if top is not None and top.state == COMMITTING:
            raise refuse(errno.EBUSY, f"{top.name} is being committed")

    def _check_removable(self, parent: Item, child: Item, ctx: Any) -> None:
        if parent is not self.recovered:
            self._check_writable_dir(parent, ctx)
        self._check_owner(child, ctx, errno.EPERM)  # sticky, like /tmp
        self._check_not_committing(child)

    # -- OutboxOps: names and attributes ---------------------------------------------------
    def lookup(self, parent: Node, name: str) -> Node | None:
        child = (self._item(parent).children or {}).get(name)
        return child.node if child is not None else None

    def list_dir(self, directory: Node, after: str | None, limit: int) -> list[Entry]:
        children = self._item(directory).children or {}
        names = sorted(n for n in children if after is None or n > after)[:limit]
        return [Entry(n, children[n].node, n) for n in names]

    def opendir(self, node: Node, ctx: Any) -> None:
        item = self._item(node)
        if item.sid > ROOT_SID:
            self._check_owner(item, ctx)

    def attrs(self, node: Node, entry: Any) -> None:
        try:
            item = self._item(node)
        except OSError:
            return  # forgotten by us (committed, deleted), not yet by the kernel
        entry.entry_timeout = 0.0 if item.sid > ROOT_SID else 1.0
        entry.attr_timeout = ATTR_TIMEOUT
        entry.st_uid, entry.st_gid = item.uid, item.gid
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = item.mtime_ns
        if item.kind == "file":
            entry.st_mode = stat.S_IFREG | item.mode
            entry.st_size = item.size
            entry.st_nlink = 1
        elif item.kind == "link":
            entry.st_mode = stat.S_IFLNK | 0o777
            entry.st_size = len(self.readlink(node))
            entry.st_nlink = 1
        else:
            entry.st_mode = stat.S_IFDIR | item.mode
            entry.st_size = 0
            entry.st_nlink = 2
        entry.st_blocks = (entry.st_size + 511) // 512

    def readlink(self, node: Node) -> str:
        item = self._item(node)
        if item.kind != "link":
            raise refuse(errno.EINVAL, f"{item.name} is not a symlink")
        depth = 1 if item.parent is self.root else 2
        return "../" * depth + f"artifacts/{item.artifact}"

    def statfs(self, s: Any) -> None:
        """The spool's free space: what the outbox can take."""
        v = os.statvfs(self.spool)
        scale = v.f_frsize / s.f_frsize if s.f_frsize else 1
        s.f_blocks = int(v.f_blocks * scale)
        s.f_bfree = int(v.f_bfree * scale)
        s.f_bavail = int(v.f_bavail * scale)
        s.f_ffree = s.f_favail = v.f_favail

    # -- OutboxOps: creating, opening, I/O ------------------------------------------------
    def _new(self, parent: Item, name: str, kind: str, mode: int, ctx: Any) -> Item:
        self._check_writable_dir(parent, ctx)
        if parent is self.root and name == RECOVERED:
            raise refuse(errno.EPERM, f"{RECOVERED} is reserved")
        assert parent.children is not None
        if name in parent.children:
            raise refuse(errno.EEXIST, f"{name} exists")
        item = Item(self._next_sid, None, name, kind, uid=ctx.uid, gid=ctx.gid,
                    mode=mode & ~ctx.umask & 0o7777)
        self._next_sid += 1
        self._note_writer(item, ctx)
        self._add(item)
        self._attach(item, parent, name)
        self._persist(item)
        self._touch(parent)
        return item

    def _note_writer(self, item: Item, ctx: Any) -> bool:
        """Remember the writer's read scope (lineage) and command line (provenance)."""
        changed = False
        try:
            scope = scope_for(ctx.pid, ctx.uid, self.scope)
        except ElliptioError:
            scope = f"uid:{ctx.uid}"
        if scope not in item.scopes:
            item.scopes.append(scope)
            changed = True
        cmd = command_line(ctx.pid)
        if cmd not in item.writers and len(item.writers) < MAX_WRITERS:
            item.writers.append(cmd)
            changed = True
        return changed

    def _open_fd(self, item: Item, pid: int, writable: bool, trunc: bool = False) -> int:
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if trunc else 0)
        fd = os.open(self._data_path(item), flags, 0o600)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(item, fd, pid, writable)
        return fh

    async def create(self, parent: Node, name: str, mode: int, flags: int,
                     ctx: Any) -> tuple[Node, int]:
        p = self._item(parent)
        existing = (p.children or {}).get(name)
        if existing is not None and existing.kind == "file" and not flags & os.O_EXCL:
            return existing.node, await self.open(existing.node, flags, ctx)
        item = self._new(p, name, "file", mode, ctx)
        return item.node, self._open_fd(item, ctx.pid, True, trunc=True)

    async def mkdir(self, parent: Node, name: str, mode: int, ctx: Any) -> Node:
        return self._new(self._item(parent), name, "dir", mode, ctx).node

    async def open(self, node: Node, flags: int, ctx: Any) -> int:
        item = self._item(node)
        if item.kind != "file":
            raise refuse(errno.EISDIR if item.kind == "dir" else errno.ELOOP, item.name)
        self._check_owner(item, ctx)
        writable = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC))
        if writable:
            self._check_not_committing(item)
            if self._note_writer(item, ctx):
                self._persist(item)
        trunc = bool(flags & os.O_TRUNC) and writable
        fh = self._open_fd(item, ctx.pid, writable, trunc=trunc)
        if trunc:
            item.size = 0
            self._touch(item)
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
        self._touch(item)
        return n

    async def flush(self, fh: int) -> None:
        h = self._handles.get(fh)
        if h is None or not h.wrote:
            return
        sig = killed_by(h.pid)
        top = self.top_of(h.item)
        if sig is not None and top is not None:
            # a close from a process that is dying of a signal: a partial copy
            top.state = ERROR
            top.error = (f"the writer (pid {h.pid}) was killed by signal {sig} while "
                         f"writing {h.item.name}: not committed (write it again, or "
                         f"setfattr -n {TRIGGER} -v 1 to commit it as it is)")
            self._persist(top)
            log.warning("outbox: %s of %s: %s", top.name, user_name(top.uid), top.error)

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
            self._touch(h.item, mtime=False, reset=False)

    def _open_in(self, top: Item) -> bool:
        return any(self.top_of(h.item) is top for h in self._handles.values())

    async def setattr(self, node: Node, attr: Any, fields: Any, ctx: Any) -> None:
        item = self._item(node)
        if item.sid <= ROOT_SID:
            raise refuse(errno.EPERM, "outbox/ itself cannot be changed")
        self._check_owner(item, ctx, errno.EPERM)
        persist = False
        if fields.update_size:
            if item.kind != "file":
                raise refuse(errno.EISDIR, item.name)
            self._check_not_committing(item)
            os.truncate(self._data_path(item), attr.st_size)
            item.size = attr.st_size
            self._touch(item)
        if fields.update_uid and attr.st_uid not in (item.uid, 0xFFFFFFFF) and ctx.uid != 0:
            raise refuse(errno.EPERM, "only root can give an entry away")
        # root's chown is accepted and ignored: the owner is the uid that wrote it
        if fields.update_gid:
            item.gid, persist = attr.st_gid, True
        if fields.update_mode:
            item.mode, persist = stat.S_IMODE(attr.st_mode), True
        if fields.update_mtime:
            item.mtime_ns, persist = attr.st_mtime_ns, True
        if persist and item.kind != "link":
            self._persist(item)

    # -- OutboxOps: removing and renaming -------------------------------------------------
    def _drop(self, item: Item, *, data: bool = True) -> list[Path]:
        """Forget *item* and everything below it; delete their staged bytes (or, without
        *data*, return the files for the caller to delete)."""
        files = []
        for sub in [*(i for _, i in item.walk()), item] if item.children is not None \
                else [item]:
            self._detach(sub)
            self._items.pop(sub.sid, None)
            self._dirty.discard(sub)
            self._db.execute("DELETE FROM items WHERE sid = ?", (sub.sid,))
            if sub.kind == "file":
                files.append(self._data_path(sub))
        if data:
            for f in files:
                # open handles keep working on the unlinked file, as on any filesystem
                f.unlink(missing_ok=True)
        return files

    async def unlink(self, parent: Node, name: str, ctx: Any) -> None:
        p = self._item(parent)
        child = self._child(p, name)
        if child.kind == "dir":
            raise refuse(errno.EISDIR, name)
        self._check_removable(p, child, ctx)
        self._drop(child)
        self._touch(p)

    async def rmdir(self, parent: Node, name: str, ctx: Any) -> None:
        p = self._item(parent)
        child = self._child(p, name)
        if child is self.recovered:
            raise refuse(errno.EPERM, f"{RECOVERED} is the daemon's")
        if child.kind != "dir":
            raise refuse(errno.ENOTDIR, name)
        if child.children:
            raise refuse(errno.ENOTEMPTY, name)
        self._check_removable(p, child, ctx)
        self._drop(child)
        self._touch(p)

    async def rename(self, parent_old: Node, name_old: str, parent_new: Node, name_new: str,
                     flags: int, ctx: Any) -> None:
        if flags & 2:  # RENAME_EXCHANGE
            raise refuse(errno.EINVAL, "rename --exchange is not supported in the outbox")
        old, new = self._item(parent_old), self._item(parent_new)
        item = self._child(old, name_old)
        if item is self.recovered:
            raise refuse(errno.EPERM, f"{RECOVERED} is the daemon's")
        self._check_removable(old, item, ctx)
        self._check_writable_dir(new, ctx)
        if new is self.root and name_new == RECOVERED:
            raise refuse(errno.EPERM, f"{RECOVERED} is reserved")
        up: Item | None = new
        while up is not None:
            if up is item:
                raise refuse(errno.EINVAL, "cannot move a directory into itself")
            up = up.parent
        target = (new.children or {}).get(name_new)
        if target is item:
            return
        if target is not None:
            if flags & 1:  # RENAME_NOREPLACE
                raise refuse(errno.EEXIST, name_new)
            if item.kind == "dir" and target.kind != "dir":
                raise refuse(errno.ENOTDIR, name_new)
            if item.kind != "dir" and target.kind == "dir":
                raise refuse(errno.EISDIR, name_new)
            if target.children:
                raise refuse(errno.ENOTEMPTY, name_new)
            self._check_removable(new, target, ctx)
            self._drop(target)
        self._touch(item, mtime=False)  # the entry it leaves changed
        self._detach(item)
        self._attach(item, new, name_new)
        if old is self.recovered and new is not self.recovered and item.kind != "link":
            item.state, item.error = STAGING, None  # back in outbox/: commits as usual
        self._persist(item)
        self._touch(item, mtime=False)
        if item.parent is not None and item.parent.sid > ROOT_SID:
            self._touch(item.parent)

    # -- OutboxOps: extended attributes -----------------------------------------------------
    def _xattrs(self, item: Item) -> dict[str, bytes]:
        out = dict(item.xattrs)
        if self.top_of(item) is item:
            out["user.eio.state"] = item.state.encode()
            if item.error:
                out["user.eio.error"] = item.error.encode()
            if item.artifact:
                out["user.eio.id"] = item.artifact.encode()
        if item.sid > ROOT_SID:
            out["user.eio.owner"] = user_name(item.uid).encode()
        return out

    def getxattr(self, node: Node, name: str, ctx: Any) -> bytes | None:
        """A ``user.*`` attribute (the other namespaces are refused before: ops)."""
        item = self._item(node)
        self._check_owner(item, ctx)
        return self._xattrs(item).get(name)

    def listxattr(self, node: Node, ctx: Any) -> list[str]:
        item = self._item(node)
        if not self._owner(item, ctx) and item.sid > ROOT_SID:
            return []
        return sorted(self._xattrs(item))

    async def setxattr(self, node: Node, name: str, value: bytes, ctx: Any) -> None:
        item = self._item(node)
        if not name.startswith("user."):
            raise refuse(errno.EOPNOTSUPP, "only user.* attributes can be set in the outbox")
        if item.sid <= ROOT_SID:
            raise refuse(errno.EPERM, "set attributes on an entry, not on the outbox")
        self._check_owner(item, ctx, errno.EPERM)
        if name == TRIGGER:
            await self.commit_now(item)
            return
        if name in READ_ONLY_XATTRS:
            raise refuse(errno.EPERM, f"{name} is set by the outbox")
        self._check_not_committing(item)
        if name.startswith("user.eio."):
            try:
                xattr_metadata({name: value})  # refuse a bad value now, not at commit
            except UsageError as exc:
                raise refuse(errno.EINVAL, str(exc)) from None
        item.xattrs[name] = bytes(value)
        self._persist(item)
        self._touch(item, mtime=False)

    async def removexattr(self, node: Node, name: str, ctx: Any) -> None:
        item = self._item(node)
        self._check_owner(item, ctx, errno.EPERM)
        if name not in item.xattrs:
            raise refuse(errno.ENODATA, name)
        self._check_not_committing(item)
        del item.xattrs[name]
        self._persist(item)
        self._touch(item, mtime=False)

    # -- committing ----------------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler: commit entries that became quiet, retry pending ones."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(TICK)
                now = time.monotonic()
                for top in list(self._dirty):
                    if self._due(top, now):
                        self._dirty.discard(top)
                        top.done = trio.Event()
                        top.state = COMMITTING  # atomic with the check: no await between
                        nursery.start_soon(self._commit, top)
                for top in [i for i in (self.root.children or {}).values()
                            if i.state == PENDING and i.retry_at <= now
                            and not self._open_in(i)]:
                    top.done = trio.Event()
                    top.state = COMMITTING
                    nursery.start_soon(self._commit, top)

    def _due(self, top: Item, now: float) -> bool:
        """Should *top* commit now? Drops it from the dirty set when it never will."""
        if top.parent is not self.root or top.kind == "link" or top.state != STAGING \
                or top.name.startswith(".") or top.name.endswith(SIDECAR_SUFFIX):
            self._dirty.discard(top)
            return False
        if top.kind == "dir" and not any(i.kind == "file" for _, i in top.walk()):
            self._dirty.discard(top)  # nothing to save yet; a new file marks it again
            return False
        if self._open_in(top) or now - top.changed < self.quiet:
            return False
        sidecar = self.root.children.get(top.name + SIDECAR_SUFFIX)  # type: ignore[union-attr]
        return sidecar is None or (not self._open_in(sidecar)
                                   and now - sidecar.changed >= self.quiet)

    async def commit_now(self, item: Item) -> None:
        """The explicit trigger: commit *item*'s entry now and wait for the outcome."""
        top = self.top_of(item)
        if top is None or top.kind == "link":
            raise refuse(errno.EINVAL, "nothing to commit here")
        if top.state == COMMITTING:
            assert top.done is not None
            await top.done.wait()
        else:
            if self._open_in(top):
                raise refuse(errno.EBUSY, f"{top.name} is still open")
            if top.kind == "dir" and not any(i.kind == "file" for _, i in top.walk()):
                raise refuse(errno.EINVAL, f"{top.name} holds no files")
            self._dirty.discard(top)
            top.done = trio.Event()
            top.state = COMMITTING
            await self._commit(top)
        if top.state == ERROR:
            raise refuse(errno.EINVAL, top.error or "refused")
        if top.state == PENDING:
            raise refuse(errno.EIO, top.error or "the commit failed; retrying")

    def _sidecars(self, top: Item) -> list[tuple[str, Item]]:
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
        return out

    def _plan(self, top: Item) -> tuple[list[SaveEntry], dict[str, Any]]:
        """What to save and with which metadata (UsageError when it cannot be)."""
        meta: dict[str, Any] = {"info": {}, "tags": None, "based_on": None}
        for where, side in self._sidecars(top):
            if side.size > MAX_SIDECAR:
                raise UsageError(f"sidecar {where} is larger than {MAX_SIDECAR} bytes")
            merge_metadata(meta, sidecar_metadata(self._data_path(side).read_bytes(), where))
        merge_metadata(meta, xattr_metadata(top.xattrs))
        if top.kind == "file":
            entries = [SaveEntry(top.name, str(self._data_path(top)), top.size)]
        else:
            entries = [SaveEntry(f"{top.name}/{rel}", str(self._data_path(i)), i.size)
                       for rel, i in top.walk() if i.kind == "file" and rel != DIR_SIDECAR]
            if not entries:
                raise UsageError(f"{top.name} holds no files")
            # the empty directories are part of the tree that was copied in (git's
            # .git/refs/tags, a tar's placeholders): saved as names in the metadata
            entries += [SaveEntry(f"{top.name}/{rel}", f"outbox/{top.name}/{rel}", 0,
                                  directory=True)
                        for rel, i in top.walk() if i.kind == "dir" and not i.children]
        meta["tags"] = check_tags(meta["tags"])
        return entries, meta

    def _lineage(self, top: Item) -> list[str]:
        scopes: list[str] = []
        for item in [top, *(i for _, i in top.walk())] if top.children is not None else [top]:
            scopes += [s for s in item.scopes if s not in scopes]
        out: list[str] = []
        if self.readlog is None:
            return out
        for s in scopes:
            out += [a for a in self.readlog.artifacts_for(s) if a not in out]
        return out

    async def _commit(self, top: Item) -> None:
        """Commit *top* (already marked COMMITTING by the caller, with ``done`` set up)."""
        assert top.done is not None
        try:
            self._persist(top)  # recovery must know a commit was under way
            user = user_name(top.uid)
            try:
                entries, meta = self._plan(top)
            except (UsageError, OSError) as exc:
                return self._refused(top, user, str(exc))
            writers: list[str] = []
            for item in [top, *(i for _, i in top.walk())] if top.children is not None \
                    else [top]:
                writers += [w for w in item.writers if w not in writers]
            provenance = {"outbox": {"entry": top.name, "uid": top.uid, "owner": user,
                                     "writers": writers[:MAX_WRITERS],
                                     "lineage": "readlog" if meta["based_on"] is None
                                     else "explicit"}}
            # the provenance describes the program that wrote the entry (the first one),
            # not the daemon, which is named under "via". Of the writer only the command
            # line is known: the daemon does not run git in another user's directory (a
            # repository's configuration can run commands, and the daemon is often root)
            writer = {"argv": _split_command(writers[0]) if writers else [],
                      "uid": top.uid, "login": user, "via": "elliptiofs outbox"}

            def save() -> Any:
                based_on = meta["based_on"]
                if based_on is None:
                    based_on = self._lineage(top)
                return self.lake.save_entries(entries, info=meta["info"], tags=meta["tags"],
                                              based_on=based_on, user=user,
                                              extra_provenance=provenance, writer=writer)

            async with self._committing:
                try:
                    artifact = await trio.to_thread.run_sync(save)
                except UsageError as exc:
                    return self._refused(top, user, str(exc))
                except (ElliptioError, ReadLogError) as exc:
                    return self._failed(top, user, str(exc))
                except Exception as exc:  # a bug: keep everything, say so, retry later
                    log.exception("outbox: committing %s failed", top.name)
                    return self._failed(top, user, f"internal error: {exc!r}")
            self._committed(top, artifact)
        finally:
            top.done.set()

    def _refused(self, top: Item, user: str, message: str) -> None:
        top.state, top.error = ERROR, message
        self._persist(top)
        log.warning("outbox: %s of %s is not committed: %s", top.name, user, message)

    def _failed(self, top: Item, user: str, message: str) -> None:
        top.retry_delay = min(RETRY_MAX, top.retry_delay * 2 if top.retry_delay else self.retry)
        top.retry_at = time.monotonic() + top.retry_delay
        top.state = PENDING
        top.error = f"{message} (retrying in {top.retry_delay:.0f} s)"
        self._persist(top)
        log.warning("outbox: committing %s of %s failed, retrying in %.0f s: %s", top.name,
                    user, top.retry_delay, message)

    def _committed(self, top: Item, artifact: Any) -> None:
        parent = top.parent
        assert parent is not None
        consumed = [side for _, side in self._sidecars(top) if side.parent is parent]
        link = Item(self._next_sid, None, top.name, "link", uid=top.uid, gid=top.gid,
                    mode=0o777)
        self._next_sid += 1
        link.state, link.artifact = COMMITTED, artifact.id
        # one transaction: the journal never holds both the staged entry and its link
        self._db.execute("BEGIN")
        try:
            files = self._drop(top, data=False)
            for side in consumed:
                files += self._drop(side, data=False)
            self._add(link)
            self._attach(link, parent, top.name)
            self._persist(link)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for f in files:  # after the journal: a crash in between leaves only orphans
            f.unlink(missing_ok=True)
        log.info("outbox: %s of %s committed as %s", top.name, artifact.user, artifact.id)
        self.invalidate(parent.node.path, top.name)
        for side in consumed:
            self.invalidate(parent.node.path, side.name)
        self.on_commit(artifact.id, artifact.user, artifact.tags, created=artifact.created,
                       based_on=artifact.based_on)


# -- metadata: sidecars and xattrs --------------------------------------------------------------
def sidecar_metadata(data: bytes, where: str) -> dict[str, Any]:
    """The metadata a sidecar YAML gives: ``tags``, ``based_on``, ``info`` (a mapping) and
    any other key as an ``info`` key (``type: model``)."""
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"sidecar {where} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise UsageError(f"sidecar {where} must be a mapping (key: value lines), "
                         f"not a {type(doc).__name__}")
    out: dict[str, Any] = {"info": {}}
    for key, value in doc.items():
        if key == "tags":
            out["tags"] = check_tags(value)
        elif key == "based_on":
            out["based_on"] = _based_on(value, where)
        elif key == "info":
            if not isinstance(value, Mapping):
                raise UsageError(f"sidecar {where}: info must be a mapping")
            out["info"].update(value)
        else:
            out["info"][str(key)] = value
    return out


def _based_on(value: Any, where: str) -> list[str]:
    if value is None or value == "" or value == "none":
        return []
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"{where}: based_on must be a list of artifact ids")
    out: list[str] = []
    for v in value:
        aid = check_id(str(v))
        if aid not in out:
            out.append(aid)
    return out


def xattr_metadata(xattrs: Mapping[str, bytes]) -> dict[str, Any]:
    """The metadata ``user.eio.*`` attributes give: ``user.eio.tags`` (comma-separated),
    ``user.eio.based_on`` (ids, comma- or space-separated; empty: none), and any other
    ``user.eio.<key>`` as ``info[<key>]`` (a string)."""
    out: dict[str, Any] = {"info": {}}
    for name, raw in xattrs.items():
        if not name.startswith("user.eio."):
            continue
        key = name[len("user.eio."):]
        try:
            value = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{name} is not UTF-8 text") from None
        if key == "tags":
            out["tags"] = check_tags([t for t in value.split(",") if t.strip()])
        elif key == "based_on":
            out["based_on"] = _based_on(value, name)
        elif not key or "." in key or key in ("commit", "state", "error", "owner", "id"):
            raise UsageError(f"{name}: use user.eio.<key> with a key without '.'")
        else:
            out["info"][key] = value
    return out


def merge_metadata(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Later sources win: sidecar beside, sidecar inside, then xattrs."""
    into["info"].update(more.get("info") or {})
    for key in ("tags", "based_on"):
        if more.get(key) is not None:
            into[key] = more[key]

