"""``eio fsck``'s orphans: artifact directories without ``metadata.yaml``, and their removal
(``--remove-orphans``), which takes only what is certainly abandoned.

A save in progress looks exactly like an orphan until its ``metadata.yaml`` is written, so
a directory is removed only when all of these hold, in this order:

1. its :meth:`~elliptio.store.base.Store.inventory` (every object, version, temporary,
   incomplete upload and, on the local store, directory) shows nothing written for the
   minimum age: :data:`ORPHAN_MIN_AGE` by default, never less than
   :data:`ORPHAN_MIN_AGE_FLOOR`, measured from the *newest* entry (not from the id's time,
   which is when the save started);
2. ``metadata.yaml`` still does not exist (re-checked after the listing);
3. a second inventory equals the first: nothing was written, replaced or removed in
   between;
4. :meth:`~elliptio.store.base.Store.remove_orphan` is given the first inventory and
   deletes only what it lists (on S3: those versions and uploads), re-checking for
   ``metadata.yaml`` once more, and never deletes a ``metadata.yaml`` key.

Why this protects a save in progress: a save writes its objects one after another and
``metadata.yaml`` right after the last (:meth:`elliptio.lake.Lake.save_entries`); on the
local store even a file being read is a temporary whose mtime moves with every MiB. So a
live save's directory always has an entry younger than the time the save takes between
two writes, and only a save that has written nothing to the store for the minimum age can
be taken. The floor keeps that true when a caller asks for 0: the one gap the store cannot
see is an S3 save hashing a large file before uploading it (S3 staging only reads), and
an hour covers hashing about a terabyte. The listing/re-check/second-listing steps add that
nothing written after the first listing is deleted, and that a save which commits in the
window loses nothing it needs (its metadata.yaml is never deleted, and steps 2–4 stop).

Whatever is kept is reported with why: too young, committed meanwhile, changed meanwhile,
or locked (Object Lock retention, or entries that are not store objects, such as a
symbolic link planted in a local store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import layout
from ..errors import Immutable, StorageError
from ..store.base import Store, StoredObject

log = logging.getLogger(__name__)

#: default minimum age of an orphan, in seconds since its newest entry: one day
ORPHAN_MIN_AGE = 86400.0
#: the least minimum age fsck applies, whatever it is asked: one hour
ORPHAN_MIN_AGE_FLOOR = 3600.0

#: the clock ages are measured against (POSIX seconds); tests replace it to age a prefix
#: whose store cannot be back-dated (S3 sets LastModified itself)
clock: Callable[[], float] = time.time


@dataclass
class OrphanSweep:
    """What :func:`sweep` found: every orphan, those removed, those kept and why."""

    orphans: list[str] = field(default_factory=list)  # prefixes without metadata.yaml
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "<prefix>: why it was kept"


def sweep(store: Store, committed_prefixes: Iterable[str], *, remove: bool = False,
          min_age: float = ORPHAN_MIN_AGE) -> OrphanSweep:
    """The orphans of *store*: artifact directories not in *committed_prefixes* and still
    without ``metadata.yaml``; with *remove*, each is removed if it is certainly abandoned
    (see the module docstring), else kept and reported. *min_age* is in seconds since the
    newest entry, raised to :data:`ORPHAN_MIN_AGE_FLOOR` if lower."""
    result = OrphanSweep()
    limit = max(float(min_age), ORPHAN_MIN_AGE_FLOOR)
    committed = set(committed_prefixes)
    for prefix in sorted(set(store.list_artifact_dirs("")) - committed):
        if layout.parse_key(prefix) is None:
            continue
        if store.exists(layout.metadata_key(prefix)):
            continue  # committed since the listing
        result.orphans.append(prefix)
        if not remove:
            continue
        why = _remove(store, prefix, limit)
        if why is None:
            result.removed.append(prefix)
        else:
            log.info("orphan %s kept: %s", prefix, why)
            result.kept.append(f"{prefix}: {why}")
    return result


def _remove(store: Store, prefix: str, limit: float) -> str | None:
    """Remove the orphan *prefix* if certainly abandoned; None once removed, else why not."""
    try:
        listed = store.inventory(prefix)
        if listed:
            age = clock() - max(o.mtime for o in listed)
            if age < limit:
                return (f"too young: its newest entry is {max(age, 0):.0f}s old, the "
                        f"minimum age is {limit:.0f}s (a save may be running)")
        if store.exists(layout.metadata_key(prefix)):
            return "committed meanwhile"
        if set(store.inventory(prefix)) != set(listed):
            return "changed meanwhile: written to since it was listed"
        store.remove_orphan(prefix, listed)
        left = store.inventory(prefix)
    except Immutable:
        return "committed meanwhile"
    except StorageError as exc:
        return f"cannot remove: {exc}"
    return _what_is_left(listed, left)


def _what_is_left(listed: list[StoredObject], left: list[StoredObject]) -> str | None:
    if not left:
        return None
    # a directory's mtime moves when its files go, so only new keys, versions and uploads
    # count as written during the removal
    def written(objs: list[StoredObject]) -> set[tuple[str, str, str]]:
        return {(o.key, o.version, o.kind) for o in objs if o.kind != "directory"}

    new = written(left) - written(listed)
    if new:
        return f"changed meanwhile: {len(new)} entry(ies) written during the removal"
    return f"locked: {len(left)} entry(ies) could not be removed (Object Lock retention, " \
           f"or not a store object)"
