"""A :class:`~elliptio.query.Query` compiled for MongoDB: a filter over the document shape
of :mod:`elliptio.catalogue.mongo`, and the breadth-first lineage walk it needs. The SQL
compiler, with one dialect per SQL backend, is :mod:`.sql`; both mean exactly
:mod:`elliptio.query`'s semantics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .model import Query
from .sql import compile_sql  # noqa: F401  (re-exported: elliptio.query.compile_sql)
from .values import glob_to_regex, id_floor, is_glob


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
    for pattern in q.tags:  # the type is one of the tags, as in compile_sql
        conds.append({"$or": [{"tags": mongo_glob(pattern)}, {"type": mongo_glob(pattern)}]})
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
