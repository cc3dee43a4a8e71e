"""Orphan removal (``eio fsck --remove-orphans``): what an interrupted save left under an
artifact prefix that has no ``metadata.yaml``.

Incomplete multipart uploads are aborted and versions deleted, only those listed before
the last check for ``metadata.yaml`` (see :func:`remove_orphan`), locked ones only where
Object Lock allows it: in GOVERNANCE mode, bypassing the
retention (``s3:BypassGovernanceRetention``) for orphans alone; in COMPLIANCE mode they
stay until their retention ends.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from ...errors import ElliptioError, Immutable
from ..base import StoredObject, is_metadata_key
from .errors import call
from .listing import versions
from .shared import S3Parts
from .upload import abort

log = logging.getLogger(__name__)


def remove_orphan(store: S3Parts, prefix: str,
                  listed: Collection[StoredObject] | None = None) -> int:
    """Remove the orphan under *prefix*; the number of uploads and objects removed.

    Only the versions and uploads of *listed* (an inventory made before this call; made
    here if None) are removed, after checking once more that ``metadata.yaml`` does not
    exist: a version written after the listing is never deleted, whatever its key, and no
    ``metadata.yaml`` version is ever deleted.
    """
    base = prefix.rstrip("/")
    store._key(base)  # validates first: never the whole store
    if listed is None:
        listed = versions(store, base)
    if store.exists(f"{base}/.eio/metadata.yaml"):
        raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
    removed = 0
    for obj in listed:
        if is_metadata_key(obj.key) or not obj.key.startswith(base + "/") \
                or not obj.version:
            continue
        s3key = store._key(obj.key)
        try:
            if obj.kind == "upload":
                abort(store, s3key, obj.version)
            else:
                _delete_version(store, s3key, obj.version)
            removed += obj.kind != "marker"  # count objects and uploads, not markers
        except ElliptioError as exc:
            log.info("orphan %s stays (%s)", s3key, exc)
    return removed


def _delete_version(store: S3Parts, s3key: str, version: str) -> None:
    call(f"delete orphan {s3key}", lambda: store.client.delete_object(
        Bucket=store.bucket, Key=s3key, VersionId=version, BypassGovernanceRetention=True))
