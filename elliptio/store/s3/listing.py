"""Listings: the committed keys under a prefix (with their sizes and times), the
incomplete multipart uploads, the artifact directories either leaves, and every version,
delete marker and upload under an artifact directory (for ``eio fsck``). Each page is one
request, through :func:`~.errors.call`."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

from ..base import StoredObject, artifact_dirs_of
from .errors import call
from .keys import list_prefix
from .shared import S3Parts


def keys(store: S3Parts, prefix: str = "") -> Iterator[str]:
    """Every committed store key under *prefix*, page by page."""
    for obj in objects(store, prefix):
        yield obj.key


def objects(store: S3Parts, prefix: str = "") -> Iterator[StoredObject]:
    """Every committed store key under *prefix* with its size and LastModified."""
    kwargs: dict[str, Any] = {"Bucket": store.bucket,
                              "Prefix": list_prefix(store.prefix, prefix)}
    while True:
        page = call(f"list {store.url}/{prefix}",
                    functools.partial(store.client.list_objects_v2, **kwargs))
        for obj in page.get("Contents", []):
            yield StoredObject(store._unkey(obj["Key"]), int(obj.get("Size", 0)),
                               obj["LastModified"].timestamp())
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def versions(store: S3Parts, prefix: str) -> list[StoredObject]:
    """Every version, delete marker and incomplete upload under the directory *prefix*;
    an upload's time is that of its newest part (its start if it has none), so one being
    written looks as young as it is."""
    found: list[StoredObject] = []
    kwargs: dict[str, Any] = {"Bucket": store.bucket,
                              "Prefix": list_prefix(store.prefix, prefix)}
    while True:
        page = call(f"list versions {store.url}/{prefix}",
                    functools.partial(store.client.list_object_versions, **kwargs))
        for kind, field in (("object", "Versions"), ("marker", "DeleteMarkers")):
            for v in page.get(field) or []:
                found.append(StoredObject(store._unkey(v["Key"]), int(v.get("Size", 0)),
                                          v["LastModified"].timestamp(), v["VersionId"],
                                          kind))
        if not page.get("IsTruncated"):
            break
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")
    for s3key, upload_id, started in _uploads(store, prefix):
        found.append(StoredObject(store._unkey(s3key), 0,
                                  max([started, *_part_times(store, s3key, upload_id)]),
                                  upload_id, "upload"))
    return found


def _part_times(store: S3Parts, s3key: str, upload_id: str) -> Iterator[float]:
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Key": s3key, "UploadId": upload_id}
    while True:
        page = call(f"list parts {s3key}",
                    functools.partial(store.client.list_parts, **kwargs))
        for part in page.get("Parts") or []:
            yield part["LastModified"].timestamp()
        if not page.get("IsTruncated"):
            return
        kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]


def uploads(store: S3Parts, prefix: str) -> Iterator[tuple[str, str]]:
    """(S3 key, upload id) of every incomplete multipart upload under *prefix*."""
    for s3key, upload_id, _started in _uploads(store, prefix):
        yield s3key, upload_id


def _uploads(store: S3Parts, prefix: str) -> Iterator[tuple[str, str, float]]:
    kwargs: dict[str, Any] = {"Bucket": store.bucket,
                              "Prefix": list_prefix(store.prefix, prefix)}
    while True:
        page = call(f"list uploads {store.url}/{prefix}",
                    functools.partial(store.client.list_multipart_uploads, **kwargs))
        for up in page.get("Uploads", []) or []:
            yield up["Key"], up["UploadId"], up["Initiated"].timestamp()
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")


def artifact_dirs(store: S3Parts, prefix: str = "") -> Iterator[str]:
    """The artifact directories of the committed keys and of the incomplete uploads (a
    save killed mid-multipart leaves only the latter)."""
    pending = (store._unkey(k) for k, _ in uploads(store, prefix))
    return artifact_dirs_of(itertools.chain(keys(store, prefix), pending))
