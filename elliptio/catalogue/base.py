"""The catalogue interface: an index of artifact metadata that can always be rebuilt.

A catalogue stores, per artifact, the parsed ``metadata.yaml`` (verbatim, as a dict) and
the fields derived from it by :func:`index_fields` for querying. The derivation is written
once, here, so every backend indexes exactly the same values.

Contract, for every implementation:

- :meth:`Catalogue.upsert` is idempotent: the same metadata twice leaves one row.
- The first claim of an id wins: metadata whose id is catalogued from another prefix
  (another ``YYYY/MM/DD/<user>/<id>`` directory) never replaces the row; it is returned as
  a :class:`Conflict` by :meth:`Catalogue.claim_many` (and :meth:`Catalogue.upsert`
  raises). The check and the write are one atomic step (a transaction in SQLite, a
  conditional upsert on ``(_id, prefix)`` in MongoDB), so two writers cannot both win.
- :meth:`Catalogue.find` answers a :class:`~elliptio.query.Query` with the semantics
  documented in :mod:`elliptio.query`, newest first, limited.
- Errors of the database driver never escape: they become
  :class:`~elliptio.errors.CatalogueError`. Nothing here retries.
- Safe to use from several threads (each call takes what it needs).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..query import Query, canonical, flatten_info


@dataclass(frozen=True)
class IndexFields:
    """What a catalogue indexes of one artifact (derived from its metadata only)."""

    id: str
    user: str
    created: str
    type: str | None
    prefix: str
    tags: tuple[str, ...]
    files: tuple[tuple[str, str, int, str, str], ...]  # (path, name, size, sha256, object)
    info: tuple[tuple[str, str], ...]  # (dotted key, canonical JSON)
    based_on: tuple[str, ...]
    text: str  # lower-cased: id, user, type, tags, file paths, info values


def index_fields(md: Mapping[str, Any]) -> IndexFields:
    info = md.get("info") or {}
    files = tuple(
        (f["path"], f["path"].rsplit("/", 1)[-1], int(f["size"]), f["sha256"], f["object"])
        for f in md.get("files") or []
    )
    tags = tuple(dict.fromkeys(md.get("tags") or []))
    info_pairs = tuple(sorted(set(flatten_info(info))))
    type_ = info.get("type")
    words = [md["id"], md["user"], str(type_ or "")]
    words += list(tags) + [f[0] for f in files]
    words += list(_info_texts(info))
    return IndexFields(
        id=md["id"],
        user=md["user"],
        created=md["created"],
        type=str(type_) if type_ is not None else None,
        prefix=md["prefix"],
        tags=tags,
        files=files,
        info=info_pairs,
        based_on=tuple(dict.fromkeys(md.get("based_on") or [])),
        text="\n".join(words).lower(),
    )


def query_tags(md: Mapping[str, Any]) -> list[str]:
    """The tags a tag query matches: the tags as saved, then the type (``info.type`` as
    text) unless it is one of them already — the type is one of the tags
    (:mod:`elliptio.query`). What pages show as an artifact's tags; the catalogues match
    the same without calling this (the type has its own column, see the compilers)."""
    tags = [str(t) for t in md.get("tags") or []]
    info = md.get("info")
    t = info.get("type") if isinstance(info, Mapping) else None
    if t is not None and str(t) not in tags:
        tags.append(str(t))
    return tags


def _info_texts(info: Any) -> Iterator[str]:
    if isinstance(info, Mapping):
        for v in info.values():
            yield from _info_texts(v)
    elif isinstance(info, list):
        for v in info:
            yield from _info_texts(v)
    elif isinstance(info, str):
        yield info
    elif info is not None:
        yield canonical(info)


#: ids per page of :func:`paged_ids`
ID_PAGE = 5000


def paged_ids(page: Callable[[str, int], list[str]], size: int = ID_PAGE) -> Iterator[str]:
    """Every id, oldest first, from ``page(after, size)``: the next *size* ids past
    *after* in id order (keyset paging; how the SQL backends answer
    :meth:`Catalogue.all_ids`)."""
    after = ""
    while True:
        ids = page(after, size)
        yield from ids
        if len(ids) < size:
            return
        after = ids[-1]


def holds_own(rows: Iterable[tuple[str, str | None]], obj: str) -> bool:
    """Whether one of *rows* — (the artifact's prefix, the path of a file of it recorded
    at store key *obj*, or None) — is the artifact's own object: ``<prefix>/<path>``.
    The SQL backends' answer of :meth:`Catalogue.holds_object` from one LEFT JOIN."""
    return any(path is not None and obj == f"{prefix}/{path}" for prefix, path in rows)


