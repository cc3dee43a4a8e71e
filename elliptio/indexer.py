"""metadata.yaml -> catalogue: rebuild (reindex), compare (fsck), and the S3-event handler.

The store is the source of truth; these functions bring a catalogue in line with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import layout
from .artifact import load_metadata
from .errors import ElliptioError, Immutable, IntegrityError
from .ids import ID_RE
from .query import Query

if TYPE_CHECKING:
    from .api import Lake

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class ReindexReport:
    scanned: int = 0
    indexed: int = 0
    malformed: list[tuple[str, str]] = field(default_factory=list)


def reindex(lake: Lake, *, since: str | None = None,
            progress: Callable[[int], None] | None = None) -> ReindexReport:
    """Upsert every artifact of the store (or those created on/after the day *since*,
    ``YYYY/MM/DD`` or ``YYYY-MM-DD``) into the catalogue. Idempotent, so an interrupted run
    is resumed by running it again."""
    report = ReindexReport()
    batch: list[dict[str, Any]] = []
    for key in _metadata_keys(lake, since):
        report.scanned += 1
        try:
            md = load_metadata(lake.store.read_bytes(key), key)
        except ElliptioError as exc:
            report.malformed.append((key, str(exc)))
            log.warning("skipping %s: %s", key, exc)
            continue
        batch.append(md)
        if len(batch) >= BATCH:
            report.indexed += lake.catalogue.upsert_many(batch)
            batch.clear()
        if progress:
            progress(1)
    if batch:
        report.indexed += lake.catalogue.upsert_many(batch)
    return report


def _metadata_keys(lake: Lake, since: str | None) -> Iterator[str]:
    if since is None:
        yield from lake.store.list_metadata("")
        return
    from .query import parse_time

    start = parse_time(since, "since")
    for key in lake.store.list_metadata(""):
        day = "/".join(key.split("/")[:3])
        if day >= f"{start:%Y/%m/%d}":
            yield key


@dataclass
class FsckReport:
    missing_from_catalogue: list[str] = field(default_factory=list)
    missing_from_store: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    removed_orphans: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing_from_catalogue or self.missing_from_store or self.orphans
                    or self.mismatches or self.malformed)


def fsck(lake: Lake, *, verify: bool = False, remove_orphans: bool = False,
         progress: Callable[[int], None] | None = None) -> FsckReport:
    """Compare store and catalogue; with *verify*, re-hash every object."""
    report = FsckReport()
    store, cat = lake.store, lake.catalogue
    committed: set[str] = set()
    artifact_dirs: set[str] = set()
    for d in store.list_artifact_dirs(""):
        if ID_RE.match(d.rsplit("/", 1)[-1]):
            artifact_dirs.add(d)
    for key in store.list_metadata(""):
        committed.add(layout.prefix_of_metadata_key(key))
    for prefix in sorted(artifact_dirs - committed):
        report.orphans.append(prefix)
        if remove_orphans:
            try:
                store.remove_orphan(prefix)
                report.removed_orphans.append(prefix)
            except (Immutable, ElliptioError) as exc:
                log.warning("cannot remove orphan %s: %s", prefix, exc)
    store_ids = set()
    for prefix in sorted(committed):
        aid = prefix.rsplit("/", 1)[-1]
        store_ids.add(aid)
        report.checked += 1
        try:
            md = load_metadata(store.read_bytes(layout.metadata_key(prefix)), prefix)
        except ElliptioError:
            report.malformed.append(prefix)
            continue
        if cat.get(aid) is None:
            report.missing_from_catalogue.append(aid)
        entries = list(md["files"]) + list((md.get("logs") or {}).values())
        for f in entries:
            try:
                if verify:
                    h = hashlib.sha256()
                    size = 0
                    with store.open(f["object"]) as fh:
                        while chunk := fh.read(1 << 20):
                            h.update(chunk)
                            size += len(chunk)
                    ok = h.hexdigest() == f["sha256"] and size == f["size"]
                else:
                    ok = store.size(f["object"]) == f["size"]
            except (ElliptioError, IntegrityError):
                ok = False
            if not ok:
                report.mismatches.append(f"{aid}/{f['path']}")
        if progress:
            progress(1)
    for md in cat.iter_all(Query(limit=None)):
        if md["id"] not in store_ids:
            report.missing_from_store.append(md["id"])
    return report
