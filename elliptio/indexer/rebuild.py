"""Rebuilding a catalogue from the store (:func:`reindex`, :func:`migrate`) or from another
catalogue (:func:`copy_catalogue`); see :mod:`elliptio.indexer`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalogue import Catalogue, Conflict, open_catalogue
from ..errors import IntegrityError
from ..query import Query
from .claims import claim, unresolved
from .reading import BATCH, READERS, chunks, id_of_metadata_key, metadata_keys, read_metadata

if TYPE_CHECKING:
    from ..lake import Lake

log = logging.getLogger(__name__)


@dataclass
class ReindexReport:
    scanned: int = 0  # metadata.yaml keys found in the store (within since)
    indexed: int = 0  # upserted into the catalogue by this run
    skipped: int = 0  # already catalogued, not read again (resume); 0 with full=True
    #: (key, why): metadata not catalogued because the rules of elliptio.trust refuse it
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    #: ids claimed from another prefix first: the refused metadata (first claim wins)
    conflicts: list[Conflict] = field(default_factory=list)
    seconds: float = 0.0
    catalogue: str = ""


def reindex(lake: Lake, *, since: Any = None, progress: Callable[[int], None] | None = None,
            catalogue: Catalogue | None = None, full: bool = False, batch_size: int = BATCH,
            readers: int = READERS) -> ReindexReport:
    """Upsert every artifact of the store (or those created at or after *since*: ``10d``,
    ``2026-11-24``, ``2026/11/24``) into *catalogue* (default: the lake's).

    Resumable: artifacts already catalogued are skipped without reading their metadata,
    so an interrupted run continues where it stopped; *full* re-reads and re-upserts them
    all. *progress* is called with the number of keys handled after each batch. Metadata
    that :mod:`elliptio.trust` refuses is quarantined (listed with the reason, never
    catalogued, never stopping the rest); an id claimed from another prefix first is a
    conflict (listed; the first claim stays). A store or catalogue failure raises (what
    was upserted stays, so running again resumes).
    """
    cat = catalogue or lake.catalogue
    report = ReindexReport(catalogue=cat.url)
    started = time.monotonic()
    # metadata whose dedup references name an artifact not catalogued yet (listings are
    # by day and user, not by id): tried again once the rest is in
    waiting: list[tuple[str, dict[str, Any]]] = []

    def quarantine(key: str, why: str) -> None:
        report.quarantined.append((key, why))
        log.warning("quarantined %s: %s", key, why)

    def record(batch: list[tuple[str, dict[str, Any]]]) -> int:
        """Claim *batch*; how many of it wait for an artifact not catalogued yet."""
        done = claim(cat, lake.store, batch)
        report.indexed += len(done.indexed)
        report.conflicts += done.conflicts
        for c in done.conflicts:
            log.warning("conflict: %s", c)
        for key, why in done.quarantined:
            quarantine(key, why)
        waiting.extend(done.waiting)
        return len(done.waiting)

    def finish(pending: list[tuple[str, Future[dict[str, Any] | IntegrityError]]],
               scanned: int) -> None:
        batch = []
        for key, fut in pending:
            result = fut.result()
            if isinstance(result, IntegrityError):
                quarantine(key, str(result))
            else:
                batch.append((key, result))
        record(batch)
        if progress:
            progress(scanned)

    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="eio-reindex") as pool:
        # one batch is read while the previous one is upserted
        previous: tuple[list[tuple[str, Future[Any]]], int] | None = None
        for keys in chunks(metadata_keys(lake, since), batch_size):
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
    # a chain of references resolves one link per round; a round without progress ends it
    while waiting:
        retry = list(waiting)
        waiting.clear()
        if record(retry) == len(retry):
            break
    for key, md in waiting:
        quarantine(key, unresolved(md))
    report.seconds = round(time.monotonic() - started, 3)
    log.info("reindexed %d of %d artifact(s) into %s in %.1fs (%d already there, "
             "%d quarantined, %d conflicts)", report.indexed, report.scanned, cat.url,
             report.seconds, report.skipped, len(report.quarantined), len(report.conflicts))
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
    n = 0
    for batch in chunks(source.iter_all(Query(order="oldest", limit=None),
                                         page_size=batch_size), batch_size):
        n += target.upsert_many(batch)
        if progress:
            progress(len(batch))
    return n
