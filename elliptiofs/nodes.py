"""What one path of the mount is: its kind, what ``stat`` shows of it, how long the
kernel may cache it; a listed entry; the local account that owns an artifact's nodes.

Plain Python, no I/O but the passwd lookup of :func:`owner_of`. The tree
(:mod:`elliptiofs.tree`) and the outbox (:mod:`elliptiofs.outbox`) make nodes;
:mod:`elliptiofs.ops` gives them inode numbers (:mod:`elliptiofs.inodes`) and copies what
they say into pyfuse3's objects.

Caching policy, told to the kernel through each node's entry/attr timeouts:

- artifact contents and the symlinks to them never change: long timeouts, and files are
  opened with ``keep_cache`` so the page cache survives across opens;
- query directories (by-user/<u>, search/<q>, ...) and names found missing in them: short
  timeouts; names missing inside an artifact are remembered long;
- a missing name is answered as a negative entry (``st_ino = 0`` with a timeout) rather
  than ENOENT, so the kernel caches it (shells and loaders probe names constantly).
"""

from __future__ import annotations

import enum
import os
import pwd
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from elliptio.query import Query

ROOT_INODE = 1
#: names in the root directory, in listing order
TOP = ("artifacts", "by-user", "by-tag", "by-date", "based-on", "search", "outbox")
#: kernel cache lifetime of immutable things (artifact contents, symlinks to artifacts)
IMMUTABLE_TIMEOUT = 3600.0
#: kernel cache lifetime of query directories and of names not found in them
QUERY_TIMEOUT = 1.0


class Kind(enum.Enum):
    ROOT = "root"
    TOP = "top"  # artifacts/, by-user/, ... (a fixed directory of the root)
    OUTBOX = "outbox"  # outbox/ (delegated to elliptiofs.outbox when there is one)
    GROUP = "group"  # a directory listing artifacts as symlinks (by-user/andy, search/q)
    DATES = "dates"  # by-date/YYYY or by-date/YYYY/MM: lists the next date level
    LINK = "link"  # <group>/<id> -> artifacts/<id>
    ADIR = "adir"  # a directory inside artifacts/<id>/ (including the artifact root)
    AFILE = "afile"  # a file inside an artifact (user file, metadata.yaml, a log)


class Node:
    """One path of the tree and what ``stat`` shows of it.

    ``size`` is -1 for ``.eio/metadata.yaml`` until its bytes are fetched (the catalogue
    does not record its size). ``query`` is set on GROUP nodes (what they list).
    ``problem`` is set on an AFILE that is listed but never served (its entry breaks
    :func:`elliptio.layout.entry_problem`; it then has no ``object``): opening it is EIO.
    """

    __slots__ = ("kind", "path", "size", "mtime_ns", "artifact", "user", "sha256",
                 "object", "query", "problem")

    def __init__(self, kind: Kind, path: tuple[str, ...], *, size: int = 0,
                 mtime_ns: int = 0, artifact: str | None = None, user: str | None = None,
                 sha256: str | None = None, object: str | None = None,
                 query: Query | None = None, problem: str | None = None) -> None:
        self.kind = kind
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.artifact = artifact
        self.user = user
        self.sha256 = sha256
        self.object = object
        self.query = query
        self.problem = problem

    def __repr__(self) -> str:
        return f"Node({self.kind.value}, /{'/'.join(self.path)})"

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def is_dir(self) -> bool:
        return self.kind not in (Kind.LINK, Kind.AFILE)

    @property
    def immutable(self) -> bool:
        """Contents and attributes never change (the kernel may cache them long)."""
        return self.kind in (Kind.ADIR, Kind.AFILE, Kind.LINK, Kind.ROOT, Kind.TOP)

    @property
    def in_outbox(self) -> bool:
        return bool(self.path) and self.path[0] == "outbox"

    @property
    def user_file(self) -> bool:
        """A file the user saved (not .eio/metadata.yaml or a log): reads are lineage."""
        return self.kind is Kind.AFILE and len(self.path) > 2 and self.path[2] != ".eio"

    def link_target(self) -> str:
        """The relative symlink target ``../../artifacts/<id>`` of a LINK node."""
        return "../" * (len(self.path) - 1) + "artifacts/" + self.name

    def mode(self) -> int:
        if self.kind is Kind.LINK:
            return 0o120777
        if self.kind is Kind.AFILE:
            return 0o100444
        if self.kind is Kind.OUTBOX:
            return 0o041777  # writable by everyone, sticky (like /tmp): owners are uids
        return 0o040555

    def entry_timeout(self) -> float:
        return IMMUTABLE_TIMEOUT if self.immutable else QUERY_TIMEOUT

    def negative_timeout(self) -> float:
        """How long the kernel may remember that a name does not exist in this directory."""
        return IMMUTABLE_TIMEOUT if self.kind in (Kind.ADIR, Kind.ROOT) else QUERY_TIMEOUT


@dataclass(frozen=True)
class Entry:
    """One listed directory entry: its name, its node, and the cursor that follows it."""

    name: str
    node: Node
    cursor: str


def to_ns(t: datetime) -> int:
    """*t* as a node's ``mtime_ns`` (nanoseconds, to the microsecond)."""
    return int(t.timestamp() * 1_000_000) * 1000


# -- owners ---------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def owner_of(user: str | None) -> tuple[int, int]:
    """(uid, gid) of the local account named *user*, else the daemon's own."""
    if user:
        try:
            pw = pwd.getpwnam(user)
            return pw.pw_uid, pw.pw_gid
        except (KeyError, OSError):
            pass
    return os.getuid(), os.getgid()
