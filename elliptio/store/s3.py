"""The S3 store: artifacts as locked objects in a bucket (AWS, SeaweedFS, Ceph RGW, MinIO).

``s3://bucket[/prefix]``; credentials, region and endpoint come from boto3's standard chain
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles, instance roles…), never from
ElliptIO's configuration, and never land in metadata or logs.

Writes
    Every object is written with Object Lock retention (``lock_mode`` GOVERNANCE or
    COMPLIANCE for ``lock_days``) and ``If-None-Match: *``, so nothing is overwritten.
    A bucket without Object Lock is refused unless ``allow_unlocked`` is set.
    Small files (< :data:`MULTIPART_THRESHOLD`) are read once into memory while hashing and
    sent in one PUT with their SHA-256 as the S3 checksum, so the server rejects corrupted
    bytes. Large files are hashed in :meth:`S3Store.stage` (the save path needs the digest
    to deduplicate before anything is uploaded: a locked upload cannot be taken back) and
    uploaded in :meth:`_S3Staged.commit` as a multipart upload whose parts are read with
    ``pread`` and sent concurrently, each with its own CRC32 checksum, which the server
    checks. (S3 has no whole-file SHA-256 for multipart uploads — its SHA256 mode is a
    checksum of part checksums — so the file's SHA-256 is the recorded one, checked on
    every full read; per part, CRC32 guards the transfer at a fraction of the CPU a second
    SHA-256 pass costs on client and server: 0.72× → 0.80× boto3 on a 1 GiB save here.)
    A source file that
    changed between the two reads (size, mtime or inode) is refused. An interrupted
    multipart upload is aborted; what a killed process leaves is an incomplete upload that
    ``eio fsck`` finds (:meth:`S3Store.list_artifact_dirs`) and removes.

Reads
    Ranged GETs (:meth:`S3Store.read_range`: signed by :mod:`.s3get` without botocore's
    per-request cost, falling back to botocore for anything but the happy path);
    :meth:`S3Store.download` fetches large objects in parallel ranges and hashes them in
    order while writing, so the caller can compare with the recorded sha256.

Retries
    botocore's own retries are switched off; every request goes through the one retry
    helper (:func:`elliptio.store.retry.retry`) with :func:`is_transient` deciding what
    is worth repeating (503 SlowDown, 500, throttling, resets, timeouts).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import itertools
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote, urlparse

from ..errors import (
    ConfigError,
    Immutable,
    IntegrityError,
    NotFound,
    StorageError,
    TransientStorageError,
    UsageError,
)
from . import s3get
from .base import Digest, Progress, Staged, Store, artifact_dirs_of
from .retry import retry
from .s3get import Fallback, SignedGetter

log = logging.getLogger(__name__)
T = TypeVar("T")

#: files below this size go up in one PUT (read into memory once, hashed on the way)
MULTIPART_THRESHOLD = 16 << 20
#: multipart part size (grown for files that would need more than MAX_PARTS parts)
PART_SIZE = 8 << 20
MAX_PARTS = 9000
#: objects larger than this are downloaded in parallel ranges of RANGE_SIZE, at most
#: DOWNLOAD_STREAMS at once (more streams win on a WAN; on loopback the server's CPU decides)
RANGE_SIZE = 32 << 20
DOWNLOAD_STREAMS = 4
#: concurrent part uploads / range downloads per store
TRANSFER_THREADS = 10
CHUNK = 1 << 20
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")

_TRANSIENT_CODES = {
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestTimeTooSkewed", "OperationAborted", "500", "502", "503",
    "504", "RequestTimeoutException", "TooManyRequests", "429",
}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_transient(exc: BaseException) -> bool:
    """True for S3 failures that may succeed when repeated."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, ClientError):
        return _code(exc) in _TRANSIENT_CODES or _status(exc) >= 500 or _status(exc) == 429
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True  # endpoint connection errors, resets, read/connect timeouts
    if isinstance(exc, _ShortRead | ConnectionError | TimeoutError):
        return True
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, Urllib3Error)


