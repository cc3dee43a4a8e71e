"""metadata.yaml -> catalogue: rebuild (reindex), compare (fsck), and the S3-event handler.

The store is the source of truth; these functions bring a catalogue in line with it. Every
write here is an idempotent upsert of metadata that never changes once written (the
metadata.yaml of an artifact is its commit point and is locked), so any of them may be
interrupted and run again.

- :func:`reindex` — ``eio reindex``: list the store's ``metadata.yaml`` keys, read the
  ones the catalogue lacks (concurrently: reads are latency-bound on S3) and upsert them in
  batches. An interrupted run resumes by running it again: what is catalogued is skipped
  without being read (``full=True`` re-reads and re-upserts everything, e.g. after an
  upgrade changed what is indexed). ``since`` limits it to recent days.
- :func:`migrate` — the move from the embedded default to a team catalogue: reindex the
  store into another catalogue URL (``eio reindex --to mongodb://…``).
- :func:`copy_catalogue` — export/import between two catalogues without reading the store.
- :func:`fsck` — ``eio fsck``: artifacts missing from the catalogue, catalogue rows
  without metadata, orphans of interrupted saves (optionally removed), malformed metadata,
  and files whose size (or, with ``verify``, sha256) does not match.
- :func:`lambda_handler` — AWS Lambda entry point for S3 ``ObjectCreated`` notifications
  on ``.eio/metadata.yaml`` (see docs/indexer.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlparse

from . import layout
from .artifact import load_metadata
from .catalogue import Catalogue, open_catalogue
from .errors import (
    CatalogueError,
    ElliptioError,
    Immutable,
    IntegrityError,
    NotFound,
    StorageError,
)
from .ids import id_time
from .query import id_floor, parse_time

if TYPE_CHECKING:
    from .lake import Lake

log = logging.getLogger(__name__)

#: artifacts upserted per catalogue round trip
BATCH = 500
#: metadata.yaml objects read at once (S3 GETs are latency-bound, not bandwidth-bound)
READERS = 16
#: with ``since`` older than this many days, one full listing beats a listing per day
MAX_DAY_LISTINGS = 3660


# -- shared helpers ------------------------------------------------------------------------
def id_of_metadata_key(key: str) -> str | None:
    """The artifact id in ``YYYY/MM/DD/<user>/<id>/.eio/metadata.yaml``, or None when the
    key is not an artifact's metadata in the store layout (:func:`~elliptio.layout.parse_key`)."""
    k = layout.parse_key(key)
    return k.id if k is not None and k.is_metadata else None


def read_metadata(lake: Lake, key: str) -> dict[str, Any]:
    """Parse the metadata.yaml under *key* and check it belongs where it lies (its id and
    prefix match the key). ``IntegrityError`` if not."""
    md = load_metadata(lake.store.read_bytes(key), key)
    k = layout.parse_key(key)
    if k is None or not k.is_metadata or md["id"] != k.id or md["prefix"] != k.prefix:
        raise IntegrityError(
            f"{key}: metadata of {md['id']!r} (prefix {md['prefix']!r}) is not where it "
            "belongs; was it copied by hand?")
    return md


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
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


# -- reindex ---------------------------------------------------------------------------------
@dataclass
class ReindexReport:
    scanned: int = 0  # metadata.yaml keys found in the store (within since)
    indexed: int = 0  # upserted into the catalogue by this run
    skipped: int = 0  # already catalogued, not read again (resume); 0 with full=True
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    seconds: float = 0.0
    catalogue: str = ""


def reindex(lake: Lake, *, since: Any = None, progress: Callable[[int], None] | None = None,
            catalogue: Catalogue | None = None, full: bool = False, batch_size: int = BATCH,
            readers: int = READERS) -> ReindexReport:
    """Upsert every artifact of the store (or those created at or after *since*: ``10d``,
    ``2026-11-24``, ``2026/11/24``) into *catalogue* (default: the lake's).

    Resumable: artifacts already catalogued are skipped without reading their metadata,
    so an interrupted run continues where it stopped; *full* re-reads and re-upserts them
    all. *progress* is called with the number of keys handled after each batch. Malformed
    metadata is reported and skipped; a store or catalogue failure raises (what was upserted
    stays, so running again resumes).
    """
    cat = catalogue or lake.catalogue
    report = ReindexReport(catalogue=cat.url)
    started = time.monotonic()

    def finish(pending: list[tuple[str, Future[dict[str, Any] | IntegrityError]]],
               scanned: int) -> None:
        batch = []
        for key, fut in pending:
            result = fut.result()
            if isinstance(result, IntegrityError):
                report.malformed.append((key, str(result)))
                log.warning("skipping %s: %s", key, result)
            else:
                batch.append(result)
        if batch:
            report.indexed += cat.upsert_many(batch)
        if progress:
            progress(scanned)

    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="eio-reindex") as pool:
        # one batch is read while the previous one is upserted
        previous: tuple[list[tuple[str, Future[Any]]], int] | None = None
        for keys in _chunks(metadata_keys(lake, since), batch_size):
            report.scanned += len(keys)
            todo = keys
            if not full:
                have = cat.existing(i for i in map(id_of_metadata_key, keys) if i)
                todo = [k for k in keys if id_of_metadata_key(k) not in have]
                report.skipped += len(keys) - len(todo)
            current = ([(k, pool.submit(_read_or_error, lake, k)) for k in todo], len(keys))
            if previous is not None:
                finish(*previous)
            previous = current
        if previous is not None:
            finish(*previous)
    report.seconds = round(time.monotonic() - started, 3)
    log.info("reindexed %d of %d artifact(s) into %s in %.1fs (%d already there)",
             report.indexed, report.scanned, cat.url, report.seconds, report.skipped)
    return report


