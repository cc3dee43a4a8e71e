"""Ranged reads of store objects, with read-ahead for sequential readers.

One :class:`Reader` serves every open file of the mount. Each open file is a
:class:`Stream` over one store key (the object of the file: another artifact's key when the
content was deduplicated). Reads are served like this:

- A reader that jumps around, or has read little so far, gets exactly the range it asked
  for (one ranged GET): ``cat`` of a 4 KiB file costs one small request, not a big part.
- Once a stream has read sequentially for :data:`STREAM_AFTER` bytes, the object is
  fetched in aligned parts of :data:`PART` bytes, several ahead of the reader in parallel
  (the window doubles from one part up to :data:`MAX_AHEAD`), so the network stays busy
  while the kernel consumes the current part.
- Every part in memory is charged to one global :class:`Budget`. Parts ahead of the
  reader are only fetched when the budget allows; the part a reader is waiting for is
  always fetched (at most one per stream beyond the budget). This bounds the daemon's
  memory however many files are open.

Store calls run in worker threads (never on the trio thread; :class:`Workers`); retries
happen inside the store (one exception, listed in :mod:`elliptio.store.retry`: a failed
prefetch is asked for again by the read that wants it). A short object (fewer bytes than
the catalogue recorded) is an :class:`~elliptio.errors.IntegrityError`: wrong bytes are
never returned.

Verified reads (:mod:`elliptiofs.inorder`): every open file with a recorded sha256 is
hashed in order from offset 0 as its reads complete, and the read that would complete the
file is refused (``IntegrityError``, EIO) when the bytes do not match: ``cat``,
``sha256sum``, ``cp``, ``rsync`` or a loader reading a file through never get all of a
substituted file. A reader that jumps gets exactly the bytes it asks for, unchecked (a
range cannot be checked against a whole-file digest). The verdict is remembered per
object and digest: a file found not to match refuses every later open, and only a file
found to match is opened with the kernel's page cache kept (:meth:`Reader.keeps_cache`),
so that a later read in order comes through the daemon and is checked again rather than
being served from pages an unchecked read left in the cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from itertools import count
from typing import Any

import trio

from elliptio.errors import IntegrityError, NotFound, StorageError
from elliptio.store import Store

from .inorder import InOrderCheck, Verdicts
from .workers import Workers

log = logging.getLogger(__name__)

PART = 8 << 20
MAX_AHEAD = 4
STREAM_AFTER = 1 << 20
#: a request starting this close to where the last one ended is still sequential: the
#: kernel's read-ahead window at most (4 MiB, doubled by FADV_SEQUENTIAL)
SLACK = 8 << 20
#: default global memory budget for parts in memory (bytes)
DEFAULT_BUDGET = 256 << 20
#: store requests in flight at once
DEFAULT_IO_THREADS = 16
#: of which prefetches of small files (elliptiofs.scan) may take
PREFETCH_THREADS = 8
#: prefetched objects kept at most, and for at most this many seconds unless opened
PREFETCH_MAX = 256
PREFETCH_TTL = 30.0
#: small objects remembered as read whole (not prefetched again)
SERVED_MAX = 16384
#: verdicts of verified reads remembered (object, sha256, size -> bytes match)
VERDICTS_MAX = 16384
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class Budget:
    """Bytes of part data in memory, across all streams. Trio-thread only (no locking:
    take/give never await, so each is atomic under trio's scheduling)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def try_take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.take(n)
        return True

    def take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def give(self, n: int) -> None:
        self.used -= n


class _Part:
    __slots__ = ("start", "length", "done", "data", "error", "charged", "dropped", "born",
                 "prefetched")

    def __init__(self, start: int, length: int, charged: int) -> None:
        self.start = start
        self.length = length
        self.done = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None
        self.charged = charged
        self.dropped = False
        self.born = 0.0
        self.prefetched = False


class Stream:
    """One open file: its key, size, recorded sha256 (None: none recorded, as for
    metadata.yaml), the parts fetched ahead of its reader, and its in-order check."""

    __slots__ = ("key", "size", "sha256", "check", "next_off", "sequential", "ahead",
                 "parts")

    def __init__(self, key: str, size: int, sha256: str | None = None) -> None:
        self.key = key
        self.size = size
        self.sha256 = sha256
        self.check = InOrderCheck(sha256, size) if sha256 is not None else None
        self.next_off = 0
        self.sequential = 0  # bytes read in order since the last jump
        self.ahead = 1  # parts fetched ahead of the reader (doubles up to MAX_AHEAD)
        self.parts: dict[int, _Part] = {}


class Reader:
    """Serves reads of every open file. Create it on the trio thread; :meth:`close` it."""

    def __init__(self, store: Store | Callable[[], Store], *, budget: int = DEFAULT_BUDGET,
                 io_threads: int = DEFAULT_IO_THREADS) -> None:
        self._store = store
        self.budget = Budget(budget)
        self._io = Workers(io_threads, "eio-read")
        self._streams: dict[int, Stream] = {}
        self._fh = count(1)
        # whole small objects fetched ahead of their open (scan read-ahead), oldest first
        self._prefetched: OrderedDict[str, _Part] = OrderedDict()
        self._prefetched_bytes = 0
        self._prefetch_io = Workers(PREFETCH_THREADS, "eio-prefetch")
        # small objects recently read whole through the mount: opened with keep_cache,
        # their pages are most likely still in the kernel's page cache (a second pass of
        # a scan is served there; prefetching them again would only cost GETs)
        self._served: OrderedDict[str, None] = OrderedDict()
        self.verdicts = Verdicts(VERDICTS_MAX)  # of files read in order to their end

    @property
    def store(self) -> Store:
        s = self._store
        return s if isinstance(s, Store) else s()

    def _expire_prefetched(self) -> float:
        """Drop prefetches older than :data:`PREFETCH_TTL` (and beyond
        :data:`PREFETCH_MAX`); returns the current trio time."""
        now = trio.current_time()
        while self._prefetched:
            oldest_key, oldest = next(iter(self._prefetched.items()))
            if oldest.born > now - PREFETCH_TTL and len(self._prefetched) < PREFETCH_MAX:
                break
            del self._prefetched[oldest_key]
            self._prefetched_bytes -= oldest.length
            self._drop(oldest)
        return now

    def open(self, key: str, size: int, sha256: str | None = None) -> int:
        """A handle for reading *key* of *size* bytes, checked against *sha256* when given
        (module docstring); ``IntegrityError`` when its bytes are known not to match."""
        if sha256 is not None and (self.verdicts.get(key, sha256, size) is False
                                   or (size == 0 and sha256 != EMPTY_SHA256)):
            raise IntegrityError(f"{key}: content does not match its recorded sha256")
        if self._prefetched:
            self._expire_prefetched()
        fh = next(self._fh)
        stream = self._streams[fh] = Stream(key, size, sha256)
        part = self._prefetched.pop(key, None)
        if part is not None:
            self._prefetched_bytes -= part.length
            if part.length == size and part.error is None:
                stream.parts[0] = part  # the stream owns it now (released with it)
            else:
                self._drop(part)
        return fh

    def prefetch(self, key: str, size: int) -> None:
        """Fetch the whole (small) object *key* now, for an ``open`` expected soon
        (:mod:`elliptiofs.scan`). Within a quarter of the memory budget; the oldest
        prefetches not opened within :data:`PREFETCH_TTL` seconds are dropped."""
        now = self._expire_prefetched()
        if key in self._prefetched or key in self._served or not 0 < size <= PART:
            return
        if self._prefetched_bytes + size > self.budget.limit // 4 \
                or not self.budget.try_take(size):
            return
        part = _Part(0, size, size)
        part.born, part.prefetched = now, True
        self._prefetched[key] = part
        self._prefetched_bytes += size
        self._fill(key, part, self._prefetch_io)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, another blocking store call, on the reader's I/O threads."""
        return await self._io.run(fn, *args)

    def close(self) -> None:
        """Stop the worker threads (calls under way finish; their outcome is dropped)."""
        self._io.close()
        self._prefetch_io.close()

    def keeps_cache(self, fh: int) -> bool:
        """Whether the kernel may keep its cached pages of *fh*'s file across opens: when
        its bytes have been checked (or it has no recorded digest). Otherwise the open
        drops them, so a read in order is served here, and checked."""
        return self._known_good(self._streams[fh])

    def _known_good(self, stream: Stream) -> bool:
        return stream.sha256 is None or \
            self.verdicts.get(stream.key, stream.sha256, stream.size) is True

    def release(self, fh: int) -> None:
        stream = self._streams.pop(fh, None)
        if stream is not None:
            if stream.size <= PART and stream.next_off >= stream.size \
                    and self._known_good(stream):
                self._served[stream.key] = None
                self._served.move_to_end(stream.key)
                if len(self._served) > SERVED_MAX:
                    self._served.popitem(last=False)
            for part in stream.parts.values():
                self._drop(part)
            stream.parts.clear()

    def __len__(self) -> int:
        return len(self._streams)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        stream = self._streams[fh]
        if off >= stream.size or size <= 0:
            return b""
        size = min(size, stream.size - off)
        check = stream.check
        if check is None:
            return await self._read(stream, off, size)
        if check.verdict is False:
            raise IntegrityError(f"{stream.key}: content does not match its recorded sha256")
        token = check.started(off, off + size)
        try:
            data = await self._read(stream, off, size)
        except BaseException:
            check.failed(token)
            raise
        check.arrived(token, off, data)
        if off + size < stream.size:
            if check.verdict is not None:  # this read completed the digest
                self.verdicts.put(stream.key, check.sha256, stream.size, check.verdict)
            return data
        # the read that completes the file waits for the reads before it, and is refused
        # if the whole does not match (a reader that jumped here gets it unchecked)
        verdict = await check.settled(off, data)
        if verdict is not None:
            self.verdicts.put(stream.key, check.sha256, stream.size, verdict)
        if verdict is False:
            raise IntegrityError(f"{stream.key}: content does not match its recorded "
                                 "sha256 (read in order to its end)")
        return data

    async def _read(self, stream: Stream, off: int, size: int) -> bytes | memoryview:
        # The kernel keeps several read-ahead requests of one file in flight and they are
        # served concurrently, so they arrive (and resume) out of order: a request near
        # the reader's position, or inside a part already fetched, is sequential; only a
        # far jump restarts the read-ahead.
        if (abs(off - stream.next_off) <= SLACK
                or (stream.sequential > STREAM_AFTER and self._covered(stream, off, size))):
            stream.sequential += size
            stream.next_off = max(stream.next_off, off + size)
        else:
            stream.sequential = size
            stream.ahead = 1
            stream.next_off = off + size
            self._drop_all(stream)
        if stream.sequential <= STREAM_AFTER and not self._covered(stream, off, size):
            return await self._fetch_exact(stream.key, off, size)
        return await self._read_parts(stream, off, size)

    # -- parts ------------------------------------------------------------------------
    def _covered(self, stream: Stream, off: int, size: int) -> bool:
        return all(i in stream.parts for i in range(off // PART, (off + size - 1) // PART + 1))

    async def _read_parts(self, stream: Stream, off: int, size: int) -> bytes | memoryview:
        first, last = off // PART, (off + size - 1) // PART
        # the parts the reader waits for, whatever the budget says
        wanted = []
        for i in range(first, last + 1):
            if i not in stream.parts:
                self._start_part(stream, i, force=True)
            wanted.append(stream.parts[i])
        # parts well behind the reader are done with (one is kept: concurrent requests
        # of the part before may still arrive)
        for i in [i for i in stream.parts if i < first - 1]:
            self._drop(stream.parts.pop(i))
            stream.ahead = min(MAX_AHEAD, stream.ahead * 2)
        last_part = (stream.size - 1) // PART
        for i in range(last + 1, min(last + stream.ahead, last_part) + 1):
            if i not in stream.parts and not self._start_part(stream, i, force=False):
                break
        # the parts are this request's own references: a part dropped from the stream
        # while we wait (a jump, a release) still holds its data until we are done
        chunks: list[memoryview] = []
        for part in wanted:
            await part.done.wait()
            if part.error is not None:
                if stream.parts.get(part.start // PART) is part:
                    del stream.parts[part.start // PART]
                    self._drop(part)
                if part.prefetched:
                    # fetched ahead, maybe long before: this read asks the store itself
                    return await self._fetch_exact(stream.key, off, size)
                raise part.error
            assert part.data is not None
            lo = max(off, part.start) - part.start
            hi = min(off + size, part.start + part.length) - part.start
            chunks.append(memoryview(part.data)[lo:hi])
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def _start_part(self, stream: Stream, index: int, *, force: bool) -> bool:
        start = index * PART
        length = min(PART, stream.size - start)
        if force:
            self.budget.take(length)
        elif not self.budget.try_take(length):
            return False
        part = _Part(start, length, length)
        stream.parts[index] = part
        self._fill(stream.key, part, self._io)
        return True

    def _fill(self, key: str, part: _Part, workers: Workers) -> None:
        """Fetch *part* of *key* in the background; its ``done`` is set when it is in."""
        def done(data: Any, error: BaseException | None) -> None:
            try:
                part.data = self._checked(key, part.start, part.length, data, error)
            except BaseException as exc:  # noqa: BLE001 - the reader maps it to EIO
                part.error = exc
            finally:
                part.done.set()
                if part.dropped:
                    self._release_charge(part)

        workers.submit(self.store.read_range, (key, part.start, part.length), done)

    def _drop(self, part: _Part) -> None:
        part.dropped = True
        if part.done.is_set():
            self._release_charge(part)
        # else: _fill releases the charge when the fetch returns

    def _release_charge(self, part: _Part) -> None:
        # the data itself goes when the last request holding the part is answered
        if part.charged:
            self.budget.give(part.charged)
            part.charged = 0

    def _drop_all(self, stream: Stream) -> None:
        for part in stream.parts.values():
            self._drop(part)
        stream.parts.clear()

    async def _fetch_exact(self, key: str, off: int, length: int) -> bytes:
        try:
            data, error = await self._io.run(self.store.read_range, key, off, length), None
        except Exception as exc:
            data, error = None, exc
        return self._checked(key, off, length, data, error)

    @staticmethod
    def _checked(key: str, off: int, length: int, data: bytes | None,
                 error: BaseException | None) -> bytes:
        """The bytes of a store read, or the error the reader reports for it."""
        if isinstance(error, NotFound):
            # the catalogue lists the file, so a missing object is a store failure (EIO)
            raise StorageError(f"{key}: object missing from the store") from error
        if error is not None:
            raise error
        assert data is not None
        if len(data) != length:
            raise IntegrityError(f"{key}: the store returned {len(data)} bytes at offset "
                                 f"{off}, the catalogue recorded more ({length} expected)")
        return data
