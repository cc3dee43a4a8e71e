"""``eio fsck``: the store compared with the catalogue (see :mod:`elliptio.indexer`)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import layout
from ..catalogue import Catalogue
from ..errors import IntegrityError, NotFound, StorageError
from . import orphans
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

    committed: dict[str, str] = {}  # id -> metadata key
    committed_prefixes: set[str] = set()
    for key in store.list_metadata(""):
        k = layout.parse_key(key)
        if k is None or not k.is_metadata:
            report.malformed.append(f"{key}: not in the store layout")
        else:
            committed[k.id] = key
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
        for chunk in chunks(ids, BATCH):
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