class _ShortRead(Exception):
    """A GET body ended before the bytes its headers promised."""


class _SourceChanged(Exception):
    pass


def _translate(exc: BaseException, what: str) -> Exception:
    """One S3 failure → one :mod:`elliptio.errors` exception (after retries)."""
    code, status = _code(exc), _status(exc)
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion") or status == 404:
        if code == "NoSuchBucket":
            return StorageError(f"{what}: the bucket does not exist (run `eio init`)")
        return NotFound(f"{what}: no such object")
    if code == "NoSuchBucket":
        return StorageError(f"{what}: the bucket does not exist (run `eio init`)")
    if code == "PreconditionFailed" or status == 412:
        return Immutable(f"{what}: already exists and is locked")
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
        return IntegrityError(f"{what}: the server received bytes that do not match their "
                              "checksum (corrupted in transit); nothing was committed")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") \
            or status == 403:
        return StorageError(f"{what}: access denied by the S3 server ({code or status}); "
                            "check the AWS credentials in the environment")
    if is_transient(exc):
        return TransientStorageError(f"{what}: S3 still failing after retries "
                                     f"({type(exc).__name__}: {_short(exc)})")
    return StorageError(f"{what}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _parse_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an S3 store URL (want s3://bucket[/prefix]): {url}")
    if parsed.query or parsed.fragment or "@" in parsed.netloc or ":" in parsed.netloc:
        raise ConfigError(f"an S3 store URL is s3://bucket[/prefix], without credentials, "
                          f"ports or options (those come from the AWS environment): {url}")
    prefix = parsed.path.strip("/")
    if any(p in (".", "..") for p in prefix.split("/")) or "//" in parsed.path.strip("/"):
        raise ConfigError(f"invalid prefix in S3 store URL: {url}")
    return parsed.netloc, prefix


class _S3Staged(Staged):
    """A hashed source file not yet uploaded (large) or held in memory (small)."""

    def __init__(self, store: S3Store, key: str, source: str, digest: Digest,
                 data: bytes | None, fingerprint: tuple[int, int, int, int],
                 progress: Progress) -> None:
        self.store, self.key, self.source, self.digest = store, key, source, digest
        self._progress = progress  # uploads report to the callback given to stage()
        self._data, self._fingerprint = data, fingerprint
        self._sha_b64 = _b64(bytes.fromhex(digest.sha256))

    def commit(self, progress: Progress = None) -> None:
        progress = progress or self._progress
        try:
            if self._data is not None:
                self.store._put(self.key, self._data, self._sha_b64)
                if progress:
                    progress(len(self._data))
            else:
                self.store._multipart(self.key, self.source, self.digest.size,
                                      self._fingerprint, progress)
        finally:
            self._data = None

    def discard(self) -> None:
        self._data = None


