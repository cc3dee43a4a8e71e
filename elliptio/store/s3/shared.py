"""What the parts of the package use of the store: :class:`S3Parts`, which
:class:`~elliptio.store.s3.store.S3Store` satisfies. The parts (upload, reads, download,
listing, orphans, bucket) take it instead of importing the store module, which imports
them: the package's modules form no import circle."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .fastpath import SignedGetter


class Retention(Protocol):
    """The store's Object Lock settings (:class:`~elliptio.store.s3.bucket.ObjectLock`)."""

    def write_args(self, store: S3Parts) -> dict[str, Any]: ...

    def check(self, store: S3Parts) -> str: ...


class S3Parts(Protocol):
    """The bucket and prefix, the botocore client, the transfer threads, the fast path and
    the retention, as the store shares them with its parts."""

    bucket: str
    prefix: str
    url: str

    @property
    def lock(self) -> Retention: ...

    @property
    def client(self) -> Any: ...

    @property
    def pool(self) -> ThreadPoolExecutor: ...

    def _key(self, key: str) -> str: ...

    def _unkey(self, s3key: str) -> str: ...

    def _fast_getter(self) -> SignedGetter | None: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    def check(self) -> str: ...
