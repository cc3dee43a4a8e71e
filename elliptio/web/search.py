"""The search page as plain data: its form as it arrived (:class:`SearchForm`), the query
that form means (through :func:`~elliptio.query.fields_text`, the one way from search
fields to a query, shared with ``eio search``), and one page of results
(:func:`search`) — shared by the HTML page and ``/api/search``.

Nothing here knows about HTTP; values from metadata are passed on as data (see
:mod:`.data`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..catalogue import query_tags
from ..errors import NotFound, QueryError, UsageError
from ..ids import ID_RE
from ..lake import Lake
from ..query import Query, fields_text

#: results per page unless the URL asks otherwise, and the most it may ask for
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: files and info fields shown per row of the results table
ROW_FILES = 4
ROW_INFO = 3


class FormError(QueryError):
    """A search form value that cannot become a query; the form is shown with it."""


@dataclass
class SearchForm:
    """The search page's inputs as they arrived (echoed back into the form)."""

    q: str = ""
    user: str = ""
    days: str = ""
    date_from: str = ""
    date_to: str = ""
    files: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    type: str = ""
    info: list[str] = field(default_factory=list)
    text: str = ""
    based_on: str = ""
    transitive: bool = False
    order: str = "newest"
    limit: int = PAGE_SIZE
    after: str | None = None
    before: str | None = None
    problem: str | None = None  # what could not be read from the URL (shown with the form)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SearchForm:
        """From a multi-dict of URL parameters (``getlist`` for the repeatable ones).
        Never raises: what cannot be read is kept in :attr:`problem` and reported when
        the query is made, so the form is still shown with everything else."""

        def one(name: str) -> str:
            v = params.get(name)
            return v.strip() if isinstance(v, str) else ""

        def many(name: str) -> list[str]:
            getlist = getattr(params, "getlist", None)
            values = getlist(name) if getlist else [params.get(name)]
            return [v.strip() for v in values if isinstance(v, str) and v.strip()]

        problems: list[str] = []
        order = one("order") or "newest"
        if order not in ("newest", "oldest"):
            problems.append(f"order must be newest or oldest, got {order!r}")
            order = "newest"
        raw_limit = one("limit")
        limit = PAGE_SIZE
        if raw_limit:
            try:
                limit = int(raw_limit)
            except ValueError:
                problems.append(f"limit must be a number, got {raw_limit!r}")
            if limit == 0:  # no limit (elliptio.query): all results, in the largest pages
                limit = MAX_PAGE_SIZE
            elif not 1 <= limit <= MAX_PAGE_SIZE:
                problems.append(f"limit must be 0 (no limit) or from 1 to {MAX_PAGE_SIZE}, "
                                f"got {limit}")
                limit = PAGE_SIZE
        cursors = {}
        for name in ("after", "before"):
            v = one(name).lower() or None
            if v is not None and not ID_RE.fullmatch(v):
                problems.append(f"{name}: not a page cursor: {v!r}")
                v = None
            cursors[name] = v
        return cls(q=one("q"), user=one("user"), days=one("days"), date_from=one("from"),
                   date_to=one("to"), files=many("file"), tags=many("tag"), type=one("type"),
                   info=many("info"), text=one("text"), based_on=one("based_on"),
                   transitive=one("transitive").lower() in ("1", "on", "true", "yes"),
                   order=order, limit=limit, problem="; ".join(problems) or None, **cursors)

    def fields(self, lake: Lake | None = None) -> dict[str, Any]:
        """The form as the fields of :func:`~elliptio.query.fields_text`: ``last N days``
        or ``from`` as ``since``, each info condition as a ``(key, value)`` pair (``info.``
        before the key is optional), *based_on* as a full id when *lake* can resolve the
        prefix typed. ``FormError`` for what the form cannot mean."""
        if self.problem:
            raise FormError(self.problem)
        if self.days and self.date_from:
            raise FormError("give either 'last N days' or a 'from' date, not both")
        if self.days and not re.fullmatch(r"\d+(\.\d+)?", self.days):
            raise FormError(f"last N days: expected a number, got {self.days!r}")
        info: list[tuple[str, str]] = []
        for cond in self.info:
            key, sep, value = cond.partition("=")
            key = key.strip()
            if not sep or not key:
                raise FormError(f"info condition {cond!r} is not key=value")
            info.append((key.removeprefix("info."), value))
        target = self.based_on
        if target and lake is not None and not ID_RE.fullmatch(target.lower()):
            try:
                target = lake.resolve_id(target)
            except (NotFound, UsageError) as exc:
                raise FormError(f"based on: {exc}") from None
        return {"query": self.q, "user": self.user,
                "since": f"{self.days}d" if self.days else self.date_from,
                "until": self.date_to, "files": self.files, "tags": self.tags,
                "type": self.type, "info": info, "text": self.text, "based_on": target,
                "transitive": bool(target) and self.transitive}

    def query_text(self, lake: Lake | None = None) -> str:
        """The query box and the form fields as one query in the CLI language
        (:func:`~elliptio.query.fields_text`: a field overrides the same key typed in the
        box; globs add up)."""
        fields = self.fields(lake)
        try:
            return fields_text(**fields)
        except QueryError as exc:
            raise FormError(str(exc)) from None

    def query(self, lake: Lake | None = None) -> Query:
        """The :class:`Query` of this form (``QueryError`` with the reason if malformed)."""
        q = Query.from_fields(**self.fields(lake), limit=self.limit, order=self.order)
        # a limit typed into the box is a page size too, within the same bound; 0 (no
        # limit, parsed to None) asks for the largest page
        limit = MAX_PAGE_SIZE if q.limit is None else min(q.limit, MAX_PAGE_SIZE)
        return replace(q, limit=limit, after=None)

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """URL parameters reproducing this form (with *changes*), for links."""
        values: dict[str, Any] = {
            "q": self.q, "user": self.user, "days": self.days, "from": self.date_from,
            "to": self.date_to, "file": self.files, "tag": self.tags, "type": self.type,
            "info": self.info, "text": self.text, "based_on": self.based_on,
            "transitive": "on" if self.transitive else "",
            "order": "" if self.order == "newest" else self.order,
            "limit": "" if self.limit == PAGE_SIZE else str(self.limit),
            "after": self.after or "", "before": self.before or "",
        }
        values.update(changes)
        out: list[tuple[str, str]] = []
        for k, v in values.items():
            for item in (v if isinstance(v, list) else [v]):
                if item:
                    out.append((k, str(item)))
        return out


