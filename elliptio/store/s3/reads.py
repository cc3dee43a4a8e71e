"""Reads: sizes, ranged GETs, whole small objects, and a seekable file object that
streams what is read in order (:class:`RangeReader`).

:func:`read_range` asks the signed-GET fast path (:mod:`.fastpath`) first, which gets
the bytes without botocore's per-request cost or gives up (:class:`.fastpath.Fallback`);
then the request is repeated once through botocore (:func:`get`), whose errors, retries
(:func:`.errors.call`) and messages are the only ones a caller sees.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from .errors import ShortRead, call, error_code
from .fastpath import Fallback
from .shared import S3Parts

log = logging.getLogger(__name__)


def size(store: S3Parts, key: str) -> int:
    """The size of *key* (a HEAD request); ``NotFound`` if it is missing."""
    s3key = store._key(key)
    head = call(key, lambda: store.client.head_object(Bucket=store.bucket, Key=s3key))
    return int(head["ContentLength"])


def read_range(store: S3Parts, key: str, offset: int, length: int) -> bytes:
    """Up to *length* bytes of *key* from *offset* (fewer only at the end)."""
    if length <= 0:
        return b""
    fast = store._fast_getter()
    if fast is not None:
        try:
            return fast.get_range(store._key(key), offset, length)
        except Fallback as exc:  # botocore repeats it: its errors, its retries
            log.debug("%s: fast GET fell back to botocore (%s)", key, exc)
    return get(store, key, f"bytes={offset}-{offset + length - 1}", length)


def get(store: S3Parts, key: str, byte_range: str | None = None,
        most: int | None = None) -> bytes:
    """One GET (of *byte_range*, at most *most* bytes), the whole body read, retried
    whole when the body ends early. A range starting past the end gives ``b""``."""
    s3key = store._key(key)
    extra = {"Range": byte_range} if byte_range else {}

    def request() -> bytes:
        from botocore.exceptions import ClientError

        try:
            resp = store.client.get_object(Bucket=store.bucket, Key=s3key, **extra)
        except ClientError as exc:
            if byte_range and error_code(exc) == "InvalidRange":  # offset at or past the end
                return b""
            raise
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        if len(data) != int(resp.get("ContentLength", len(data))):
            raise ShortRead(f"got {len(data)} of {resp.get('ContentLength')} bytes")
        if most is not None and len(data) > most:
            raise ShortRead(f"server sent {len(data)} bytes for a {most}-byte range")
        return data

    return call(key, request)


class RangeReader(io.RawIOBase):
    """A seekable raw reader over one object of *size* bytes, for readers of both kinds:

    - a read that starts where the last one ended continues one streaming GET of the
      rest of the object (:class:`_Stream`: its body read as the reader asks, no request
      per read, and on one connection the server sends without pausing);
    - any other read (the first, a read after a seek: a Parquet footer, a column chunk)
      is one ranged GET of exactly its bytes (:func:`read_range`), so a reader that jumps
      fetches only what it reads, and a seek leaves an open stream behind (closed).

    ``read(n)`` hands over the bytes the socket read made (no copy); ``readinto`` copies
    them once. Not thread-safe: one reader, one thread at a time.
    """

    def __init__(self, store: S3Parts, key: str, size: int) -> None:
        self._store, self._key, self._size, self._pos = store, key, size, 0
        self._ended = -1  # where the last read ended: a read there streams
        self._stream: _Stream | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self._size - self._pos)
        n = left if size is None or size < 0 else min(size, left)
        if n == 0:
            return b""
        stream = self._streaming()
        data = (read_range(self._store, self._key, self._pos, n) if stream is None
                else stream.read(n))
        self._moved(len(data))
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), max(0, self._size - self._pos))
        if n == 0:
            return 0
        stream = self._streaming()
        if stream is None:
            data = read_range(self._store, self._key, self._pos, n)
            view[: len(data)] = data
            got = len(data)
        else:
            got = stream.readinto(view[:n])
        self._moved(got)
        return got

    def _streaming(self) -> _Stream | None:
        """The stream this read continues (opened now if it starts where the last read
        ended), or None: a ranged GET."""
        stream = self._stream
        if stream is not None and stream.pos != self._pos:
            stream.close()  # the reader moved away: the rest of that body is not wanted
            stream = self._stream = None
        if stream is None and self._pos == self._ended:
            stream = self._stream = _Stream(self._store, self._key, self._pos, self._size)
        return stream

    def _moved(self, n: int) -> None:
        self._pos += n
        self._ended = self._pos

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


class _Stream:
    """One GET of the object from *start* to its *end* (exclusive), its body read in
    order: :meth:`read` hands over the next bytes and moves :attr:`pos`.

    Opened through the signed fast path when it answers with the range, else through
    botocore. Each :meth:`read` is one request of the one retry path (:func:`call`): a
    body cut short (a reset, a timeout, fewer bytes than its Content-Length) is
    dropped and the stream opened again at :attr:`pos` — the bytes handed over stay the
    only ones read — until the retries are spent (``TransientStorageError``).
    """

    def __init__(self, store: S3Parts, key: str, start: int, end: int) -> None:
        self._store, self._key, self.pos, self._end = store, key, start, end
        self._body: Any = None

    def read(self, n: int) -> bytes:
        n = min(n, self._end - self.pos)
        data = call(self._key, lambda: self._next(n, None))
        self.pos += len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        """Exactly ``len(view)`` bytes (at most to the end) received into *view*."""
        n = min(len(view), self._end - self.pos)
        call(self._key, lambda: self._next(n, view[:n]))
        self.pos += n
        return n

    def _next(self, n: int, into: memoryview | None) -> bytes:
        """The next *n* bytes (or *n* of them received *into* a buffer: ``b""`` then)."""
        if self._body is None:
            self._body = self._open()
        try:
            if into is None:
                data = self._body.read(n)
                got = len(data)
            elif hasattr(self._body, "readinto"):  # the fast path's: straight from the socket
                data, got = b"", 0
                while got < n and (k := self._body.readinto(into[got:])):
                    got += k
            else:  # botocore's body reads bytes only
                data = self._body.read(n)
                into[:len(data)] = data
                got, data = len(data), b""
        except Exception as exc:  # noqa: BLE001 - any failure of a body read: read again
            self.close()
            raise ShortRead(f"the body broke at byte {self.pos} ({type(exc).__name__}: "
                            f"{exc})") from exc
        if got != n:
            self.close()
            raise ShortRead(f"the body ended at byte {self.pos + got}, before "
                            f"{self._end}")
        return data

    def _open(self) -> Any:
        s3key, length = self._store._key(self._key), self._end - self.pos
        fast = self._store._fast_getter()
        if fast is not None:
            try:
                return fast.open_range(s3key, self.pos, length)
            except Fallback as exc:  # botocore opens it: its errors, its retries
                log.debug("%s: fast stream fell back to botocore (%s)", self._key, exc)
        resp = self._store.client.get_object(Bucket=self._store.bucket, Key=s3key,
                                             Range=f"bytes={self.pos}-{self._end - 1}")
        if int(resp.get("ContentLength", length)) != length:
            resp["Body"].close()
            raise ShortRead(f"got a body of {resp.get('ContentLength')} for {length} bytes")
        return resp["Body"]

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()


def open_object(store: S3Parts, key: str) -> io.BufferedReader:
    """A buffered, seekable reader over *key* (:class:`RangeReader`; 4 MiB buffered)."""
    return io.BufferedReader(RangeReader(store, key, store.size(key)), buffer_size=4 << 20)
