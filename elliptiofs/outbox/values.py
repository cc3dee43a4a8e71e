"""The plain values the outbox answers and takes (:class:`Attrs`, :class:`Space`,
:class:`Change`): ops copies them into and out of pyfuse3's objects, so nothing in the
outbox needs pyfuse3.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attrs:
    """What stat shows of an outbox node (ops adds the inode, blocks and block size)."""

    mode: int
    size: int
    nlink: int
    uid: int
    gid: int
    mtime_ns: int
    entry_timeout: float
    attr_timeout: float


@dataclass(frozen=True)
class Space:
    """The spool's file system, as statvfs counts it (in *block_size* blocks)."""

    block_size: int
    blocks: int
    free: int
    available: int
    files_available: int


@dataclass(frozen=True)
class Change:
    """A setattr: the fields to change (None: leave as it is)."""

    size: int | None = None
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    mtime_ns: int | None = None
