"""Orphan removal (``eio fsck --remove-orphans``): what an interrupted save left under an
artifact prefix that has no ``metadata.yaml``.

Incomplete multipart uploads are aborted; every version under the prefix is deleted,
locked ones only where Object Lock allows it: in GOVERNANCE mode, bypassing the
retention (``s3:BypassGovernanceRetention``) for orphans alone; in COMPLIANCE mode they
stay until their retention ends.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from ...errors import ElliptioError, Immutable
from .errors import call
from .listing import uploads
from .shared import S3Parts
from .upload import abort

log = logging.getLogger(__name__)


def remove_orphan(store: S3Parts, prefix: str) -> int:
    """Remove the orphan under *prefix*; the number of uploads and objects removed."""
    base = prefix.rstrip("/")
    full = store._key(base) + "/"  # validates first: never the whole store
    if store.exists(f"{base}/.eio/metadata.yaml"):
        raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
    removed = 0
    for s3key, upload_id in list(uploads(store, base)):
        try:
            abort(store, s3key, upload_id)
            removed += 1
        except ElliptioError as exc:
            log.warning("could not abort the upload of %s: %s", s3key, exc)
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Prefix": full}
    while True:
        page = call(f"list versions {prefix}",
                    functools.partial(store.client.list_object_versions, **kwargs))
        for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
            try:
                _delete_version(store, v["Key"], v["VersionId"])
                removed += "Size" in v  # count objects, not delete markers
            except ElliptioError as exc:
                log.info("orphan %s stays (%s)", v["Key"], exc)
        if not page.get("IsTruncated"):
            return removed
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")


def _delete_version(store: S3Parts, s3key: str, version: str) -> None:
    call(f"delete orphan {s3key}", lambda: store.client.delete_object(
        Bucket=store.bucket, Key=s3key, VersionId=version, BypassGovernanceRetention=True))