def short_value(value: Any, width: int = 80) -> str:
    """An info value as one short line of text (JSON for non-strings)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def telling_info(info: Mapping[str, Any], asked: Sequence[str] = (),
                 count: int = ROW_INFO) -> list[tuple[str, str]]:
    """The info fields worth a column: those the query asked about first, then the first
    scalar fields in the order they were saved (``type`` has its own column)."""
    flat: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and v:
                walk(v, key + ".")
            elif key != "type":
                flat[key] = v

    walk(info, "")
    keys = [k for k in asked if k in flat] + [k for k in flat if k not in asked]
    return [(k, short_value(flat[k])) for k in keys[:count]]


def summary(md: Mapping[str, Any], asked: Sequence[str] = ()) -> dict[str, Any]:
    """One row of the results table (and of ``/api/search``)."""
    info = md.get("info") or {}
    files = [str(f.get("path", "")) for f in md.get("files") or []]
    t = info.get("type") if isinstance(info, Mapping) else None
    return {
        "id": md["id"],
        "user": md.get("user"),
        "created": md.get("created"),
        "type": None if t is None else str(t),
        "tags": [str(x) for x in md.get("tags") or []],  # as saved
        # what a tag query matches: the tags and the type (the type is a tag)
        "query_tags": query_tags(md),
        "files": files[:ROW_FILES],
        "file_count": len(files),
        "info": telling_info(info, asked) if isinstance(info, Mapping) else [],
        "based_on": list(md.get("based_on") or []),
    }


#: the most matches a page counts: past it the page says "1,000+" (the JSON:
#: ``total_exact: false``). An exact count of a common condition reads every match (a
#: quarter of a million rows for ``tag=*dataset*`` at 1M artifacts: ~0.7 s), a count that
#: stops here costs about what a page does (SQLite at 400k artifacts: 30-46 ms for the
#: common globs; stopping at 10,000 cost 0.2-1.5 s); ``eio search --count`` counts exactly
COUNT_LIMIT = 1_000


@dataclass
class SearchResult:
    form: SearchForm
    query_text: str
    items: list[dict[str, Any]]
    total: int
    next_after: str | None
    prev_before: str | None
    error: str | None = None
    #: False when there are more than ``total`` (:data:`COUNT_LIMIT`) matches
    total_exact: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"query": self.query_text, "total": self.total,
                "total_exact": self.total_exact, "items": self.items,
                "next": self.next_after, "prev": self.prev_before}


def search(lake: Lake, form: SearchForm) -> SearchResult:
    """One page of results, newest (or oldest) first, keyset-paged in both directions.

    ``after`` pages forward from an id; ``before`` pages back (the query runs in the other
    order from that id and the page is reversed). One extra row is fetched to know whether
    another page exists.
    """
    text = form.query_text(lake)
    q = form.query(lake)
    asked = [k for k, _ in q.info]
    limit = q.limit or form.limit
    if form.before:
        back = "oldest" if q.order == "newest" else "newest"
        rows = lake.catalogue.find(replace(q, order=back, after=form.before, limit=limit + 1))
        more_before = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        prev_before = rows[0]["id"] if rows and more_before else None
        next_after = rows[-1]["id"] if rows else None
    else:
        rows = lake.catalogue.find(replace(q, after=form.after, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        next_after = rows[-1]["id"] if rows and more else None
        prev_before = rows[0]["id"] if rows and form.after else None
    total = lake.catalogue.count(q, at_most=COUNT_LIMIT + 1)
    return SearchResult(form, text, [summary(md, asked) for md in rows],
                        min(total, COUNT_LIMIT), next_after, prev_before,
                        total_exact=total <= COUNT_LIMIT)