class _RangeReader(io.RawIOBase):
    """A seekable raw reader over one object, one ranged GET per read."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
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


class S3Store(Store):
    """A bucket (and optional prefix) on an S3 server. See the module docstring."""

    def __init__(self, url: str, *, lock_mode: str = "GOVERNANCE", lock_days: int = 3650,
                 allow_unlocked: bool = False, client: Any = None) -> None:
        self.bucket, self.prefix = _parse_url(url)
        self.url = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        mode = str(lock_mode).upper()
        if mode not in LOCK_MODES:
            raise ConfigError(f"lock_mode must be GOVERNANCE or COMPLIANCE, not {lock_mode!r} "
                              "(to write without Object Lock set allow_unlocked)")
        if int(lock_days) < 1:
            raise ConfigError(f"lock_days must be at least 1, not {lock_days}")
        self.lock_mode, self.lock_days = mode, int(lock_days)
        self.allow_unlocked = bool(allow_unlocked)
        self._client = client
        self._locked: bool | None = None  # learnt from the bucket on first write
        self._init_lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._fast: SignedGetter | None = None
        self._fast_for: Any = None  # the client _fast mirrors

    # -- plumbing ----------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._init_lock:
                if self._client is None:
                    self._client = make_client()
        return self._client

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._init_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(TRANSFER_THREADS,
                                                    thread_name_prefix="eio-s3")
        return self._pool

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StorageError(f"invalid store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unkey(self, s3key: str) -> str:
        return s3key[len(self.prefix) + 1:] if self.prefix else s3key

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return retry(fn, is_temp_failure=is_transient, what=what)
        except Exception as exc:
            raise _translate(exc, what) from exc

    def _lock_args(self) -> dict[str, Any]:
        if self._locked is None:
            with self._init_lock:
                if self._locked is None:
                    self._locked = self._bucket_locked()
        if not self._locked:
            if not self.allow_unlocked:
                raise StorageError(
                    f"bucket {self.bucket} has no Object Lock: artifacts there could be "
                    "overwritten or deleted. Create a bucket with `eio init`, or set "
                    "ELLIPTIO_ALLOW_UNLOCKED=1 to write without locks")
            return {}
        until = datetime.now(UTC) + timedelta(days=self.lock_days)
        return {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}

    def _bucket_locked(self) -> bool:
        from botocore.exceptions import ClientError

        def get() -> bool:
            try:
                cfg = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) in ("ObjectLockConfigurationNotFoundError",
                                  "ObjectLockConfigurationNotFound"):
                    return False
                raise
            return cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

        return self._call(f"s3://{self.bucket}: Object Lock configuration", get)

    # -- writing -----------------------------------------------------------------------
    def _put(self, key: str, data: bytes, sha_b64: str) -> None:
        s3key = self._key(key)
        args = self._lock_args()

        def put() -> None:
            self.client.put_object(Bucket=self.bucket, Key=s3key, Body=data,
                                   ChecksumSHA256=sha_b64, IfNoneMatch="*", **args)

        self._call(key, put)

    def stage(self, key: str, source: str, progress: Progress = None) -> Staged:
        self._key(key)  # validate before reading anything
        try:
            with open(source, "rb") as f:
                st = os.fstat(f.fileno())
                fingerprint = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                if st.st_size < MULTIPART_THRESHOLD:
                    data = f.read()
                    digest = Digest(hashlib.sha256(data).hexdigest(), len(data))
                    return _S3Staged(self, key, source, digest, data, fingerprint, progress)
                h = hashlib.sha256()
                size = 0
                buf = bytearray(CHUNK * 4)
                view = memoryview(buf)
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
        except OSError as exc:
            raise StorageError(f"{source}: {exc.strerror or exc}") from exc
        return _S3Staged(self, key, source, Digest(h.hexdigest(), size), None, fingerprint,
                         progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._put(key, data, _b64(hashlib.sha256(data).digest()))

    def _multipart(self, key: str, source: str, size: int,
                   fingerprint: tuple[int, int, int, int], progress: Progress) -> None:
        s3key = self._key(key)
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        args = self._lock_args()
        fd = _open_unchanged(source, fingerprint, key)
        upload_id: str | None = None
        try:
            if self.exists(key):
                raise Immutable(f"{key}: already exists and is locked")
            upload_id = self._call(key, lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=s3key, ChecksumAlgorithm="CRC32", **args)["UploadId"])

            def send(number: int, offset: int) -> dict[str, Any]:
                data = os.pread(fd, min(part_size, size - offset), offset)
                if len(data) != min(part_size, size - offset):
                    raise _SourceChanged("the source file shrank while it was uploaded")
                cks = _b64(zlib.crc32(data).to_bytes(4, "big"))
                resp = self._call(f"{key} part {number}", lambda: self.client.upload_part(
                    Bucket=self.bucket, Key=s3key, UploadId=upload_id, PartNumber=number,
                    Body=data, ChecksumCRC32=cks))
                if progress:
                    progress(len(data))
                return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": cks}

            offsets = range(0, size, part_size)
            parts = _run_bounded(self.pool, [
                functools.partial(send, n, o) for n, o in enumerate(offsets, start=1)])
            if _fingerprint(fd) != fingerprint:
                raise _SourceChanged("the source file changed while it was saved")
            self._call(key, lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=s3key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, IfNoneMatch="*"))
            upload_id = None
        except _SourceChanged as exc:
            raise IntegrityError(f"{source}: {exc}; nothing was committed") from exc
        finally:
            os.close(fd)
            if upload_id is not None:
                self._abort(s3key, upload_id)

    def _abort(self, s3key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3key, UploadId=upload_id)
        except Exception as exc:  # the incomplete upload stays; fsck finds and removes it
            log.warning("could not abort the incomplete upload of %s (%s); `eio fsck "
                        "--remove-orphans` will", s3key, _short(exc))

    # -- reading -----------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        s3key = self._key(key)
        head = self._call(key, lambda: self.client.head_object(Bucket=self.bucket, Key=s3key))
        return int(head["ContentLength"])

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        fast = self._fast_getter()
        if fast is not None:
            try:
                return fast.get_range(self._key(key), offset, length)
            except Fallback as exc:  # botocore repeats it: its errors, its retries
                log.debug("%s: fast GET fell back to botocore (%s)", key, exc)
        return self._get(key, f"bytes={offset}-{offset + length - 1}", length)

    def _fast_getter(self) -> SignedGetter | None:
        """The signed-GET fast path for this store's client (see :mod:`.s3get`); rebuilt
        when the client is replaced, ``None`` where it cannot mirror the client."""
        client = self.client
        if self._fast_for is not client:
            with self._init_lock:
                if self._fast_for is not client:
                    if self._fast is not None:
                        self._fast.close()
                    self._fast = s3get.for_client(client, self.bucket)
                    self._fast_for = client
        return self._fast

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)

    def _get(self, key: str, byte_range: str | None = None, most: int | None = None) -> bytes:
        """One GET (of *byte_range*, at most *most* bytes), the whole body read, retried
        whole when the body ends early. A range starting past the end gives ``b""``."""
        s3key = self._key(key)
        extra = {"Range": byte_range} if byte_range else {}

        def get() -> bytes:
            from botocore.exceptions import ClientError

            try:
                resp = self.client.get_object(Bucket=self.bucket, Key=s3key, **extra)
            except ClientError as exc:
                if byte_range and _code(exc) == "InvalidRange":  # offset at or past the end
                    return b""
                raise
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if len(data) != int(resp.get("ContentLength", len(data))):
                raise _ShortRead(f"got {len(data)} of {resp.get('ContentLength')} bytes")
            if most is not None and len(data) > most:
                raise _ShortRead(f"server sent {len(data)} bytes for a {most}-byte range")
            return data

        return self._call(key, get)

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(_RangeReader(self, key, self.size(key)),  # type: ignore[return-value]
                                 buffer_size=4 << 20)

    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        """Parallel ranged GETs streamed with ``pwrite`` into a temporary beside *dest*;
        the caller's thread hashes each range, in order, as soon as it has landed (from
        the page cache), so hashing overlaps the transfer. Renamed into place at the end."""
        size = self.size(key)
        d = os.path.dirname(os.path.abspath(dest))
        tmp = os.path.join(d, f".{os.path.basename(dest)}.eio-download-{os.urandom(4).hex()}")
        h = hashlib.sha256()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                ranges = [(o, min(RANGE_SIZE, size - o)) for o in range(0, size, RANGE_SIZE)]
                if len(ranges) == 1:
                    h = self._fetch_into(key, fd, 0, size, progress, want_hash=True)
                elif ranges:
                    with open(tmp, "rb") as back:
                        def hash_range(span: tuple[int, int]) -> None:
                            offset, length = span
                            while length:
                                chunk = os.pread(back.fileno(), min(CHUNK * 4, length), offset)
                                if not chunk:
                                    raise StorageError(f"{key}: range vanished from {tmp}")
                                h.update(chunk)
                                offset += len(chunk)
                                length -= len(chunk)

                        def fetch(o: int, n: int) -> tuple[int, int]:
                            self._fetch_into(key, fd, o, n, progress)
                            return o, n

                        _run_bounded(self.pool, [functools.partial(fetch, o, n)
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

    def _fetch_into(self, key: str, fd: int, offset: int, length: int, progress: Progress,
                    want_hash: bool = False) -> Any:
        """One ranged GET of [offset, offset+length) streamed into *fd* at its offset,
        retried whole (the bytes are simply written again); returns the sha256 object of
        the range if *want_hash*."""
        s3key = self._key(key)

        def get() -> Any:
            hasher = hashlib.sha256() if want_hash else None
            resp = self.client.get_object(Bucket=self.bucket, Key=s3key,
                                          Range=f"bytes={offset}-{offset + length - 1}")
            body = resp["Body"]
            pos = offset
            try:
                while chunk := body.read(CHUNK):
                    if pos + len(chunk) > offset + length:
                        raise _ShortRead("server sent more bytes than the range asked")
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
                raise _ShortRead(f"got {pos - offset} of {length} bytes")
            return hasher

        return self._call(key, get)

    def _list_prefix(self, prefix: str) -> str:
        """The S3 ``Prefix`` for the store prefix *prefix* (``""`` = the whole store)."""
        if prefix.strip("/"):
            return self._key(prefix.strip("/")) + "/"
        return self.prefix + "/" if self.prefix else ""

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self._list_prefix(prefix)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {self.url}/{prefix}",
                              functools.partial(self.client.list_objects_v2, **kwargs))
            for obj in page.get("Contents", []):
                yield self._unkey(obj["Key"])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def _uploads(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(s3 key, upload id) of every incomplete multipart upload under *prefix*."""
        full = self._list_prefix(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        while True:
            page = self._call(f"list uploads {self.url}/{prefix}",
                              functools.partial(self.client.list_multipart_uploads,
                                                **kwargs))
            for up in page.get("Uploads", []) or []:
                yield up["Key"], up["UploadId"]
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def list_artifact_dirs(self, prefix: str = "") -> Iterator[str]:
        # Committed keys, and the keys of incomplete uploads (a save killed mid-multipart).
        uploads = (self._unkey(k) for k, _ in self._uploads(prefix))
        return artifact_dirs_of(itertools.chain(self.list(prefix), uploads))

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{quote(self._key(key))}"

    def s3_url(self, key: str) -> str | None:
        return f"s3://{self.bucket}/{self._key(key)}"

    def presign(self, key: str, expires: int = 3600) -> str:
        s3key = self._key(key)
        if not 1 <= int(expires) <= 7 * 24 * 3600:
            raise UsageError("presigned URLs expire after 1 second to 7 days")
        return self._call(key, lambda: self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": s3key},
            ExpiresIn=int(expires)))

    # -- housekeeping ------------------------------------------------------------------
    def remove_orphan(self, prefix: str) -> int:
        """Abort incomplete uploads and delete every version under *prefix*; locked
        versions are removed only in GOVERNANCE mode (bypassing it, for orphans alone)."""
        base = prefix.rstrip("/")
        full = self._key(base) + "/"  # validates first: never the whole store
        if self.exists(f"{base}/.eio/metadata.yaml"):
            raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
        removed = 0
        for s3key, upload_id in list(self._uploads(base)):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3key,
                                                   UploadId=upload_id)
                removed += 1
            except Exception as exc:
                log.warning("could not abort the upload of %s: %s", s3key, _short(exc))
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        while True:
            page = self._call(f"list versions {prefix}",
                              functools.partial(self.client.list_object_versions, **kwargs))
            for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=v["Key"],
                                              VersionId=v["VersionId"],
                                              BypassGovernanceRetention=True)
                    removed += "Size" in v  # count objects, not delete markers
                except Exception as exc:
                    log.info("orphan %s stays (%s)", v["Key"], _short(exc))
            if not page.get("IsTruncated"):
                return removed
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def check(self) -> str:
        locked = self._bucket_locked()
        self._locked = locked
        if not locked and not self.allow_unlocked:
            raise StorageError(
                f"bucket {self.bucket} exists but has no Object Lock; ElliptIO refuses to "
                "write artifacts that could be overwritten or deleted. Use a bucket created "
                "with Object Lock (`eio init` with a new bucket name) or set "
                "ELLIPTIO_ALLOW_UNLOCKED=1 to accept unlocked artifacts")
        state = (f"Object Lock on ({self.lock_mode}, {self.lock_days} days)" if locked
                 else "WITHOUT Object Lock (allow_unlocked)")
        return f"S3 store {self.url}, {state}"

    def init(self) -> str:
        from botocore.exceptions import ClientError

        def create() -> bool:
            try:
                self.client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True,
                                          **_location(self.client))
            except ClientError as exc:
                if _code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return False
                raise
            return True

        created = self._call(f"create bucket {self.bucket}", create)
        desc = self.check()
        return ("created " if created else "checked ") + desc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._fast is not None:
            self._fast.close()
            self._fast, self._fast_for = None, None
        if self._client is not None:
            self._client.close()
            self._client = None


