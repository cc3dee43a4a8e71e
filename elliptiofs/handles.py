"""The mount's open files: each file handle the kernel holds maps to the reader's handle
(an artifact's file) or the outbox's (a staged file), and reads, writes, flushes and
releases go to the one that owns it. Plain Python and trio, no pyfuse3."""

from __future__ import annotations

import errno

from .reader import Reader
from .seam import OutboxOps


class Handles:
    """File handles of the mount; directory handles are numbered from the same count."""

    def __init__(self, reader: Reader, outbox: OutboxOps | None) -> None:
        self.reader = reader
        self.outbox = outbox
        self._files: dict[int, tuple[str, int]] = {}  # fh -> ("reader"|"outbox", their fh)
        self._next_fh = 1

    def new(self) -> int:
        """A new handle number."""
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def add(self, kind: str, their: int) -> int:
        """A new handle for *their* handle of the reader (*kind* "reader") or the outbox."""
        fh = self.new()
        self._files[fh] = (kind, their)
        return fh

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        # a memoryview of a fetched part is returned without copying (pyfuse3 takes any
        # buffer)
        kind, their = self._files[fh]
        if kind == "outbox":
            assert self.outbox is not None
            return await self.outbox.read(their, off, size)
        return await self.reader.read(their, off, size)

    async def flush(self, fh: int) -> None:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.flush(their)

    async def fsync(self, fh: int, datasync: bool) -> None:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.fsync(their, datasync)

    async def release(self, fh: int) -> None:
        kind, their = self._files.pop(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            await self.outbox.release(their)
        elif kind == "reader":
            self.reader.release(their)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        kind, their = self._files.get(fh, ("", 0))
        if kind == "outbox" and self.outbox is not None:
            return await self.outbox.write(their, off, buf)
        raise OSError(errno.EROFS, "only the outbox is writable")
