"""What the indexer reads of the store: the ``metadata.yaml`` keys (all, or those of
recent days), each read within its bound and accepted by :mod:`elliptio.trust` (or
quarantined, with the reason)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import layout
from ..query import id_floor, parse_time
from ..trust import Quarantined, read_stored_metadata

if TYPE_CHECKING:
    from ..lake import Lake

#: artifacts upserted per catalogue round trip
BATCH = 500
#: metadata.yaml objects read at once (S3 GETs are latency-bound, not bandwidth-bound)
READERS = 16
#: with ``since`` older than this many days, one full listing beats a listing per day
MAX_DAY_LISTINGS = 3660



def id_of_metadata_key(key: str) -> str | None:
    """The artifact id in ``YYYY/MM/DD/<user>/<id>/.eio/metadata.yaml``, or None when the
    key is not an artifact's metadata in the store layout (:func:`~elliptio.layout.parse_key`)."""
    k = layout.parse_key(key)
    return k.id if k is not None and k.is_metadata else None


def read_metadata(lake: Lake, key: str) -> dict[str, Any]:
    """The metadata.yaml under *key*, read within its bound (a planted giant is never
    loaded) and accepted (:func:`elliptio.trust.read_stored_metadata`);
    :class:`~elliptio.trust.Quarantined` with the reason if not. Dedup references are
    checked against the catalogue by the caller (:func:`elliptio.trust.reference_problems`)."""
    if layout.parse_key(key) is None:
        raise Quarantined(f"{key}: not an artifact's metadata.yaml in the store layout")
    return read_stored_metadata(lake.store, key)


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """*items* in lists of *size* (the last one shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _since_time(since: Any) -> datetime:
    if isinstance(since, str) and len(since) == 10 and since[4] == "/" and since[7] == "/":
        since = since.replace("/", "-")  # the store layout's own day form, YYYY/MM/DD
    return parse_time(since, "since")


def metadata_keys(lake: Lake, since: Any = None) -> Iterator[str]:
    """Every metadata.yaml key of the store, or those of artifacts created at or after
    *since* (a time ``parse_time`` reads, or a day ``YYYY/MM/DD``): then only the day
    prefixes from that day to tomorrow are listed, not the whole store."""
    if since is None:
        yield from lake.store.list_metadata("")
        return
    start = _since_time(since)
    floor = id_floor(start)
    last = datetime.now(UTC) + timedelta(days=1)  # tolerate a little clock skew
    days = (last.date() - start.date()).days
    if days > MAX_DAY_LISTINGS:
        listings: Iterable[Iterator[str]] = [lake.store.list_metadata("")]
    else:
        listings = (lake.store.list_metadata(f"{start.date() + timedelta(days=d):%Y/%m/%d}/")
                    for d in range(days + 1))
    for listing in listings:
        for key in listing:
            aid = id_of_metadata_key(key)
            if aid is None or aid >= floor:
                yield key
