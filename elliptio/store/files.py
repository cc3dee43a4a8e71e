"""Local files as the stores meet them: a source read while it is hashed, a download
written to a temporary beside its destination and renamed into place, and what an
``OSError`` means in :mod:`elliptio.errors` terms.

Shared by the local and the in-memory store (whose objects are local files or bytes);
the S3 store writes its downloads in parallel ranges, but under the same temporary name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from ..errors import Immutable, NotFound, StorageError
from .base import Digest, Progress

CHUNK = 1 << 20


def os_error(exc: OSError, what: str) -> Exception:
    """One ``OSError`` → one :mod:`elliptio.errors` exception."""
    if exc.errno == errno.ENOENT:
        return NotFound(f"{what}: no such object")
    if exc.errno == errno.EEXIST:
        return Immutable(f"{what}: already exists and is locked")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{what}: permission denied ({exc.strerror})")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"{what}: no space left on the store's device")
    return StorageError(f"{what}: {exc.strerror or exc}")


def hash_stream(src: BinaryIO, most: int | None = None) -> Digest:
    """The sha256 and size of what *src* holds, read in 1 MiB chunks; with *most*, reading
    stops once more than *most* bytes were seen (enough to know the size is wrong)."""
    h = hashlib.sha256()
    size = 0
    while (most is None or size <= most) and (chunk := src.read(CHUNK)):
        h.update(chunk)
        size += len(chunk)
    return Digest(h.hexdigest(), size)


def copy_hashing(src: BinaryIO, dst: BinaryIO, progress: Progress = None) -> Digest:
    """Copy *src* to *dst* in 1 MiB chunks, hashing once on the way."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            break
        h.update(view[:n])
        dst.write(view[:n])
        size += n
        if progress:
            progress(n)
    return Digest(h.hexdigest(), size)


def download_temporary(dest: str) -> str:
    """Where a download to *dest* is written before it is renamed into place: beside it
    (same filesystem, so the rename is atomic), hidden, and unique."""
    d = os.path.dirname(os.path.abspath(dest))
    return os.path.join(d, f".{os.path.basename(dest)}.eio-download-{secrets.token_hex(4)}")


def download_from(src: BinaryIO, dest: str, what: str, progress: Progress = None) -> Digest:
    """Copy *src* to the local path *dest* through :func:`download_temporary`, hashing on
    the way; *dest* is replaced whole or not at all."""
    tmp = Path(download_temporary(dest))
    try:
        with open(tmp, "xb") as dst:
            digest = copy_hashing(src, dst, progress)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, f"{what} -> {dest}") from exc
    return digest
