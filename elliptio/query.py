"""The one query model, its text form, and its compilation to SQL.

A :class:`Query` means the same thing on every catalogue backend; the SQL compiler lives
here (not in the SQLite code) beside the MongoDB compiler, so the two can be read side by
side. Semantics, fixed for every backend:

- Conditions combine with AND. ``files`` and ``tags`` hold several globs: each must match
  at least one file / tag of the artifact.
- Globs are shell-like and case-sensitive: ``*`` any run of characters, ``?`` one
  character, ``[abc]``/``[a-z]``/``[^abc]`` classes (SQLite ``GLOB`` semantics); anchored
  at both ends. A file glob without ``/`` matches file *base names* (``*.txt`` finds
  ``data/train.txt``); with ``/`` it matches the whole relative path, and ``*`` may cross
  ``/``. A value without glob characters is an exact match.
- ``since`` is inclusive, ``until`` exclusive; a bare date as ``until`` means the end of
  that day. Times are UTC unless an offset is given. Relative times: ``30s 15m 3h 10d 2w``.
  Time ranges compare artifact ids, whose first 48 bits are the creation time in ms.
- ``info`` conditions are equalities on (possibly nested, dotted) keys; values are compared
  as canonical JSON, so ``10`` (int) and ``"10"`` (string) differ. In the text form, values
  are read as YAML scalars (``epochs=10`` is an int, ``epochs="10"`` a string).
- ``based_on=X`` finds artifacts whose based_on holds X (children); with ``transitive``
  every descendant up to ``depth`` hops. ``ancestor_of=X`` walks the other way.
- ``text`` is a case-insensitive substring of id, user, type, tags, file paths and info
  values.
- Results are ordered newest first (``order="oldest"`` reverses), by id; ``after`` is a
  keyset cursor (the last id of the previous page), so paging is stable under inserts.
- ``limit`` caps how many artifacts a query returns: a positive integer, or ``0`` (and
  ``None`` in Python) for no limit; negative numbers are an error. The same in Python
  (default 100), ``eio search -n`` (default 50), the mount's ``search/limit=…/`` and the
  web page, which always shows its results in pages: there ``limit`` is the page size,
  and 0 asks for the largest page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml

from .errors import QueryError
from .ids import _ALPHABET, ID_RE

GLOB_CHARS = re.compile(r"[*?\[]")
DEFAULT_DEPTH = 32
MAX_DEPTH = 1000


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
_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
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
    m = _REL.match(text)
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


def flatten_info(info: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, canonical JSON value) for every leaf of *info*; dicts are descended."""
    for k, v in info.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from flatten_info(v, key + ".")
        else:
            yield key, canonical(v)


