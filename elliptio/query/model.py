"""The :class:`Query` model: validation of its fields, its text form both ways."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..errors import QueryError
from ..ids import ID_RE
from .text import fields_text, read_bool, split_items, text_item, yaml_scalar
from .values import canonical, check_glob, flatten_info, parse_time

DEFAULT_DEPTH = 32
MAX_DEPTH = 1000


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
            if not isinstance(v, str) or not ID_RE.fullmatch(v.strip().lower()):
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
        if after is not None and not ID_RE.fullmatch(after):
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
        for item in split_items(text):
            if "=" not in item:
                raise QueryError(f"query item {item!r} is not key=value")
            written, _, raw = item.partition("=")
            written = written.strip()
            # the query's own keys in any case, with - for _ (based-on); an info key is
            # the user's, compared exactly as written (learningRate, batch-size)
            key = written.lower().replace("-", "_")
            quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
            value = raw[1:-1] if quoted else raw.strip()
            if key in ("file", "files"):
                files.append(value)
            elif key in ("tag", "tags"):
                tags.append(value)
            elif key.startswith("info."):
                ikey = written[5:]
                if not ikey:
                    raise QueryError("info. needs a key name, like info.stratification=x")
                info[ikey] = value if quoted else yaml_scalar(value)
            elif key in ("user", "since", "until", "type", "based_on", "ancestor_of", "text",
                         "order", "after"):
                kwargs[key] = value
            elif key == "transitive":
                kwargs[key] = read_bool(value)
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
