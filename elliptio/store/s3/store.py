"""The S3 store object: the :class:`~elliptio.store.base.Store` of the package, and the
things its parts share — the bucket and prefix, the botocore client, the transfer
threads and the fast path, each made on first use.

Each operation is one line here and lives in the module of its job (see the package
docstring); the parts reach the shared things through the store (``client``, ``pool``,
``_key``, ``_fast_getter``, ``lock``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO
from urllib.parse import quote

from ...errors import NotFound, UsageError
from ..base import Digest, Progress, Staged, Store, StoredObject
from . import bucket, download, fastpath, keys, listing, orphans, pool, reads, upload
from .client import make_client
from .errors import call


class S3Store(Store):
    """A bucket (and optional prefix) on an S3 server. See the package docstring."""

    def __init__(self, url: str, *, lock_mode: str = "GOVERNANCE", lock_days: int = 3650,
                 allow_unlocked: bool = False, client: Any = None) -> None:
        self.bucket, self.prefix = keys.parse_url(url)
        self.url = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        #: the retention every write carries, and what the bucket has
        self.lock = bucket.ObjectLock(lock_mode, lock_days, allow_unlocked)
        self._client = client
        self._init_lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._fast: fastpath.SignedGetter | None = None
        self._fast_for: Any = None  # the client _fast mirrors

    # -- what the parts share ----------------------------------------------------------
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
                    self._pool = pool.make_pool()
        return self._pool

    def _key(self, key: str) -> str:
        return keys.s3_key(self.prefix, key)

    def _unkey(self, s3key: str) -> str:
        return keys.store_key(self.prefix, s3key)

    def _fast_getter(self) -> fastpath.SignedGetter | None:
        """The signed-GET fast path for this store's client (see :mod:`.fastpath`);
        rebuilt when the client is replaced, ``None`` where it cannot mirror the client."""
        client = self.client
        if self._fast_for is not client:
            with self._init_lock:
                if self._fast_for is not client:
                    if self._fast is not None:
                        self._fast.close()
                    self._fast = fastpath.for_client(client, self.bucket)
                    self._fast_for = client
        return self._fast

    # -- writing (.upload) -------------------------------------------------------------
    def stage(self, key: str, source: str, progress: Progress = None) -> Staged:
        return upload.stage(self, key, source, progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        upload.put_bytes(self, key, data)

    # -- reading (.reads, .download) ---------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return reads.size(self, key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return reads.read_range(self, key, offset, length)

    def read_bytes(self, key: str) -> bytes:
        return reads.get(self, key)

    def open(self, key: str) -> BinaryIO:
        return reads.open_object(self, key)  # type: ignore[return-value]

    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        return download.download(self, key, dest, progress)

    # -- listing (.listing) ------------------------------------------------------------
    def list(self, prefix: str = "") -> Iterator[str]:
        return listing.keys(self, prefix)

    def list_stat(self, prefix: str = "") -> Iterator[StoredObject]:
        return listing.objects(self, prefix)

    def inventory(self, prefix: str) -> list[StoredObject]:
        return listing.versions(self, prefix.rstrip("/"))

    def list_artifact_dirs(self, prefix: str = "") -> Iterator[str]:
        return listing.artifact_dirs(self, prefix)

    # -- naming ------------------------------------------------------------------------
    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{quote(self._key(key))}"

    def s3_url(self, key: str) -> str | None:
        return f"s3://{self.bucket}/{self._key(key)}"

    def presign(self, key: str, expires: int = 3600) -> str:
        s3key = self._key(key)
        if not 1 <= int(expires) <= 7 * 24 * 3600:
            raise UsageError("presigned URLs expire after 1 second to 7 days")
        # signed locally, no request; through call() for its translation of failures
        return call(key, lambda: self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": s3key},
            ExpiresIn=int(expires)))

    # -- housekeeping (.orphans, .bucket) ----------------------------------------------
    def remove_orphan(self, prefix: str, listed: Collection[StoredObject] | None = None
                      ) -> int:
        return orphans.remove_orphan(self, prefix, listed)

    def check(self) -> str:
        return self.lock.check(self)

    def init(self) -> str:
        return bucket.init(self)

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
