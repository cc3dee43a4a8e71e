"""The in-order sha256 of one open file of the mount: what keeps substituted bytes from
being read through the mount as a complete file (docs/mount.md, "Verified reads").

A file read in order from offset 0 is hashed as its reads complete; the read of its last
range (the one that would complete it) waits until the digest covers everything before
it, and is refused (``IntegrityError``, EIO) when the digest does not match the recorded
sha256, so the reader never gets the end of a file whose bytes differ. The kernel keeps
several read-ahead requests of a file in flight and they complete in any order, so a
read that completes ahead of the hashed position is kept (a reference to bytes already
in memory) while the read before it is still in flight, and hashed when the gap fills.

A reader that jumps (a Parquet footer, a column chunk, ``tail``) gets exactly the bytes
it asks for: a part of a file cannot be checked against a whole-file digest. Hashing
costs CPU only (``hashlib`` over bytes the reader fetched anyway), on the trio thread.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from itertools import count
from typing import Any

import trio

#: a completed read starting at most this far past the hashed position is kept for the
#: hash while the reads before it are in flight (the kernel's read-ahead window at most,
#: as elliptiofs.reader.SLACK)
WINDOW = 8 << 20


class InOrderCheck:
    """The in-order digest of one open file and, once its recorded size is reached, the
    verdict: True (the bytes match), False (they do not), None (not read in order yet).

    Trio-thread only. Every method but :meth:`settled` runs without awaiting, so each is
    atomic under trio's scheduling: :meth:`arrived` takes a read's bytes into the hash and
    drops it from the reads in flight in one step, and a waiting :meth:`settled` sees
    both or neither.
    """

    __slots__ = ("sha256", "size", "hashed", "verdict", "_hash", "_pending", "_inflight",
                 "_tokens", "_changed")

    def __init__(self, sha256: str, size: int) -> None:
        self.sha256 = sha256
        self.size = size
        self.hashed = 0  # bytes [0, hashed) are in _hash
        self.verdict: bool | None = None
        self._hash = hashlib.sha256()
        self._pending: dict[int, Any] = {}  # start -> bytes of a read completed ahead
        self._inflight: dict[int, tuple[int, int]] = {}  # token -> [start, end) being read
        self._tokens = count()
        self._changed = trio.Event()

    def started(self, start: int, end: int) -> int:
        """A read of [start, end) begins; its token for :meth:`arrived` / :meth:`failed`."""
        token = next(self._tokens)
        self._inflight[token] = (start, end)
        return token

    def failed(self, token: int) -> None:
        del self._inflight[token]
        if not self._gap_in_flight():
            self._pending.clear()  # nothing will fill the gap before them
        self._wake()

    def arrived(self, token: int, start: int, data: Any) -> None:
        """The read *token* returned *data* (bytes or a memoryview) at *start*."""
        del self._inflight[token]
        self._feed(start, data)
        self._wake()

    async def settled(self, start: int, data: Any) -> bool | None:
        """For the read of the file's last range, at *start*, after :meth:`arrived`: wait
        while the reads before it are in flight, then the verdict (None: the file was not
        read in order up to *start*, so these bytes go unchecked)."""
        while self.verdict is None:
            if self.hashed >= start:  # reached, but it was not kept: take it now
                self._feed(start, data)
                break
            if not self._gap_in_flight():
                return None
            changed = self._changed
            await changed.wait()
        return self.verdict

    def _gap_in_flight(self) -> bool:
        """Whether a read in flight covers the hashed position (the hash can advance)."""
        return any(s <= self.hashed < e for s, e in self._inflight.values())

    def _feed(self, start: int, data: Any) -> None:
        end = start + len(data)
        if start <= self.hashed < end:
            self._take(start, data)
            while self._pending:
                first = min(self._pending)
                if first > self.hashed:
                    break
                self._take(first, self._pending.pop(first))
            if self.hashed >= self.size:
                self.verdict = self._hash.hexdigest() == self.sha256
                self._pending.clear()
        elif (self.verdict is None and self.hashed < start <= self.hashed + WINDOW
              and self._gap_in_flight()):
            kept = self._pending.get(start)
            if kept is None or len(kept) < len(data):
                self._pending[start] = data

    def _take(self, start: int, data: Any) -> None:
        if start + len(data) > self.hashed:
            self._hash.update(memoryview(data)[self.hashed - start:])
            self.hashed = start + len(data)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class Verdicts:
    """What reads in order to the end found, by (object key, sha256, size): True when the
    bytes matched. At most *limit* kept, the least recently told forgotten first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: OrderedDict[tuple[str, str, int], bool] = OrderedDict()

    def get(self, key: str, sha256: str, size: int) -> bool | None:
        return self._known.get((key, sha256, size))

    def put(self, key: str, sha256: str, size: int, verdict: bool) -> None:
        self._known[(key, sha256, size)] = verdict
        self._known.move_to_end((key, sha256, size))
        while len(self._known) > self.limit:
            self._known.popitem(last=False)
