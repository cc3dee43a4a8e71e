"""Read-ahead for an ``eio://`` file read in order from its start.

:class:`InOrderReads` serves the reads of :class:`elliptio.urlfs.EioFile` that continue
where reading in order from offset 0 stopped; every other read (a Parquet footer, a
column chunk) fetches exactly its range and never comes here.

- The first read at offset 0 is one ranged GET of at least the file's block size (or the
  read's own size: ``read()`` of a whole file is one GET, handed over without a copy),
  checked piece by piece as it is handed over (:class:`elliptio.verified.InOrderCheck`).
- Once a second block is needed the reader streams: the store's own reader
  (``Store.open``; on S3 one streaming GET of the rest of the file, see
  :class:`elliptio.store.s3.reads.RangeReader`) is read in spans of :data:`SPAN` bytes
  (or of the reader's read size, when that is between :data:`FITTED` and SPAN: then each
  read is handed one span without a copy) by one fetch thread, :data:`AHEAD` bytes ahead
  of the reader; one more thread hashes the spans, in order, each as soon as it has
  arrived. The socket and hashlib both release the GIL, so receiving, hashing and the
  reader's own work overlap, and neither runs on the reader's thread. A span is handed
  over only once it is hashed, so the span holding the last byte is handed over only
  once the digest matched, and a mismatch raises before any of it is handed over.
- In memory at most ``AHEAD + SPAN`` bytes per file (40 MiB), plus the store reader's
  own buffer (4 MiB on S3) and what one read asks for; a closed file stops its stream.

Why these numbers and this shape (``bench/bench_urlfs.py``, SeaweedFS on loopback, 2
cores, where server, sockets and sha256 share the CPU): one streaming GET costs the
server ~20 % less CPU per byte than ranged GETs of 16 MiB (measured 1.6 against 1.9-2.0
core-seconds per GiB), which is the margin that matters on a machine this small; spans of
16 MiB and more cost page faults (glibc maps such buffers afresh: 70,000 faults per GiB
against 14,000 at 8 MiB); slicing 8 MiB reads out of bigger spans cost a tenth of the
reader's CPU (hence fitted spans). See docs/urls.md for the numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from .errors import IntegrityError
from .verified import InOrderCheck

__all__ = ["AHEAD", "FITTED", "SPAN", "InOrderReads"]

#: bytes per read of the stream, unless the reader reads pieces of :data:`FITTED` to
#: SPAN bytes: then the spans are its reads' size, so that each read is handed one span
#: without a copy
SPAN = 8 << 20
FITTED = 2 << 20
#: bytes asked for ahead of the span being handed over (at least two spans)
AHEAD = 32 << 20

Fetch = Callable[[int, int], bytes]  # (start, end) -> exactly those bytes, or raises
#: a reader of the file positioned at the offset given: ``read(n)`` the next n bytes
#: (fewer only where the store's object ends), ``close()``
OpenStream = Callable[[int], BinaryIO]


class InOrderReads:
    """The in-order reads of one file: :meth:`read` at :attr:`next` (module docstring).

    *fetch* gets the first block, on the reader's thread; *open_stream* the rest, called
    and read in the fetch thread. Their errors, and the check's, are raised by the read
    that reaches the span they belong to (and again if that read is repeated), never by
    one that does not.
    """

    def __init__(self, fetch: Fetch, open_stream: OpenStream, check: InOrderCheck,
                 size: int, block_size: int, span: int | None = None,
                 ahead: int | None = None) -> None:
        self._fetch, self._open_stream, self._check = fetch, open_stream, check
        self.size = size
        self._first = block_size
        self._span = SPAN if span is None else span
        self._ahead = AHEAD if ahead is None else ahead
        self._read_size = 0  # of the last read
        self.next = 0  # where reading in order from offset 0 continues (the file moves it)
        # (start, bytes) of the blocks the last read used, contiguous, kept for a reader
        # that seeks back into them
        self._blocks: deque[tuple[int, bytes]] = deque()
        # (start, its GET, it hashed) of the spans asked for, in order
        self._spans: deque[tuple[int, Future[bytes], Future[bytes]]] = deque()
        self._asked_to = 0  # end of the last span asked for
        self._stream: _Stream | None = None  # where the spans come from
        self._fetcher: ThreadPoolExecutor | None = None
        self._hasher: ThreadPoolExecutor | None = None

    def serves(self, pos: int) -> bool:
        """Whether a read at *pos* is this one's: at :attr:`next`, or back in the blocks
        of the last read (``readline`` reads a block, then seeks back after the newline)."""
        low = self._blocks[0][0] if self._blocks else 0
        return low <= pos <= self.next and pos < self.size

    def read(self, pos: int, n: int) -> bytes:
        """*n* bytes from *pos* (:meth:`serves` it), fewer at the end, each piece checked
        before it joins the answer. Nothing is handed over when it raises; the caller moves
        :attr:`next`."""
        stop = min(self.size, pos + n)
        self._read_size = n
        blocks = self._blocks
        while blocks and blocks[0][0] + len(blocks[0][1]) <= pos:  # behind this read
            blocks.popleft()
        pieces = []
        i = 0
        while pos < stop:
            if i == len(blocks):  # contiguous: the next block starts where they end
                blocks.append((pos, self._block_at(pos, stop)))
            b0, block = blocks[i]
            b1 = b0 + len(block)
            i += 1
            if pos >= b1:
                continue
            piece = block[pos - b0:min(stop, b1) - b0]  # the whole block: no copy
            # hashes the first block; a streamed span is hashed already (a no-op then).
            # Before the next block is asked for: the stream's hashing continues from here
            self._check.passing(pos, piece, len(piece))
            pieces.append(piece)
            pos += len(piece)
        while n > self._ahead and len(blocks) > 1:  # a large read: no seeking back in it
            blocks.popleft()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _block_at(self, pos: int, stop: int) -> bytes:
        if pos == 0:  # the first block: maybe all the reader wants (a header, a magic)
            self._drop_spans()
            return self._fetch(0, min(self.size, max(self._first, stop)))
        if not self._spans or self._spans[0][0] != pos:
            self._stream_from(pos)
        block = self._spans[0][2].result()  # a failed span stays: a retry raises again
        self._spans.popleft()
        self._ask_ahead()
        return block

    # -- the stream --------------------------------------------------------------------------
    def _stream_from(self, pos: int) -> None:
        self._drop_spans()
        if self._fetcher is None or self._hasher is None:
            # one fetch thread: its tasks run in submission order, so the spans are read
            # from the stream in order, and closing a stream (a task too) waits for them
            self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="eio-fetch")
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="eio-hash")
        self._stream = _Stream(self._open_stream, pos, self._check.what)
        self._asked_to = pos
        self._ask_ahead()

    def _ask_ahead(self) -> None:
        assert self._fetcher is not None and self._hasher is not None
        assert self._stream is not None
        span = self._read_size if FITTED <= self._read_size <= self._span else self._span
        while (len(self._spans) < max(2, self._ahead // span)
               and self._asked_to < self.size):
            start, end = self._asked_to, min(self.size, self._asked_to + span)
            fetched = self._fetcher.submit(self._stream.read, start, end)
            # one hashing thread, tasks in submission order: spans are hashed in order
            self._spans.append((start, fetched,
                                self._hasher.submit(self._hashed, start, fetched)))
            self._asked_to = end

    def _hashed(self, start: int, fetched: Future[bytes]) -> bytes:
        data = fetched.result()
        self._check.passing(start, data, len(data))  # in order: it extends the hashed prefix
        return data

    def _drop_spans(self) -> None:
        for _, fetched, hashed in self._spans:
            hashed.cancel()
            fetched.cancel()
        self._spans.clear()
        if self._stream is not None:
            assert self._fetcher is not None  # after the span being read, if one is
            self._fetcher.submit(self._stream.close)
            self._stream = None

    def close(self) -> None:
        """Stop the stream: spans not yet fetched are not; one being fetched is dropped."""
        self._drop_spans()
        for pool in (self._fetcher, self._hasher):
            if pool is not None:  # what is left queued: the streams' closing
                pool.shutdown(wait=False)
        self._blocks.clear()


class _Stream:
    """The store's reader of one stream, opened by the first span's read (in the fetch
    thread, like every call here): spans are read in order, each exactly its bytes."""

    def __init__(self, open_stream: OpenStream, start: int, what: str) -> None:
        self._open, self._pos, self._what = open_stream, start, what
        self._reader: BinaryIO | None = None
        self._failed: BaseException | None = None  # the spans after a failed one fail too

    def read(self, start: int, end: int) -> bytes:
        if self._failed is not None:
            raise self._failed
        assert start == self._pos, "spans are read in order"
        try:
            if self._reader is None:
                self._reader = self._open(start)
            data = self._reader.read(end - start)
            if len(data) < end - start:  # fewer only where the store's object ends
                raise IntegrityError(f"{self._what}: the store holds {start + len(data)} "
                                     f"bytes, fewer than the catalogue recorded")
        except BaseException as exc:
            self._failed = exc
            raise
        self._pos = end
        return data

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
