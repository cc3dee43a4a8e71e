"""Reads: sizes, ranged GETs, whole small objects, and a seekable file object over
ranged GETs.

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
    """A seekable raw reader over one object, one ranged GET per read."""

    def __init__(self, store: S3Parts, key: str, size: int) -> None:
        self._store, self._key, self._size, self._pos = store, key, size, 0

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

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), max(0, self._size - self._pos))
        if n == 0:
            return 0
        data = self._store.read_range(self._key, self._pos, n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_object(store: S3Parts, key: str) -> io.BufferedReader:
    """A buffered, seekable reader over *key* (4 MiB per ranged GET)."""
    return io.BufferedReader(RangeReader(store, key, store.size(key)), buffer_size=4 << 20)
