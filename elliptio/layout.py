"""The fixed store layout and validation of user file names (docs/design.md §4 sums it up).

    <root>/YYYY/MM/DD/<user>/<id>/<user files>
    <root>/YYYY/MM/DD/<user>/<id>/.eio/metadata.yaml    written last: the commit point
    <root>/YYYY/MM/DD/<user>/<id>/.eio/logs/<name>

An empty directory of an artifact has no object: it exists only as a name in the
metadata's ``dirs`` list (see :mod:`elliptio.artifact`), checked by :func:`check_dirs`.

:func:`parse_key` is the one reader of this layout: every piece of code that asks what a
store key is (the indexer, fsck, the stores' orphan listings, the web page's object
check, a load that searches the store without the catalogue) asks it.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import UsageError
from .ids import ID_RE, id_time

METADATA = ".eio/metadata.yaml"
LOGS = ".eio/logs/"
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_DAY = re.compile(r"^[0-9]{4}/[0-9]{2}/[0-9]{2}$")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def artifact_prefix(created: datetime, user: str, artifact_id: str) -> str:
    return f"{created:%Y/%m/%d}/{user}/{artifact_id}"


def metadata_key(prefix: str) -> str:
    return f"{prefix}/{METADATA}"


@dataclass(frozen=True)
class StoreKey:
    """A store key read by :func:`parse_key`: ``<day>/<user>/<id>[/<path>]``."""

    day: str  # YYYY/MM/DD, the artifact's creation day (UTC)
    user: str
    id: str
    path: str  # inside the artifact ("" for the artifact's prefix itself)

    @property
    def prefix(self) -> str:
        """``YYYY/MM/DD/<user>/<id>``: the artifact's directory in the store."""
        return f"{self.day}/{self.user}/{self.id}"

    @property
    def is_metadata(self) -> bool:
        """True for the artifact's ``.eio/metadata.yaml`` (its commit point)."""
        return self.path == METADATA


def parse_key(key: str) -> StoreKey | None:
    """What *key* is in the layout, or None for a key that is not of it.

    Of the layout: ``YYYY/MM/DD`` (digits), a user segment, an artifact id
    (:data:`~elliptio.ids.ID_RE`), then optionally a path inside the artifact. No
    component may be empty, ``.`` or ``..``, and none may hold a NUL, so a key that
    parses stays inside its artifact's directory. Keys come from store listings and from
    metadata (untrusted): anything else is None, never an exception."""
    if not isinstance(key, str) or "\x00" in key:
        return None
    parts = key.split("/")
    if len(parts) < 5 or any(p in ("", ".", "..") for p in parts):
        return None
    day = "/".join(parts[:3])
    if not _DAY.fullmatch(day) or not ID_RE.fullmatch(parts[4]):
        return None
    return StoreKey(day, parts[3], parts[4], "/".join(parts[5:]))


def has_bad_chars(name: str) -> bool:
    """True when *name* holds a control character or a backslash (never in a stored name)."""
    return _BAD_CHARS.search(name) is not None


def check_name(name: str) -> str:
    """Normalise a relative file name inside an artifact; raise UsageError if unsafe."""
    if not isinstance(name, str) or not name:
        raise UsageError("empty file name")
    if name.startswith("/"):
        raise UsageError(f"file name {name!r} is absolute; names inside an artifact are relative")
    if _BAD_CHARS.search(name):
        raise UsageError(f"file name {name!r} contains control characters or backslashes")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UsageError(f"file name {name!r} contains '..'")
    if not parts:
        raise UsageError(f"file name {name!r} names no file")
    if any(p.startswith(".eio") for p in parts):
        raise UsageError(f"file name {name!r}: names starting with '.eio' are reserved")
    norm = posixpath.join(*parts)
    if len(norm.encode()) > 1024 or any(len(p.encode()) > 255 for p in parts):
        raise UsageError(f"file name {name[:60]!r}... is too long")
    return norm


def _ancestors(name: str) -> Iterable[str]:
    """``a``, ``a/b`` of ``a/b/c``: the directories a name lies in."""
    parts = name.split("/")
    return ("/".join(parts[:i]) for i in range(1, len(parts)))


