"""Writes: staging (hashing) a source file, then one PUT or a multipart upload.

Every object is written with the bucket's Object Lock retention
(:meth:`.bucket.ObjectLock.write_args`) and ``If-None-Match: *``, so nothing is
overwritten. Small files (< :data:`MULTIPART_THRESHOLD`) are read once into memory while
hashing and sent in one PUT with their SHA-256 as the S3 checksum, so the server rejects
corrupted bytes. Large files are hashed in :func:`stage` (the save path needs the digest to
deduplicate before anything is uploaded: a locked upload cannot be taken back) and uploaded
in :meth:`S3Staged.commit` as a multipart upload whose parts are read with ``pread`` and
sent concurrently, each with its own CRC32 checksum, which the server checks. (S3 has no
whole-file SHA-256 for multipart uploads — its SHA256 mode is a checksum of part
checksums — so the file's SHA-256 is the recorded one, checked on every full read; per
part, CRC32 guards the transfer at a fraction of the CPU a second SHA-256 pass costs on
client and server: 0.72× → 0.80× boto3 on a 1 GiB save here.) A source file that changed
between the two reads (size, mtime or inode) is refused. An interrupted multipart upload
is aborted; what a killed process leaves is an incomplete upload that ``eio fsck`` finds
(:func:`.listing.artifact_dirs`) and removes (:mod:`.orphans`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import zlib
from typing import Any

from ...errors import ElliptioError, Immutable, IntegrityError, NotFound, StorageError
from ..base import Digest, Progress, Staged
from . import pool
from .errors import call
from .shared import S3Parts

log = logging.getLogger(__name__)

#: files below this size go up in one PUT (read into memory once, hashed on the way)
MULTIPART_THRESHOLD = 16 << 20
#: multipart part size (grown for files that would need more than MAX_PARTS parts)
PART_SIZE = 8 << 20
MAX_PARTS = 9000

#: what identifies a source file's content between staging and upload
Fingerprint = tuple[int, int, int, int]


class _SourceChanged(Exception):
    pass


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3Staged(Staged):
    """A hashed source file not yet uploaded (large) or held in memory (small)."""

    def __init__(self, store: S3Parts, key: str, source: str, digest: Digest,
                 data: bytes | None, fingerprint: Fingerprint, progress: Progress) -> None:
        self.store, self.key, self.source, self.digest = store, key, source, digest
        self._progress = progress  # uploads report to the callback given to stage()
        self._data, self._fingerprint = data, fingerprint
        self._sha_b64 = _b64(bytes.fromhex(digest.sha256))

    def commit(self, progress: Progress = None) -> None:
        progress = progress or self._progress
        try:
            if self._data is not None:
                put(self.store, self.key, self._data, self._sha_b64)
                if progress:
                    progress(len(self._data))
            else:
                multipart(self.store, self.key, self.source, self.digest.size,
                          self._fingerprint, progress)
        finally:
            self._data = None

    def discard(self) -> None:
        self._data = None


def stage(store: S3Parts, key: str, source: str, progress: Progress = None) -> S3Staged:
    """Read *source* once: into memory while hashing (small), or only hashing (large)."""
    store._key(key)  # validate before reading anything
    try:
        with open(source, "rb") as f:
            st = os.fstat(f.fileno())
            fingerprint = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
            if st.st_size < MULTIPART_THRESHOLD:
                data = f.read()
                digest = Digest(hashlib.sha256(data).hexdigest(), len(data))
                return S3Staged(store, key, source, digest, data, fingerprint, progress)
            h = hashlib.sha256()
            size = 0
            buf = bytearray(pool.CHUNK * 4)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
    except OSError as exc:
        raise StorageError(f"{source}: {exc.strerror or exc}") from exc
    return S3Staged(store, key, source, Digest(h.hexdigest(), size), None, fingerprint,
                    progress)


def put_bytes(store: S3Parts, key: str, data: bytes) -> None:
    put(store, key, data, _b64(hashlib.sha256(data).digest()))


def put(store: S3Parts, key: str, data: bytes, sha_b64: str) -> None:
    """One locked PUT of *data*, refused if *key* exists, checked against *sha_b64*."""
    s3key = store._key(key)
    args = store.lock.write_args(store)

    def send() -> None:
        store.client.put_object(Bucket=store.bucket, Key=s3key, Body=data,
                                ChecksumSHA256=sha_b64, IfNoneMatch="*", **args)

    call(key, send)


def multipart(store: S3Parts, key: str, source: str, size: int, fingerprint: Fingerprint,
              progress: Progress) -> None:
    """Upload *source* to *key* in parts; aborted unless it completes."""
    s3key = store._key(key)
    part_size = max(PART_SIZE, -(-size // MAX_PARTS))
    args = store.lock.write_args(store)
    fd = _open_unchanged(source, fingerprint, key)
    upload_id: str | None = None
    try:
        if store.exists(key):
            raise Immutable(f"{key}: already exists and is locked")
        upload_id = call(key, lambda: store.client.create_multipart_upload(
            Bucket=store.bucket, Key=s3key, ChecksumAlgorithm="CRC32", **args)["UploadId"])

        def send(number: int, offset: int) -> dict[str, Any]:
            data = os.pread(fd, min(part_size, size - offset), offset)
            if len(data) != min(part_size, size - offset):
                raise _SourceChanged("the source file shrank while it was uploaded")
            cks = _b64(zlib.crc32(data).to_bytes(4, "big"))
            resp = call(f"{key} part {number}", lambda: store.client.upload_part(
                Bucket=store.bucket, Key=s3key, UploadId=upload_id, PartNumber=number,
                Body=data, ChecksumCRC32=cks))
            if progress:
                progress(len(data))
            return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": cks}

        offsets = range(0, size, part_size)
        parts = pool.run_bounded(store.pool, [
            functools.partial(send, n, o) for n, o in enumerate(offsets, start=1)])
        if _fingerprint(fd) != fingerprint:
            raise _SourceChanged("the source file changed while it was saved")
        call(key, lambda: store.client.complete_multipart_upload(
            Bucket=store.bucket, Key=s3key, UploadId=upload_id,
            MultipartUpload={"Parts": parts}, IfNoneMatch="*"))
        upload_id = None
    except _SourceChanged as exc:
        raise IntegrityError(f"{source}: {exc}; nothing was committed") from exc
    finally:
        os.close(fd)
        if upload_id is not None:
            try:
                abort(store, s3key, upload_id)
            except ElliptioError as exc:  # the upload stays; fsck finds and removes it
                log.warning("could not abort the incomplete upload of %s (%s); `eio fsck "
                            "--remove-orphans` will", s3key, exc)


def abort(store: S3Parts, s3key: str, upload_id: str) -> None:
    """Abort an incomplete multipart upload (an :mod:`elliptio.errors` exception if it
    stays)."""
    try:
        call(f"abort the upload of {s3key}", lambda: store.client.abort_multipart_upload(
            Bucket=store.bucket, Key=s3key, UploadId=upload_id))
    except NotFound:  # NoSuchUpload: gone already (a repeated abort whose first landed)
        pass


def _fingerprint(fd: int) -> Fingerprint:
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _open_unchanged(source: str, fingerprint: Fingerprint, key: str) -> int:
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"{source}: {exc.strerror or exc}") from exc
    if _fingerprint(fd) != fingerprint:
        os.close(fd)
        raise IntegrityError(f"{source}: changed since it was hashed; nothing was committed "
                             f"for {key}")
    return fd
