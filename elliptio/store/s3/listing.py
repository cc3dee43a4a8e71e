"""Listings: the committed keys under a prefix, the incomplete multipart uploads, and the
artifact directories either leaves (for ``eio fsck``). Each page is one request."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

from ..base import artifact_dirs_of
from .errors import call
from .keys import list_prefix
from .shared import S3Parts


def keys(store: S3Parts, prefix: str = "") -> Iterator[str]:
    """Every committed store key under *prefix*, page by page."""
    kwargs: dict[str, Any] = {"Bucket": store.bucket,
                              "Prefix": list_prefix(store.prefix, prefix)}
    while True:
        page = call(f"list {store.url}/{prefix}",
                    functools.partial(store.client.list_objects_v2, **kwargs))
        for obj in page.get("Contents", []):
            yield store._unkey(obj["Key"])
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def uploads(store: S3Parts, prefix: str) -> Iterator[tuple[str, str]]:
    """(S3 key, upload id) of every incomplete multipart upload under *prefix*."""
    kwargs: dict[str, Any] = {"Bucket": store.bucket,
                              "Prefix": list_prefix(store.prefix, prefix)}
    while True:
        page = call(f"list uploads {store.url}/{prefix}",
                    functools.partial(store.client.list_multipart_uploads, **kwargs))
        for up in page.get("Uploads", []) or []:
            yield up["Key"], up["UploadId"]
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")


def artifact_dirs(store: S3Parts, prefix: str = "") -> Iterator[str]:
    """The artifact directories of the committed keys and of the incomplete uploads (a
    save killed mid-multipart leaves only the latter)."""
    pending = (store._unkey(k) for k, _ in uploads(store, prefix))
    return artifact_dirs_of(itertools.chain(keys(store, prefix), pending))
