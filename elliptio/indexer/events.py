"""The AWS Lambda handler: S3 ``ObjectCreated`` notifications of ``.eio/metadata.yaml``
upserted into the catalogue (see :mod:`elliptio.indexer`, docs/indexer.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlparse

from .. import layout
from ..errors import CatalogueError, ElliptioError, IntegrityError, NotFound, StorageError
from .claims import claim, unresolved
from .reading import id_of_metadata_key, read_metadata

if TYPE_CHECKING:
    from ..lake import Lake

log = logging.getLogger(__name__)


def s3_records(event: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(event name, bucket, key)`` of every S3 record in *event*: an S3 notification, or
    one delivered through SQS (``body``) or SNS (``Sns.Message``). Keys are decoded (S3
    URL-encodes them in notifications, spaces as ``+``)."""
    for rec in event.get("Records") or []:
        if not isinstance(rec, Mapping):
            continue
        if "s3" in rec:
            s3 = rec["s3"]
            yield (str(rec.get("eventName", "")), str(s3["bucket"]["name"]),
                   unquote_plus(str(s3["object"]["key"])))
        elif "body" in rec or "Sns" in rec:
            raw = rec["body"] if "body" in rec else rec["Sns"].get("Message", "")
            try:
                inner = json.loads(raw)
            except (TypeError, ValueError):
                continue
            if isinstance(inner, Mapping):
                yield from s3_records(inner)


def store_key_of(store_url: str, bucket: str, key: str) -> str | None:
    """The store key of the object *bucket*/*key*, or None if it is not in this store.

    For ``s3://bucket/prefix`` the bucket must match and the key lie under the prefix,
    which is removed. For a ``file://`` store (tests, or a gateway serving a directory) the
    key is taken relative to the store root whatever the bucket.
    """
    u = urlparse(store_url)
    if u.scheme == "s3":
        if u.netloc != bucket:
            return None
        prefix = u.path.strip("/")
        if not prefix:
            return key
        return key[len(prefix) + 1:] if key.startswith(prefix + "/") else None
    return key


def lambda_handler(event: Mapping[str, Any], context: Any = None, *,
                   lake: Lake | None = None) -> dict[str, Any]:
    """AWS Lambda entry point: index the ``metadata.yaml`` objects an S3 notification
    announces (``elliptio.indexer.lambda_handler``; configuration from the environment,
    ``ELLIPTIO_STORE`` and ``ELLIPTIO_CATALOGUE``, as everywhere).

    Idempotent (upserts), so S3's at-least-once delivery and Lambda's retries are harmless.
    Other keys, other buckets and other event types are ignored; metadata that
    :mod:`elliptio.trust` refuses is quarantined, and an id claimed first from another
    prefix is a conflict (both logged, listed in the result, never retried) and the rest
    of the batch is indexed. If a
    read or the catalogue write fails for a reason that may pass, the rest is still indexed
    and then the first such error is raised, so Lambda retries the batch.

    Returns ``{"records", "indexed": [ids], "ignored": [keys], "quarantined": [{key,
    error}], "conflicts": [{key, error}], "failed": [{key, error}]}``.
    """
    if lake is None:
        from ..api import default_lake

        lake = default_lake()
    summary: dict[str, Any] = {"records": 0, "indexed": [], "ignored": [], "quarantined": [],
                               "conflicts": [], "failed": []}
    errors: list[ElliptioError] = []
    found: dict[str, str] = {}  # store key -> bucket key (S3 may deliver one twice)
    for name, bucket, key in s3_records(event):
        summary["records"] += 1
        skey = store_key_of(lake.store.url, bucket, key)
        if (not name.startswith("ObjectCreated:") or skey is None
                or id_of_metadata_key(skey) is None):
            summary["ignored"].append(key)
            continue
        found.setdefault(skey, key)
    batch: list[tuple[str, dict[str, Any]]] = []
    for skey, key in found.items():
        try:
            batch.append((skey, read_metadata(lake, skey)))
        except IntegrityError as exc:
            summary["quarantined"].append({"key": key, "error": str(exc)})
            log.error("quarantined %s: %s", key, exc)
        except (StorageError, NotFound) as exc:
            summary["failed"].append({"key": key, "error": str(exc)})
            errors.append(exc)
    if batch:
        try:
            done = claim(lake.catalogue, lake.store, batch)
        except (CatalogueError, StorageError) as exc:
            summary["failed"] += [{"key": found[k], "error": str(exc)} for k, _md in batch]
            errors.append(exc)
        else:
            summary["indexed"] = done.indexed
            summary["quarantined"] += [{"key": found[k], "error": why}
                                       for k, why in done.quarantined]
            # not retried: an event for the artifact referred to, or `eio reindex`, will
            summary["quarantined"] += [{"key": found[k], "error": unresolved(md)}
                                       for k, md in done.waiting]
            summary["conflicts"] = [
                {"key": found.get(layout.metadata_key(c.refused), c.refused), "error": str(c)}
                for c in done.conflicts]
            for item in summary["quarantined"] + summary["conflicts"]:
                log.error("not indexed %s: %s", item["key"], item["error"])
    log.info("indexer: %s", json.dumps({k: (v if isinstance(v, int) else len(v))
                                        for k, v in summary.items()}))
    if errors:
        log.error("indexer: %d failure(s), raising so the batch is retried: %s",
                  len(summary["failed"]), summary["failed"])
        raise errors[0]
    return summary
