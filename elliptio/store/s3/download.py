"""Downloads: an object into a local file, in parallel ranges, hashed on the way.

Objects larger than :data:`RANGE_SIZE` are fetched in ranges of that size, at most
:data:`DOWNLOAD_STREAMS` at once (more streams win on a WAN; on loopback the server's CPU
decides), each streamed with ``pwrite`` into a temporary beside the destination; the
caller's thread hashes each range, in order, as soon as it has landed (from the page
cache), so hashing overlaps the transfer. Renamed into place at the end; the digest is
returned for the caller to compare with the recorded one.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

from ...errors import StorageError
from ..base import Digest, Progress
from ..files import download_temporary
from . import pool
from .errors import ShortRead, call
from .shared import S3Parts

RANGE_SIZE = 32 << 20
DOWNLOAD_STREAMS = 4


def download(store: S3Parts, key: str, dest: str, progress: Progress = None) -> Digest:
    """Copy *key* to *dest* (replaced whole or not at all); the sha256 of what was written."""
    size = store.size(key)
    tmp = download_temporary(dest)
    h = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            ranges = [(o, min(RANGE_SIZE, size - o)) for o in range(0, size, RANGE_SIZE)]
            if len(ranges) == 1:
                h = _fetch_into(store, key, fd, 0, size, progress, want_hash=True)
            elif ranges:
                with open(tmp, "rb") as back:
                    def hash_range(span: tuple[int, int]) -> None:
                        offset, length = span
                        while length:
                            chunk = os.pread(back.fileno(), min(pool.CHUNK * 4, length),
                                             offset)
                            if not chunk:
                                raise StorageError(f"{key}: range vanished from {tmp}")
                            h.update(chunk)
                            offset += len(chunk)
                            length -= len(chunk)

                    def fetch(o: int, n: int) -> tuple[int, int]:
                        _fetch_into(store, key, fd, o, n, progress)
                        return o, n

                    pool.run_bounded(store.pool, [functools.partial(fetch, o, n)
                                                  for o, n in ranges],
                                     consume=hash_range, window=DOWNLOAD_STREAMS)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as exc:
        raise StorageError(f"{key} -> {dest}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Digest(h.hexdigest(), size)


def _fetch_into(store: S3Parts, key: str, fd: int, offset: int, length: int,
                progress: Progress, want_hash: bool = False) -> Any:
    """One ranged GET of [offset, offset+length) streamed into *fd* at its offset,
    retried whole (the bytes are simply written again); returns the sha256 object of
    the range if *want_hash*."""
    s3key = store._key(key)

    def get() -> Any:
        hasher = hashlib.sha256() if want_hash else None
        resp = store.client.get_object(Bucket=store.bucket, Key=s3key,
                                       Range=f"bytes={offset}-{offset + length - 1}")
        body = resp["Body"]
        pos = offset
        try:
            while chunk := body.read(pool.CHUNK):
                if pos + len(chunk) > offset + length:
                    raise ShortRead("server sent more bytes than the range asked")
                os.pwrite(fd, chunk, pos)
                if hasher is not None:
                    hasher.update(chunk)
                pos += len(chunk)
                if progress:
                    progress(len(chunk))
        except BaseException:
            if progress and pos > offset:
                progress(offset - pos)  # a retry sends them again
            raise
        finally:
            body.close()
        if pos != offset + length:
            if progress:
                progress(offset - pos)
            raise ShortRead(f"got {pos - offset} of {length} bytes")
        return hasher

    return call(key, get)