def make_client() -> Any:
    """A boto3 S3 client from the standard AWS environment, ElliptIO's transfer settings,
    and botocore retries off (the store retries, once, in :func:`retry`)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigError("the S3 store needs boto3: pip install boto3") from exc
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=TRANSFER_THREADS + 20,
        connect_timeout=10, read_timeout=60,
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", config=config)


def _location(client: Any) -> dict[str, Any]:
    region = client.meta.region_name
    if region and region != "us-east-1":
        return {"CreateBucketConfiguration": {"LocationConstraint": region}}
    return {}


def _fingerprint(fd: int) -> tuple[int, int, int, int]:
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _open_unchanged(source: str, fingerprint: tuple[int, int, int, int], key: str) -> int:
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"{source}: {exc.strerror or exc}") from exc
    if _fingerprint(fd) != fingerprint:
        os.close(fd)
        raise IntegrityError(f"{source}: changed since it was hashed; nothing was committed "
                             f"for {key}")
    return fd


def _run_bounded(pool: ThreadPoolExecutor, jobs: list[Callable[[], T]],
                 consume: Callable[[T], None] | None = None,
                 window: int = 2 * TRANSFER_THREADS) -> list[T]:
    """Run *jobs* on *pool*, at most *window* in flight, results in order.

    With *consume*, each result is handed over in order as soon as it and all before it are
    done (and not kept). The first failure cancels what has not started and is re-raised.
    """
    pending: list[Future[T]] = []
    results: list[T] = []
    it = iter(jobs)
    try:
        for job in it:
            pending.append(pool.submit(job))
            if len(pending) >= window:
                _take(pending.pop(0), results, consume)
        while pending:
            _take(pending.pop(0), results, consume)
    except BaseException:
        for f in pending:
            f.cancel()
        for f in pending:
            if not f.cancelled():
                try:
                    f.result()
                except BaseException:  # noqa: S110 - the first failure is what we report
                    pass
        raise
    return results


def _take(fut: Future[T], results: list[T], consume: Callable[[T], None] | None) -> None:
    value = fut.result()
    if consume is None:
        results.append(value)
    else:
        consume(value)