# -- the model --------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """What to find. All fields optional; see the module docstring for the semantics."""

    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    files: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    type: str | None = None
    info: tuple[tuple[str, str], ...] = ()  # (dotted key, canonical JSON value)
    based_on: str | None = None
    ancestor_of: str | None = None
    transitive: bool = False
    depth: int = DEFAULT_DEPTH
    text: str | None = None
    ids: tuple[str, ...] = ()
    limit: int | None = 100
    order: str = "newest"
    after: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # one meaning of limit everywhere (Python, the CLI, the web, the mount): 0 is no
        # limit, like None
        if self.limit == 0:
            object.__setattr__(self, "limit", None)

    @classmethod
    def build(
        cls,
        *,
        user: str | None = None,
        since: Any = None,
        until: Any = None,
        files: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        type: str | None = None,
        info: Mapping[str, Any] | None = None,
        based_on: str | None = None,
        ancestor_of: str | None = None,
        transitive: bool = False,
        depth: int | None = None,
        text: str | None = None,
        ids: Iterable[str] | None = None,
        limit: int | None = 100,
        order: str = "newest",
        after: str | None = None,
    ) -> Query:
        """Validate and normalise keyword arguments (the form ``eio.search`` takes)."""

        def globs(v: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
            if v is None:
                return ()
            items = [v] if isinstance(v, str) else list(v)
            return tuple(check_glob(p, what) for p in items)

        def an_id(v: Any, what: str) -> str | None:
            if v is None:
                return None
            v = getattr(v, "id", v)
            if not isinstance(v, str) or not ID_RE.match(v.strip().lower()):
                raise QueryError(f"{what}: malformed artifact id {v!r}")
            return v.strip().lower()

        if user is not None:
            check_glob(user, "user")
        if type is not None:
            check_glob(type, "type")
        info_items: list[tuple[str, str]] = []
        if info is not None:
            if not isinstance(info, Mapping):
                raise QueryError("info: expected a mapping of key to value")
            for k in info:
                if not isinstance(k, str) or not k:
                    raise QueryError(f"info: keys must be non-empty strings, got {k!r}")
            info_items = sorted(flatten_info(info))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise QueryError(f"limit must be 0 (no limit) or a positive integer, "
                             f"got {limit!r}")
        if order not in ("newest", "oldest"):
            raise QueryError(f"order must be 'newest' or 'oldest', got {order!r}")
        d = DEFAULT_DEPTH if depth is None else depth
        if not isinstance(d, int) or not 1 <= d <= MAX_DEPTH:
            raise QueryError(f"depth must be an integer from 1 to {MAX_DEPTH}, got {depth!r}")
        if after is not None and not ID_RE.match(after):
            raise QueryError(f"after: malformed cursor {after!r}")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise QueryError("text: empty search text")
        q = cls(
            user=user,
            since=parse_time(since, "since") if since is not None else None,
            until=parse_time(until, "until", end_of_day=True) if until is not None else None,
            files=globs(files, "file"),
            tags=globs(tags, "tag"),
            type=type,
            info=tuple(info_items),
            based_on=an_id(based_on, "based_on"),
            ancestor_of=an_id(ancestor_of, "ancestor_of"),
            transitive=bool(transitive),
            depth=d,
            text=text.strip().lower() if text else None,
            ids=tuple(an_id(i, "id") or "" for i in (ids or ())),
            limit=limit,
            order=order,
            after=after,
        )
        return q

    @classmethod
    def parse(cls, text: str, **defaults: Any) -> Query:
        """Parse the text form shared by the CLI, the mount and the web page.

        ``user=andy,since=10d,file=*.txt,tag=*dataset*,info.stratification=new-cool-method``
        Items are ``key=value`` separated by commas; a value may be double-quoted to hold
        commas. ``file``/``tag`` may repeat. Keys: user, since, until, file(s), tag(s),
        type, info.<key>, based_on (based-on), ancestor_of, transitive, depth, text,
        limit, order, after.
        """
        kwargs: dict[str, Any] = dict(defaults)
        files: list[str] = []
        tags: list[str] = []
        info: dict[str, Any] = {}
        for item in _split_items(text):
            if "=" not in item:
                raise QueryError(f"query item {item!r} is not key=value")
            key, _, raw = item.partition("=")
            key = key.strip().lower().replace("-", "_")
            quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
            value = raw[1:-1] if quoted else raw.strip()
            if key in ("file", "files"):
                files.append(value)
            elif key in ("tag", "tags"):
                tags.append(value)
            elif key.startswith("info."):
                ikey = key[5:]
                if not ikey:
                    raise QueryError("info. needs a key name, like info.stratification=x")
                info[ikey] = value if quoted else _yaml_scalar(value)
            elif key in ("user", "since", "until", "type", "based_on", "ancestor_of", "text",
                         "order", "after"):
                kwargs[key] = value
            elif key == "transitive":
                kwargs[key] = _bool(value)
            elif key in ("limit", "depth"):
                try:
                    kwargs[key] = int(value)
                except ValueError:
                    raise QueryError(f"{key} must be an integer, got {value!r}") from None
            else:
                raise QueryError(
                    f"unknown query key {key!r} (known: user, since, until, file, tag, type, "
                    "info.<key>, based_on, ancestor_of, transitive, depth, text, limit, order)"
                )
        if files:
            kwargs["files"] = files
        if tags:
            kwargs["tags"] = tags
        if info:
            kwargs["info"] = {k: v for k, v in info.items()}
        info_pairs = kwargs.pop("info", None)
        q = cls.build(**kwargs)
        if info_pairs:
            # dotted keys in the text form are paths already: compare leaf by leaf
            q = replace(q, info=tuple(sorted((k, canonical(v)) for k, v in info_pairs.items())))
        return q

    def to_text(self) -> str:
        """The text form of this query (round-trips through :meth:`parse`).

        :class:`QueryError` for a value the text form cannot hold (see :func:`text_item`)."""
        parts: list[str] = []

        def add(k: str, v: str) -> None:
            parts.append(text_item(k, v))

        if self.user:
            add("user", self.user)
        if self.since:
            add("since", self.since.isoformat().replace("+00:00", "Z"))
        if self.until:
            add("until", self.until.isoformat().replace("+00:00", "Z"))
        for f in self.files:
            add("file", f)
        for t in self.tags:
            add("tag", t)
        if self.type:
            add("type", self.type)
        for k, v in self.info:
            val = json.loads(v)
            if isinstance(val, str):  # quoted: a string, even "10" or "true"
                parts.append(text_item(f"info.{k}", val, quote=True))
            else:
                parts.append(f"info.{k}={v}")
        if self.based_on:
            add("based_on", self.based_on)
        if self.ancestor_of:
            add("ancestor_of", self.ancestor_of)
        if self.transitive:
            add("transitive", "true")
            if self.depth != DEFAULT_DEPTH:
                add("depth", str(self.depth))
        if self.text:
            add("text", self.text)
        return ",".join(parts)

    @classmethod
    def from_fields(cls, query: str = "", *, limit: int | None = 100, order: str = "newest",
                    **fields: Any) -> Query:
        """The query of a search form: the text *query* and the *fields* as
        :func:`fields_text` joins them, parsed with *limit* and *order* as defaults (an item
        of the text wins). What ``eio search`` and the web page's search form build."""
        return cls.parse(fields_text(query, **fields), limit=limit, order=order)

    def next_page(self, last_id: str) -> Query:
        return replace(self, after=last_id)


def fields_text(query: str = "", *, user: str | None = None, since: str | None = None,
                until: str | None = None, files: Iterable[str] = (),
                tags: Iterable[str] = (), type: str | None = None,
                info: Iterable[tuple[str, str]] = (), text: str | None = None,
                based_on: str | None = None, transitive: bool = False) -> str:
    """Fields of a search form as one query in the text form: *query* (text the user typed
    in that form) first, then one item per given field, in this order. A later scalar item
    wins over one in *query*, so a field overrides the same key typed there; ``file`` and
    ``tag`` globs add up. Values are written by :func:`text_item`, except ``info``: its
    ``(key, value)`` pairs carry the value as typed in the text form (``"10"`` is the
    string, ``10`` the number), wrapped in double quotes only when it holds a ``,`` and is
    not wrapped already. :class:`QueryError` for a value the text form cannot hold."""
    items = [query] if query else []
    for key, value in (("user", user), ("since", since), ("until", until)):
        if value:
            items.append(text_item(key, value))
    items += [text_item("file", f) for f in files]
    items += [text_item("tag", t) for t in tags]
    if type:
        items.append(text_item("type", type))
    for key, value in info:
        if "," in value and not (value.startswith('"') and value.endswith('"')):
            value = f'"{value}"'
        items.append(f"info.{key}={value.strip()}")
    for key, value in (("text", text), ("based_on", based_on)):
        if value:
            items.append(text_item(key, value))
    if transitive:
        items.append("transitive=true")
    return ",".join(items)


def text_item(key: str, value: str, *, quote: bool = False) -> str:
    """One ``key=value`` item of the text form, the value double-quoted where it has to be
    (or always, with *quote*): when it holds a comma, starts or ends with a space, or is
    itself wrapped in double quotes. The text form has no escapes, so a value with a double
    quote and a comma, or with an odd number of double quotes, cannot be written:
    :class:`QueryError`. :meth:`Query.to_text` and :func:`fields_text` write with it."""
    if '"' in value and ("," in value or value.count('"') % 2):
        raise QueryError(f"{key}: a value cannot hold a '\"' together with a ',' or an odd "
                         f"number of '\"', got {value!r}")
    if quote or "," in value or value != value.strip() or (
            len(value) >= 2 and value[0] == value[-1] == '"'):
        return f'{key}="{value}"'
    return f"{key}={value}"


def _split_items(text: str) -> list[str]:
    if not isinstance(text, str):
        raise QueryError("query must be a string")
    items: list[str] = []
    buf: list[str] = []
    in_q = False
    for ch in text:
        if ch == '"':
            in_q = not in_q
        if ch == "," and not in_q:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if in_q:
        raise QueryError(f"unclosed quote in query {text!r}")
    items.append("".join(buf))
    return [i.strip() for i in items if i.strip()]


def _yaml_scalar(value: str) -> Any:
    try:
        v = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        return value
    if isinstance(v, (dict, list)) or isinstance(v, (date, datetime)):
        return value
    return v


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on", ""):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise QueryError(f"expected true or false, got {value!r}")


# -- SQL --------------------------------------------------------------------------------
def compile_sql(q: Query, *, count: bool = False) -> tuple[str, list[Any]]:
    """``(statement, params)`` selecting ``a.id, a.metadata`` from the SQLite schema of
    :mod:`elliptio.catalogue.sqlite`, ordered and limited as *q* asks. With *count*, the
    statement selects ``count(*)`` of every match instead (no order, limit or cursor)."""
    if count:
        q = replace(q, limit=None, after=None)
    ctes: list[str] = []
    where: list[str] = []
    params: list[Any] = []
    cte_params: list[Any] = []

    def match(column: str, pattern: str) -> str:
        params.append(pattern)
        return f"{column} GLOB ?" if is_glob(pattern) else f"{column} = ?"

    if q.ids:
        where.append(f"a.id IN ({','.join('?' * len(q.ids))})")
        params.extend(q.ids)
    if q.user is not None:
        where.append(match("a.user", q.user))
    if q.since is not None:
        where.append("a.id >= ?")
        params.append(id_floor(q.since))
    if q.until is not None:
        where.append("a.id < ?")
        params.append(id_floor(q.until))
    if q.type is not None:
        where.append(match("a.type", q.type))
    for pattern in q.files:
        if not is_glob(pattern):
            # an exact name drives the query from the files_name index (a correlated
            # EXISTS would scan every artifact when the name is rare: 600 ms on 1M)
            where.append("a.id IN (SELECT f.artifact FROM files f WHERE f.name = ?"
                         + (" AND f.path = ?)" if "/" in pattern else ")"))
            params.append(pattern.rsplit("/", 1)[-1])
            if "/" in pattern:
                params.append(pattern)
            continue
        column = "f.path" if "/" in pattern else "f.name"
        cond = match(column, pattern)
        where.append(f"EXISTS (SELECT 1 FROM files f WHERE f.artifact = a.id AND {cond})")
    for pattern in q.tags:
        if is_glob(pattern):
            where.append("EXISTS (SELECT 1 FROM tags t WHERE t.artifact = a.id AND t.tag GLOB ?)")
        else:
            where.append("a.id IN (SELECT t.artifact FROM tags t WHERE t.tag = ?)")
        params.append(pattern)
    for key, value in q.info:
        where.append("a.id IN (SELECT i.artifact FROM info i WHERE i.key = ? AND i.value = ?)")
        params.extend([key, value])
    if q.based_on is not None:
        if q.transitive:
            ctes.append(
                "descendants(id, depth) AS ("
                " SELECT child, 1 FROM based_on WHERE parent = ?"
                " UNION SELECT b.child, d.depth + 1 FROM based_on b"
                " JOIN descendants d ON b.parent = d.id WHERE d.depth < ?)"
            )
            cte_params.extend([q.based_on, q.depth])
            where.append("a.id IN (SELECT id FROM descendants)")
        else:
            where.append("a.id IN (SELECT child FROM based_on WHERE parent = ?)")
            params.append(q.based_on)
    if q.ancestor_of is not None:
        if q.transitive:
            ctes.append(
                "ancestors(id, depth) AS ("
                " SELECT parent, 1 FROM based_on WHERE child = ?"
                " UNION SELECT b.parent, d.depth + 1 FROM based_on b"
                " JOIN ancestors d ON b.child = d.id WHERE d.depth < ?)"
            )
            cte_params.extend([q.ancestor_of, q.depth])
            where.append("a.id IN (SELECT id FROM ancestors)")
        else:
            where.append("a.id IN (SELECT parent FROM based_on WHERE child = ?)")
            params.append(q.ancestor_of)
    if q.text is not None:
        where.append("instr(a.text, ?) > 0")
        params.append(q.text)
    if q.after is not None:
        where.append("a.id < ?" if q.order == "newest" else "a.id > ?")
        params.append(q.after)
    sql = ""
    if ctes:
        sql = "WITH RECURSIVE " + ", ".join(ctes) + " "
    sql += "SELECT " + ("count(*)" if count else "a.id, a.metadata") + " FROM artifacts a"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if count:
        return sql, cte_params + params
    sql += " ORDER BY a.id " + ("DESC" if q.order == "newest" else "ASC")
    if q.limit is not None:
        sql += " LIMIT ?"
        params.append(q.limit)
    return sql, cte_params + params


# -- MongoDB ----------------------------------------------------------------------------
#: ``neighbours(direction, ids)``: the ids one hop away from *ids* — ``"children"``: the
#: artifacts whose based_on holds one of *ids*; ``"parents"``: the union of the based_on
#: lists of the artifacts *ids* (a parent need not be catalogued). Backends supply it.
Neighbours = Callable[[str, list[str]], Iterable[str]]


def walk_lineage(start: str, direction: str, depth: int, neighbours: Neighbours) -> set[str]:
    """Every id reachable from *start* in 1..*depth* hops (breadth first, one query per
    hop). Exactly the set the recursive CTEs of :func:`compile_sql` produce: a node reached
    again (a cycle, impossible with time-ordered ids unless metadata was edited by hand)
    is not expanded twice, and *start* itself is part of the result only if a cycle leads
    back to it."""
    found: set[str] = set()
    expanded = {start}
    frontier = [start]
    for _ in range(depth):
        hop = set(neighbours(direction, frontier))
        found |= hop
        frontier = sorted(hop - expanded)
        if not frontier:
            break
        expanded.update(frontier)
    return found


def mongo_glob(pattern: str) -> Any:
    """Match condition of one glob on a string (or array-of-strings) field."""
    if not is_glob(pattern):
        return pattern
    return {"$regex": glob_to_regex(pattern)}


def compile_mongo(q: Query, neighbours: Neighbours | None = None
                  ) -> tuple[dict[str, Any], list[tuple[str, int]], int | None]:
    """``(filter, sort, limit)`` over the document shape of
    :mod:`elliptio.catalogue.mongo`, with exactly :func:`compile_sql`'s semantics.

    Transitive lineage and ``ancestor_of`` need the data (the parents of an artifact are
    in its document): pass *neighbours* (see :data:`Neighbours`); the walk happens here,
    breadth first with ``$in``, and its result becomes an ``_id $in`` condition. ``limit``
    is returned as given (never 0: :class:`Query` turns 0 into ``None``, no limit).
    """
    conds: list[dict[str, Any]] = []
    if q.ids:
        conds.append({"_id": {"$in": list(q.ids)}})
    if q.user is not None:
        conds.append({"user": mongo_glob(q.user)})
    if q.since is not None:
        conds.append({"_id": {"$gte": id_floor(q.since)}})
    if q.until is not None:
        conds.append({"_id": {"$lt": id_floor(q.until)}})
    if q.type is not None:
        conds.append({"type": mongo_glob(q.type)})
    for pattern in q.files:
        conds.append({("file_paths" if "/" in pattern else "file_names"): mongo_glob(pattern)})
    for pattern in q.tags:
        conds.append({"tags": mongo_glob(pattern)})
    for key, value in q.info:
        conds.append({"info_kv": {"$elemMatch": {"k": key, "v": value}}})

    def walk(start: str, direction: str, depth: int) -> list[str]:
        if neighbours is None:
            raise ValueError("compile_mongo: this query walks lineage; pass neighbours=")
        return sorted(walk_lineage(start, direction, depth, neighbours))

    if q.based_on is not None:
        if q.transitive:
            conds.append({"_id": {"$in": walk(q.based_on, "children", q.depth)}})
        else:
            conds.append({"based_on": q.based_on})
    if q.ancestor_of is not None:
        conds.append({"_id": {"$in": walk(q.ancestor_of, "parents",
                                          q.depth if q.transitive else 1)}})
    if q.text is not None:
        conds.append({"text": {"$regex": re.escape(q.text)}})
    if q.after is not None:
        conds.append({"_id": {"$lt" if q.order == "newest" else "$gt": q.after}})
    if not conds:
        flt: dict[str, Any] = {}
    elif len(conds) == 1:
        flt = conds[0]
    else:
        flt = {"$and": conds}
    sort = [("_id", -1 if q.order == "newest" else 1)]
    return flt, sort, q.limit
