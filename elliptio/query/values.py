"""How the values of a query are read: globs, times and ``info`` values (the semantics
are in :mod:`elliptio.query`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import QueryError
from ..ids import _ALPHABET

GLOB_CHARS = re.compile(r"[*?\[]")


# -- globs ------------------------------------------------------------------------------
def is_glob(pattern: str) -> bool:
    return bool(GLOB_CHARS.search(pattern))


def check_glob(pattern: str, what: str) -> str:
    if not isinstance(pattern, str) or pattern == "":
        raise QueryError(f"{what}: empty pattern")
    glob_to_regex(pattern, what)
    return pattern


def glob_to_regex(pattern: str, what: str = "glob") -> str:
    """An anchored regex with exactly SQLite ``GLOB``'s semantics (for MongoDB, tests).

    Portable between Python's ``re`` and MongoDB's PCRE without flags: ``[\\s\\S]``
    stands for "any character" (``.`` would miss a newline) and the end anchor is
    ``(?![\\s\\S])`` (``$`` also matches before a final newline). Character classes are
    read the way SQLite's ``patternCompare`` reads them: a ``]`` first in the class is a
    member, ``-`` makes a range only between two members (so ``[]-a]`` is three
    characters), and a reversed range like ``[z-a]`` matches nothing.
    """
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(_ANY + "*")
        elif c == "?":
            out.append(_ANY)
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            members: list[tuple[str, str]] = []
            if j < n and pattern[j] == "]":
                members.append(("]", "]"))
                j += 1
            prior: str | None = None
            while j < n and pattern[j] != "]":
                c2 = pattern[j]
                if c2 == "-" and prior is not None and j + 1 < n and pattern[j + 1] != "]":
                    members.append((prior, pattern[j + 1]))
                    prior = None
                    j += 1
                else:
                    members.append((c2, c2))
                    prior = c2
                j += 1
            if j >= n:
                raise QueryError(f"{what}: unclosed '[' in {pattern!r}")
            parts = [re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
                     for lo, hi in members if lo <= hi]
            if parts:
                out.append("[" + ("^" if negate else "") + "".join(parts) + "]")
            else:  # only reversed ranges: nothing (or, negated, anything)
                out.append(_ANY if negate else _NOTHING)
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    out.append(_END)
    return "".join(out)


_ANY = r"[\s\S]"
_NOTHING = r"[^\s\S]"
_END = r"(?![\s\S])"


# -- times ------------------------------------------------------------------------------
_REL = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: Any, what: str, *, end_of_day: bool = False) -> datetime:
    """Relative (``10d``), ISO date or datetime, or a datetime object; always UTC-aware."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        d = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return d + timedelta(days=1) if end_of_day else d
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"{what}: expected a time like 10d, 3h or 2026-11-24, got {value!r}")
    text = value.strip()
    m = _REL.fullmatch(text)
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return d + timedelta(days=1) if end_of_day else d
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"{what}: cannot read {value!r} as a time (use 10d, 3h, 2026-11-24 or "
            "2026-11-24T12:00:00Z)"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def id_floor(t: datetime) -> str:
    """The smallest artifact id created at or after *t* (for id-range time filters)."""
    ms = max(0, int(t.timestamp() * 1000))
    if ms >= 1 << 48:
        return "8" + "0" * 25  # beyond every id
    chars = []
    for _ in range(10):
        chars.append(_ALPHABET[ms & 31])
        ms >>= 5
    return "".join(reversed(chars)) + "0" * 16


# -- info -------------------------------------------------------------------------------
def canonical(value: Any) -> str:
    """The canonical JSON text of an info value (how equality is decided)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def info_leaves(info: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf of *info*: mappings are descended, an empty
    mapping and a list are values (``{"model": {"layers": 3}}`` gives ``model.layers``).
    What a query's ``info.<key>`` names and what ``eio compare`` diffs."""
    if not isinstance(info, Mapping):
        return
    for k, v in info.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from info_leaves(v, key + ".")
        else:
            yield key, v


def flatten_info(info: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, canonical JSON value) for every leaf of *info* (:func:`info_leaves`)."""
    for key, v in info_leaves(info, prefix):
        yield key, canonical(v)