@dataclass(frozen=True)
class Page:
    """One page of results; ``next`` is the cursor for the following page or None."""

    items: list[dict[str, Any]]
    next: str | None


@dataclass(frozen=True)
class Conflict:
    """Metadata refused because its id is catalogued from another prefix."""

    id: str
    held: str  # the prefix the catalogue holds for the id (the first claim)
    refused: str  # the prefix of the refused metadata

    def __str__(self) -> str:
        return (f"artifact {self.id} is catalogued from {self.held}/; the metadata at "
                f"{self.refused}/ claims the same id and is refused (the first claim wins)")


class Catalogue(abc.ABC):
    """An index of artifact metadata. See the module docstring for the contract."""

    url: str

    @abc.abstractmethod
    def claim_many(self, items: Iterable[Mapping[str, Any]]) -> tuple[int, list[Conflict]]:
        """Insert or replace (same id, same prefix: idempotent) the artifacts described by
        *items*, in one batch; an id catalogued from another prefix is left as it is.
        Returns how many were written and the conflicts."""

    def upsert(self, metadata: Mapping[str, Any]) -> None:
        """Insert or replace the artifact described by *metadata*. Idempotent;
        ``CatalogueError`` when its id is claimed from another prefix."""
        from ..errors import CatalogueError

        _n, conflicts = self.claim_many([metadata])
        if conflicts:
            raise CatalogueError(str(conflicts[0]))

    def upsert_many(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Upsert several artifacts (backends batch this); returns how many were written
        (conflicting ones are skipped: :meth:`claim_many` names them)."""
        return self.claim_many(items)[0]

    def holds_object(self, artifact_id: str, obj: str, sha256: str, size: int
                     ) -> bool | None:
        """Whether catalogued *artifact_id* has a file of its own (its object under its
        own prefix) at store key *obj* with this sha256 and size; None when the artifact
        is not catalogued. What a dedup reference to *obj* is checked against."""
        md = self.get(artifact_id)
        if md is None:
            return None
        own = f"{md.get('prefix')}/"
        return any(f.get("object") == obj and f.get("sha256") == sha256
                   and f.get("size") == size and obj == own + str(f.get("path"))
                   for f in md.get("files") or [])

    @abc.abstractmethod
    def get(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata of *artifact_id*, or None."""

    @abc.abstractmethod
    def find(self, query: Query) -> list[dict[str, Any]]:
        """Metadata of the matching artifacts, ordered and limited as *query* says."""

    def page(self, query: Query) -> Page:
        """One page of :meth:`find` (query.limit items) and the cursor of the next."""
        items = self.find(query)
        nxt = items[-1]["id"] if query.limit and len(items) == query.limit else None
        return Page(items, nxt)

    def iter_all(self, query: Query, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every match, fetched page by page (keyset), whatever ``query.limit`` says."""
        from dataclasses import replace

        q = replace(query, limit=page_size)
        while True:
            page = self.page(q)
            yield from page.items
            if page.next is None:
                return
            q = q.next_page(page.next)

    def existing(self, ids: Iterable[str]) -> set[str]:
        """Which of *ids* are catalogued (reindex skips them; fsck compares). Backends
        answer from their id index without loading metadata."""
        wanted = tuple(ids)
        if not wanted:
            return set()
        return {md["id"] for md in self.find(Query(ids=wanted, limit=None))}

    def all_ids(self) -> Iterator[str]:
        """Every catalogued id, oldest first, fetched in pages."""
        for md in self.iter_all(Query(order="oldest", limit=None)):
            yield md["id"]

    @abc.abstractmethod
    def count(self, query: Query, at_most: int | None = None) -> int:
        """How many artifacts match (ignoring limit and cursor); with *at_most*, counting
        stops there (``min(matches, at_most)``, as fast as a page of a common condition:
        what a page showing "1,000+" needs)."""

    @abc.abstractmethod
    def find_objects(self, sha256: str, size: int, limit: int = 4) -> list[str]:
        """Distinct store keys recorded as holding content with this sha256 and size
        (dedup candidates: claims, which the saver verifies), oldest artifact first."""

    @abc.abstractmethod
    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids starting with *prefix* (for short ids typed by people)."""

    @abc.abstractmethod
    def distinct(self, field: str, prefix: str | None = None, limit: int = 1000,
                 after: str | None = None) -> list[str]:
        """Sorted distinct values of ``user`` or ``tag`` (for the mount's listings)."""

    @abc.abstractmethod
    def check(self) -> str:
        """Reach the catalogue once (a wrong URL fails here, not at the first query);
        return a one-line description, or raise ``CatalogueError``/``ConfigError``."""

    def close(self) -> None:
        """Release connections."""
