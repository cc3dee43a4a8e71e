"""What ElliptIO accepts of metadata read back from the store or a catalogue.

A team bucket is written by every member (that is how they save), so a ``metadata.yaml``
is trusted for nothing it claims (docs/security.md). :func:`accept_metadata` is the one
gate between the store and the catalogue (the Lambda handler, ``eio reindex``, ``--to``
migration and ``eio fsck`` all read through it);
:func:`elliptio.layout.entry_problem` is the rule every reader re-checks before serving a file's bytes (``load``/``open``/``download``, ``eio
get``, the mount and the web page), even for a row an older catalogue holds.

A metadata.yaml is accepted only when it is consistent with where it lies:

- it is at most :data:`MAX_METADATA_BYTES` bytes and YAML within the bounds of
  :func:`elliptio.yamlsafe.load_bounded` (no alias bomb is ever expanded);
- its ``id`` is its directory name, its ``user`` the path's user segment, its ``prefix``
  the key's, its day the id's day, and its ``created`` the id's time within
  :data:`CREATED_TOLERANCE` (a save writes exactly the id's time);
- every file path is one a save writes (:func:`elliptio.layout.check_name`, normalised,
  each once), every value has the type a save writes (sizes non-negative integers,
  sha256 64 lower-case hex digits, ``info`` a mapping :func:`elliptio.validate.check_info`
  accepts, tags :func:`~elliptio.validate.check_tags` leaves unchanged, ``based_on``
  artifact ids);
- every file's object is its own key (``<prefix>/<path>``), or a dedup reference: the
  key of a file of an *earlier* artifact (an older id), outside that artifact's ``.eio/``.
  That the referenced artifact is catalogued with that object for that sha256 and size,
  and that the store holds an object of that size, is checked by
  :func:`reference_problems` (the indexer, against the catalogue it fills);
- every log is its own key under ``<prefix>/.eio/logs/``.

Anything else raises :class:`Quarantined` with the reason; the indexer lists it and goes
on with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import layout
from .artifact import stored_dirs
from .errors import IntegrityError, UsageError
from .ids import ID_RE, id_time
from .validate import check_info, check_tags
from .yamlsafe import load_bounded

if TYPE_CHECKING:
    from .catalogue import Catalogue
    from .store import Store

#: the largest metadata.yaml read (an artifact of 100,000 files is about 25 MiB)
MAX_METADATA_BYTES = 64 << 20
#: how far ``created`` may lie from the id's time (a save writes the id's time exactly)
CREATED_TOLERANCE = timedelta(seconds=2)


class Quarantined(IntegrityError):
    """A metadata.yaml that is not catalogued, with the reason (see the module)."""


def _problem(md: Any, k: layout.StoreKey) -> str | None:
    """The first rule of the module docstring that *md* (found at *k*) breaks, or None."""
    if not isinstance(md, dict):
        return "not a mapping"
    fmt = md.get("elliptio", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        return f"format {fmt!r} is not an ElliptIO metadata version"
    for key in ("id", "user", "created", "prefix"):
        if not isinstance(md.get(key), str):
            return f"{key!r} is missing or not a string"
    if md["id"] != k.id:
        return f"id {md['id']!r} is not its directory's name {k.id!r}"
    if md["prefix"] != k.prefix:
        return f"prefix {md['prefix']!r} is not where it lies ({k.prefix!r})"
    if md["user"] != k.user:
        return f"user {md['user']!r} is not the path's user {k.user!r}"
    when = id_time(k.id)
    if layout.artifact_prefix(when, k.user, k.id) != k.prefix:
        return f"day {k.day} is not the id's day ({when:%Y/%m/%d})"
    try:
        created = datetime.fromisoformat(md["created"].replace("Z", "+00:00"))
        off = abs(created - when)
    except (ValueError, TypeError):
        return f"created {md['created'][:40]!r} is not an ISO-8601 UTC time"
    if off > CREATED_TOLERANCE:
        return f"created {md['created']!r} is not the id's time ({when.isoformat()})"
    try:
        if "info" in md and md["info"] is not None:
            check_info(md["info"], None)
        tags = md.get("tags") or []
        if not isinstance(tags, list) or check_tags(tags) != tags:
            return "tags are not a list of distinct, stripped, path-safe names"
    except UsageError as exc:
        return str(exc)
    parents = md.get("based_on") or []
    if not isinstance(parents, list) or not all(
            isinstance(p, str) and ID_RE.fullmatch(p) and p != k.id for p in parents):
        return "based_on is not a list of other artifacts' ids"
    if not isinstance(md.get("provenance", {}), (dict, type(None))):
        return "provenance is not a mapping"
    files = md.get("files")
    if not isinstance(files, list) or not files:
        return "files is not a non-empty list"
    seen: set[str] = set()
    for entry in files:
        why = layout.entry_problem(md, entry)
        if why:
            return why
        if entry["path"] in seen:
            return f"file path {entry['path']!r} is listed twice"
        seen.add(entry["path"])
    logs = md.get("logs") or {}
    if not isinstance(logs, dict):
        return "logs is not a mapping"
    for name, entry in logs.items():
        why = layout.entry_problem(md, entry, "log") if isinstance(name, str) else "log name"
        if why:
            return why
    try:
        stored_dirs(md, "dirs")
    except IntegrityError as exc:
        return str(exc)
    return None


def accept_metadata(data: bytes, key: str) -> dict[str, Any]:
    """The metadata.yaml *data* read at store key *key*, if the module's rules accept it;
    :class:`Quarantined` with the reason if not (never another exception)."""
    k = layout.parse_key(key)
    if k is None or not k.is_metadata:
        raise Quarantined(f"{key}: not an artifact's metadata.yaml in the store layout")
    try:
        md = load_bounded(data, key, max_bytes=MAX_METADATA_BYTES)
    except IntegrityError as exc:
        raise Quarantined(str(exc)) from None
    try:
        why = _problem(md, k)
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
        why = f"cannot be checked ({type(exc).__name__})"
    if why:
        raise Quarantined(f"{key}: {why}")
    return md


#: the first read of a metadata.yaml; nearly all are smaller, so one read
FIRST_READ = 1 << 20


def read_stored_metadata(store: Store, key: str) -> dict[str, Any]:
    """The metadata.yaml at store key *key*, read within :data:`MAX_METADATA_BYTES` and
    accepted (:func:`accept_metadata`). One read of :data:`FIRST_READ` bytes for all but
    the largest; a larger one is read whole only when the store says it is within the
    bound, so a planted giant is never loaded, and no reader allocates the bound."""
    head = store.read_range(key, 0, FIRST_READ)
    data = head
    if len(head) >= FIRST_READ:
        size = store.size(key)
        if size > MAX_METADATA_BYTES:
            raise Quarantined(f"{key}: {size} bytes; at most {MAX_METADATA_BYTES} are read")
        data = head + store.read_range(key, FIRST_READ, size - FIRST_READ)
    return accept_metadata(data, key)


def dedup_references(md: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The file entries of accepted *md* whose object is another artifact's."""
    own = str(md["prefix"]) + "/"
    return [f for f in md["files"] if not f["object"].startswith(own)]


