"""The bucket: whether it has Object Lock, the retention every write carries, and
``eio init`` (create the bucket with Object Lock, or check the one there is).

A bucket without Object Lock is refused unless ``allow_unlocked`` is set: artifacts there
could be overwritten or deleted.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import ConfigError, StorageError
from .errors import call, error_code
from .shared import S3Parts

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


class ObjectLock:
    """The retention a store writes with (``mode`` for ``days``), and what the bucket said
    about Object Lock, asked on the first write (or by :meth:`check`)."""

    def __init__(self, mode: str, days: int, allow_unlocked: bool) -> None:
        if str(mode).upper() not in LOCK_MODES:
            raise ConfigError(f"lock_mode must be GOVERNANCE or COMPLIANCE, not {mode!r} "
                              "(to write without Object Lock set allow_unlocked)")
        if int(days) < 1:
            raise ConfigError(f"lock_days must be at least 1, not {days}")
        self.mode, self.days = str(mode).upper(), int(days)
        self.allow_unlocked = bool(allow_unlocked)
        self._locked: bool | None = None  # learnt from the bucket on first write
        self._learn = threading.Lock()

    def write_args(self, store: S3Parts) -> dict[str, Any]:
        """The retention arguments of a ``PutObject``/``CreateMultipartUpload``;
        ``StorageError`` for an unlocked bucket unless unlocked writes are allowed."""
        if self._locked is None:
            with self._learn:
                if self._locked is None:
                    self._locked = bucket_locked(store)
        if not self._locked:
            if not self.allow_unlocked:
                raise StorageError(
                    f"bucket {store.bucket} has no Object Lock: artifacts there could be "
                    "overwritten or deleted. Create a bucket with `eio init`, or set "
                    "ELLIPTIO_ALLOW_UNLOCKED=1 to write without locks")
            return {}
        until = datetime.now(UTC) + timedelta(days=self.days)
        return {"ObjectLockMode": self.mode, "ObjectLockRetainUntilDate": until}

    def check(self, store: S3Parts) -> str:
        """Ask the bucket again; one line saying what it has, or ``StorageError``."""
        locked = self._locked = bucket_locked(store)
        if not locked and not self.allow_unlocked:
            raise StorageError(
                f"bucket {store.bucket} exists but has no Object Lock; ElliptIO refuses to "
                "write artifacts that could be overwritten or deleted. Use a bucket created "
                "with Object Lock (`eio init` with a new bucket name) or set "
                "ELLIPTIO_ALLOW_UNLOCKED=1 to accept unlocked artifacts")
        state = (f"Object Lock on ({self.mode}, {self.days} days)" if locked
                 else "WITHOUT Object Lock (allow_unlocked)")
        return f"S3 store {store.url}, {state}"


def bucket_locked(store: S3Parts) -> bool:
    """Whether the store's bucket has Object Lock enabled."""
    from botocore.exceptions import ClientError

    def get() -> bool:
        try:
            cfg = store.client.get_object_lock_configuration(Bucket=store.bucket)
        except ClientError as exc:
            if error_code(exc) in ("ObjectLockConfigurationNotFoundError",
                                   "ObjectLockConfigurationNotFound"):
                return False
            raise
        return cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    return call(f"s3://{store.bucket}: Object Lock configuration", get)


def init(store: S3Parts) -> str:
    """Create the bucket with Object Lock if it does not exist, then check it."""
    from botocore.exceptions import ClientError

    def create() -> bool:
        try:
            store.client.create_bucket(Bucket=store.bucket, ObjectLockEnabledForBucket=True,
                                       **_location(store.client))
        except ClientError as exc:
            if error_code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise
        return True

    created = call(f"create bucket {store.bucket}", create)
    desc = store.check()
    return ("created " if created else "checked ") + desc


def _location(client: Any) -> dict[str, Any]:
    region = client.meta.region_name
    if region and region != "us-east-1":
        return {"CreateBucketConfiguration": {"LocationConstraint": region}}
    return {}