def _read_or_error(lake: Lake, key: str) -> dict[str, Any] | IntegrityError:
    try:
        return read_metadata(lake, key)
    except IntegrityError as exc:
        return exc


def migrate(lake: Lake, target_url: str, *, since: Any = None,
            progress: Callable[[int], None] | None = None, full: bool = False
            ) -> ReindexReport:
    """Fill the catalogue at *target_url* from the store: the one-command move from the
    embedded SQLite default to a team MongoDB (``eio reindex --to mongodb://host/``).

    The store, not the old catalogue, is read, so the new catalogue is exactly what the
    store holds; database and collection names come from the lake's settings. Resumable
    like :func:`reindex`. Afterwards point ``ELLIPTIO_CATALOGUE`` at *target_url*.
    """
    s = lake.settings
    target = open_catalogue(target_url, database=s.mongo_database,
                            collection=s.mongo_collection)
    try:
        return reindex(lake, since=since, progress=progress, catalogue=target, full=full)
    finally:
        target.close()


def copy_catalogue(source: Catalogue, target: Catalogue, *,
                   progress: Callable[[int], None] | None = None,
                   batch_size: int = BATCH) -> int:
    """Export every artifact of *source* into *target* (an import without reading the
    store: faster than :func:`migrate` when the store is remote and the source catalogue is
    complete — check with ``eio fsck`` first). Idempotent; returns how many were copied."""
    from .query import Query

    n = 0
    for batch in _chunks(source.iter_all(Query(order="oldest", limit=None),
                                         page_size=batch_size), batch_size):
        n += target.upsert_many(batch)
        if progress:
            progress(len(batch))
    return n


# -- fsck ----------------------------------------------------------------------------------
@dataclass
class FsckReport:
    missing_from_catalogue: list[str] = field(default_factory=list)  # ids: reindex adds them
    missing_from_store: list[str] = field(default_factory=list)  # catalogued, no metadata.yaml
    orphans: list[str] = field(default_factory=list)  # prefixes left by interrupted saves
    removed_orphans: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # "<id>/<path>: why"
    malformed: list[str] = field(default_factory=list)  # "<key>: why"
    checked: int = 0  # artifacts whose metadata was read
    files_checked: int = 0
    bytes_verified: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing_from_catalogue or self.missing_from_store or self.orphans
                    or self.mismatches or self.malformed)