def reference_problems(md: Mapping[str, Any], catalogue: Catalogue, store: Store | None,
                       pending: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> list[str] | None:
    """Why the dedup references of accepted *md* cannot be trusted (a list, empty when
    they all can), or None when an artifact they refer to is not catalogued yet (the
    indexer retries once the rest of the store is in).

    A reference is trusted when the artifact it names is catalogued (or, when it is not,
    in *pending*: accepted metadata of the batch being indexed, by id) with a file of its own at that object with the
    same sha256 and size, and *store* (when given) holds an object of that size."""
    problems: list[str] = []
    waiting = False
    for f in dedup_references(md):
        k = layout.parse_key(f["object"])
        assert k is not None  # entry_problem accepted it
        held = catalogue.holds_object(k.id, f["object"], f["sha256"], f["size"])
        owner = (pending or {}).get(k.id) if held is None else None
        if owner is not None:
            held = any(g["object"] == f["object"] and g["sha256"] == f["sha256"]
                       and g["size"] == f["size"] for g in owner["files"]
                       if g["object"] == f"{owner['prefix']}/{g['path']}")
        if held is None:
            waiting = True
            continue
        if not held:
            problems.append(f"file {f['path']!r}: {k.id} holds no object {f['object']!r} "
                            "with that sha256 and size")
            continue
        if store is not None:
            try:
                size = store.size(f["object"])
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                problems.append(f"file {f['path']!r}: object {f['object']!r}: {exc}")
                continue
            if size != f["size"]:
                problems.append(f"file {f['path']!r}: object {f['object']!r} holds {size} "
                                f"bytes, not {f['size']}")
    if waiting and not problems:
        return None
    return problems
