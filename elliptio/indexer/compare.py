"""``eio fsck``: the store compared with the catalogue (see :mod:`elliptio.indexer`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import layout
from ..catalogue import Catalogue
from ..errors import IntegrityError, NotFound, StorageError
from ..store.files import hash_stream
from ..trust import dedup_references, reference_problems
from . import orphans
from .claims import unresolved
from .reading import BATCH, READERS, chunks, read_metadata

if TYPE_CHECKING:
    from ..lake import Lake

log = logging.getLogger(__name__)


@dataclass
class FsckReport:
    missing_from_catalogue: list[str] = field(default_factory=list)  # ids: reindex adds them
    missing_from_store: list[str] = field(default_factory=list)  # catalogued, no metadata.yaml
    orphans: list[str] = field(default_factory=list)  # prefixes left by interrupted saves
    removed_orphans: list[str] = field(default_factory=list)
    kept_orphans: list[str] = field(default_factory=list)  # "<prefix>: why not removed"
    mismatches: list[str] = field(default_factory=list)  # "<id>/<path>: why"
    #: "<key>: why": metadata elliptio.trust refuses (never catalogued by this version)
    quarantined: list[str] = field(default_factory=list)
    #: "<id>: ...": an id claimed by metadata at more than one prefix (first claim wins)
    conflicts: list[str] = field(default_factory=list)
    checked: int = 0  # artifacts whose metadata was read
    files_checked: int = 0
    bytes_verified: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing_from_catalogue or self.missing_from_store or self.orphans
                    or self.mismatches or self.quarantined or self.conflicts)


def fsck(lake: Lake, *, verify: bool = False, remove_orphans: bool = False,
         progress: Callable[[int], None] | None = None, catalogue: Catalogue | None = None,
         orphan_min_age: float = orphans.ORPHAN_MIN_AGE, readers: int = READERS) -> FsckReport:
    """Compare the store with the catalogue. Read-only unless *remove_orphans*.

    Without *verify* each file's size is checked (one stat/HEAD per object); with it every
    object is read and hashed (shared, deduplicated objects once). *remove_orphans* removes
    what interrupted saves left, only what is certainly abandoned: nothing written under the
    prefix for *orphan_min_age* seconds (default one day, never less than an hour), no
    metadata.yaml, and unchanged while fsck looks (see :mod:`.orphans`); what is kept is in
    ``kept_orphans`` with why. Artifacts committed while fsck runs are re-checked before
    being reported missing. *progress* is called once per artifact checked.
    """
    report = FsckReport()
    store, cat = lake.store, catalogue or lake.catalogue

    committed: dict[str, list[str]] = {}  # id -> metadata keys (one, unless planted)
    committed_prefixes: set[str] = set()
    for key in store.list_metadata(""):
        k = layout.parse_key(key)
        if k is None or not k.is_metadata:
            report.quarantined.append(f"{key}: not in the store layout")
        else:
            committed.setdefault(k.id, []).append(key)
            committed_prefixes.add(k.prefix)
    swept = orphans.sweep(store, committed_prefixes, remove=remove_orphans,
                          min_age=orphan_min_age)
    report.orphans, report.removed_orphans = swept.orphans, swept.removed
    report.kept_orphans = swept.kept

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
                with store.open(obj) as fh:
                    got = hash_stream(fh)
                with counter_lock:
                    report.bytes_verified += got.size
                problem = (None if (got.sha256, got.size) == want else
                           f"sha256/size differ (read {got.size} bytes, sha256 "
                           f"{got.sha256[:12]}…, recorded {want[0][:12]}…)")
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

    def check_artifact(aid: str) -> tuple[list[str], list[str], list[str]]:
        """(mismatches, quarantined, conflicts) of the metadata at every key of *aid*."""
        mismatches: list[str] = []
        refused: list[str] = []
        conflicts: list[str] = []
        keys = committed[aid]
        row = cat.get(aid)
        held = row.get("prefix") if row else None
        if len(keys) > 1:
            conflicts.append(f"{aid}: claimed by {' and '.join(keys)}; the catalogue holds "
                             f"{held or 'none of them'}")
        for key in keys:
            try:
                md = read_metadata(lake, key)
            except (IntegrityError, StorageError) as exc:
                refused.append(f"{key}: {exc}" if key not in str(exc) else str(exc))
                continue
            if held is not None and held != md["prefix"]:
                if len(keys) == 1:
                    conflicts.append(f"{aid}: {key} claims an id the catalogue holds "
                                     f"from {held}")
                continue
            if dedup_references(md):
                why = reference_problems(md, cat, store)
                if why is None:
                    why = [unresolved(md)]
                if why:
                    refused.append(f"{key}: {'; '.join(why)}")
                    continue
            entries = list(md["files"]) + list((md.get("logs") or {}).values())
            for f in entries:
                problem = check_object(f)
                if problem:
                    mismatches.append(f"{aid}/{f['path']}: {problem}")
        return mismatches, refused, conflicts

    ids = sorted(committed)
    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="eio-fsck") as pool:
        for chunk in chunks(ids, BATCH):
            have = cat.existing(chunk)
            report.missing_from_catalogue += [i for i in chunk if i not in have]
            for mismatches, refused, conflicts in pool.map(check_artifact, chunk):
                report.checked += 1
                report.mismatches += mismatches
                report.quarantined += refused
                report.conflicts += conflicts
                if progress:
                    progress(1)
    # quarantined metadata is never catalogued: it is not "missing" from the catalogue
    refused_ids = {k.id for q in report.quarantined
                   if (k := layout.parse_key(q.split(":", 1)[0])) is not None}
    report.missing_from_catalogue = [i for i in report.missing_from_catalogue
                                     if i not in refused_ids]
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