def fsck(lake: Lake, *, verify: bool = False, remove_orphans: bool = False,
         progress: Callable[[int], None] | None = None, catalogue: Catalogue | None = None,
         orphan_min_age: float = 0.0, readers: int = READERS) -> FsckReport:
    """Compare the store with the catalogue. Read-only unless *remove_orphans*.

    Without *verify* each file's size is checked (one stat/HEAD per object); with it every
    object is read and hashed (shared, deduplicated objects once). *remove_orphans* removes
    what interrupted saves left, only under prefixes without metadata.yaml and older than
    *orphan_min_age* seconds (a save in progress looks like an orphan until it commits;
    objects an S3 lock still protects stay and are reported). Artifacts committed while
    fsck runs are re-checked before being reported missing. *progress* is called once per
    artifact checked.
    """
    report = FsckReport()
    store, cat = lake.store, catalogue or lake.catalogue

    committed: dict[str, str] = {}  # id -> metadata key
    committed_prefixes: set[str] = set()
    for key in store.list_metadata(""):
        k = layout.parse_key(key)
        if k is None or not k.is_metadata:
            report.malformed.append(f"{key}: not in the store layout")
        else:
            committed[k.id] = key
            committed_prefixes.add(k.prefix)
    now = datetime.now(UTC)
    for prefix in sorted(set(store.list_artifact_dirs("")) - committed_prefixes):
        d = layout.parse_key(prefix)
        if d is None:
            continue
        aid = d.id
        if prefix in committed_prefixes or store.exists(layout.metadata_key(prefix)):
            continue  # committed since the listing
        report.orphans.append(prefix)
        if remove_orphans:
            if (now - id_time(aid)).total_seconds() < orphan_min_age:
                log.info("orphan %s is younger than %ss: kept (a save may be running)",
                         prefix, orphan_min_age)
                continue
            try:
                store.remove_orphan(prefix)
                if any(True for _ in store.list(prefix + "/")):
                    log.warning("orphan %s: some objects are still locked", prefix)
                else:
                    report.removed_orphans.append(prefix)
            except (Immutable, StorageError) as exc:
                log.warning("cannot remove orphan %s: %s", prefix, exc)

    checked_objects: dict[str, str | None] = {}  # object key -> problem (None: fine)
    counter_lock = threading.Lock()

    def check_object(f: Mapping[str, Any]) -> str | None:
        obj = f["object"]
        want = (f["sha256"], f["size"])
        cache_key = f"{obj}\0{want[0]}\0{want[1]}"
        if cache_key in checked_objects:
            return checked_objects[cache_key]
        try:
            if verify:
                h = hashlib.sha256()
                size = 0
                with store.open(obj) as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                        size += len(chunk)
                with counter_lock:
                    report.bytes_verified += size
                problem = (None if (h.hexdigest(), size) == want else
                           f"sha256/size differ (read {size} bytes, sha256 "
                           f"{h.hexdigest()[:12]}…, recorded {want[0][:12]}…)")
            else:
                size = store.size(obj)
                problem = None if size == want[1] else \
                    f"size differs ({size} bytes, recorded {want[1]})"
        except NotFound:
            problem = f"object {obj} is missing"
        except StorageError as exc:
            problem = f"cannot read {obj}: {exc}"
        checked_objects[cache_key] = problem
        return problem

    def check_artifact(aid: str) -> tuple[str, list[str], str | None]:
        key = committed[aid]
        try:
            md = read_metadata(lake, key)
        except (IntegrityError, StorageError) as exc:
            return aid, [], f"{key}: {exc}"
        problems = []
        entries = list(md["files"]) + list((md.get("logs") or {}).values())
        for f in entries:
            problem = check_object(f)
            if problem:
                problems.append(f"{aid}/{f['path']}: {problem}")
        return aid, problems, None

    ids = sorted(committed)
    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="eio-fsck") as pool:
        for chunk in _chunks(ids, BATCH):
            have = cat.existing(chunk)
            report.missing_from_catalogue += [i for i in chunk if i not in have]
            for _aid, problems, malformed in pool.map(check_artifact, chunk):
                report.checked += 1
                if malformed:
                    report.malformed.append(malformed)
                report.mismatches += problems
                if progress:
                    progress(1)
    report.files_checked = len(checked_objects)
    # rows whose metadata.yaml is not in the store (re-checked: a save may have committed
    # after the listing)
    for aid in cat.all_ids():
        if aid in committed:
            continue
        md = cat.get(aid)
        if md is not None and store.exists(layout.metadata_key(md.get("prefix", ""))):
            continue
        report.missing_from_store.append(aid)
    # and the catalogue may have caught up with saves that were in flight
    if report.missing_from_catalogue:
        late = cat.existing(report.missing_from_catalogue)
        report.missing_from_catalogue = [i for i in report.missing_from_catalogue
                                         if i not in late]
    return report


# -- the AWS Lambda handler ---------------------------------------------------------------
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
    Other keys, other buckets and other event types are ignored; malformed metadata is
    reported (logged, and listed in the result) and the rest of the batch is indexed. If a
    read or the catalogue write fails for a reason that may pass, the rest is still indexed
    and then the first such error is raised, so Lambda retries the batch.

    Returns ``{"records", "indexed": [ids], "ignored": [keys], "malformed": [{key,
    error}], "failed": [{key, error}]}``.
    """
    if lake is None:
        from .api import default_lake

        lake = default_lake()
    summary: dict[str, Any] = {"records": 0, "indexed": [], "ignored": [], "malformed": [],
                               "failed": []}
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
    batch: list[dict[str, Any]] = []
    batch_keys: list[str] = []
    for skey, key in found.items():
        try:
            batch.append(read_metadata(lake, skey))
            batch_keys.append(key)
        except IntegrityError as exc:
            summary["malformed"].append({"key": key, "error": str(exc)})
            log.error("malformed metadata %s: %s", key, exc)
        except (StorageError, NotFound) as exc:
            summary["failed"].append({"key": key, "error": str(exc)})
            errors.append(exc)
    if batch:
        try:
            lake.catalogue.upsert_many(batch)
            summary["indexed"] = [md["id"] for md in batch]
        except CatalogueError as exc:
            summary["failed"] += [{"key": k, "error": str(exc)} for k in batch_keys]
            errors.append(exc)
    log.info("indexer: %s", json.dumps({k: (v if isinstance(v, int) else len(v))
                                        for k, v in summary.items()}))
    if errors:
        log.error("indexer: %d failure(s), raising so the batch is retried: %s",
                  len(summary["failed"]), summary["failed"])
        raise errors[0]
    return summary