def check_dirs(dirs: Iterable[str], files: Iterable[str]) -> list[str]:
    """The empty directories to record beside *files* (normalised names): each checked
    and normalised like a file name (:func:`check_name`), sorted, and only those that no
    file or other directory below them implies. ``UsageError`` for a name that is also a
    file or lies below one (no tree could hold both)."""
    names = {check_name(d) for d in dirs}
    if not names:
        return []
    file_names = set(files)
    for d in sorted(names):
        clash = d if d in file_names else next(
            (a for a in _ancestors(d) if a in file_names), None)
        if clash is not None:
            raise UsageError(f"directory name {d!r}: {clash!r} is a file")
    implied = {a for n in (*file_names, *names) for a in _ancestors(n)}
    return sorted(names - implied)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ref_problem(artifact_id: str, prefix: str, obj: str) -> str | None:
    """Why *obj* is not a possible dedup reference of *artifact_id*, or None."""
    k = parse_key(obj)
    if k is None or not k.path:
        return f"object {obj!r} is not a file key of the store layout"
    if k.path == ".eio" or k.path.startswith(".eio/"):
        return f"object {obj!r} is inside an artifact's .eio/"
    if k.id == artifact_id:  # identical files of one save share the first one's object
        return None if k.prefix == prefix else f"object {obj!r} is not under {prefix}/"
    if k.id > artifact_id:
        return f"object {obj!r} belongs to an artifact that is not older than {artifact_id}"
    if artifact_prefix(id_time(k.id), k.user, k.id) != k.prefix:
        return f"object {obj!r} lies under a day that is not its artifact's"
    return None


@functools.lru_cache(maxsize=4096)
def _prefix_problem(prefix: str, aid: str, user: str | None) -> str | None:
    """Why *prefix* is not the day, *user* and id *aid* of an artifact (cached: every
    entry of an artifact asks)."""
    if (user is None or not user or "/" in user or user in (".", "..")
            or has_bad_chars(user)):
        return f"artifact {aid[:40]!r}: user {str(user)[:40]!r} is not one path segment"
    if not ID_RE.fullmatch(aid) or prefix != artifact_prefix(id_time(aid), user, aid):
        return f"artifact {aid[:40]!r}: prefix {prefix[:80]!r} is not its day, user and id"
    return None


def entry_problem(md: Mapping[str, Any], entry: Any, kind: str = "file") -> str | None:
    """Why a reader must refuse the file (or, *kind* ``"log"``, the log) *entry* of the
    artifact *md*, or None: the rule every reader re-checks before serving bytes, even for
    a row an older catalogue holds (see :mod:`elliptio.trust`). The artifact's prefix must
    be its id's day, its user and its id; the path one a save writes; the object the
    file's own key or one of an older artifact's files (a dedup reference), never inside
    an ``.eio/``; the size a byte count and the sha256 a digest. Cheap: no store or
    catalogue call. The bytes are checked against the entry's sha256 by whoever reads
    them."""
    if not isinstance(entry, Mapping):
        return f"{kind} entry is not a mapping"
    path, obj = entry.get("path"), entry.get("object")
    if not isinstance(path, str) or not isinstance(obj, str):
        return f"{kind} entry without a path or an object"
    if not _is_int(entry.get("size")) or entry["size"] < 0:
        return f"{kind} {path!r}: size {entry.get('size')!r} is not a byte count"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return f"{kind} {path!r}: sha256 {str(entry.get('sha256'))[:70]!r} is not a digest"
    prefix, aid, user = str(md.get("prefix", "")), str(md.get("id", "")), md.get("user")
    why = _prefix_problem(prefix, aid, user if isinstance(user, str) else None)
    if why:
        return why
    if kind == "log":
        name = path[len(LOGS):] if path.startswith(LOGS) else ""
        if not name or "/" in name or name in (".", "..") or has_bad_chars(name):
            return f"log path {path!r} is not a name under {LOGS}"
        if obj != f"{prefix}/{path}":
            return f"log {path!r}: object {obj!r} is not the log's own key"
        return None
    try:
        if check_name(path) != path:
            return f"file path {path!r} is not normalised"
    except UsageError as exc:
        return f"file path {path[:200]!r}: {exc}"
    if obj == f"{prefix}/{path}":
        return None
    return _ref_problem(aid, prefix, obj)
