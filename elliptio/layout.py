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

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .errors import UsageError
from .ids import ID_RE

METADATA = ".eio/metadata.yaml"
LOGS = ".eio/logs/"
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_DAY = re.compile(r"^[0-9]{4}/[0-9]{2}/[0-9]{2}$")


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
