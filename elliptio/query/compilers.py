"""A :class:`~elliptio.query.Query` compiled for each catalogue backend: to SQL over the
SQLite schema, to a filter over the MongoDB document shape. Side by side, so their one
semantics (:mod:`elliptio.query`) can be checked by reading."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from .model import Query
from .values import glob_to_regex, id_floor, is_glob


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
    # the type is one of the tags (elliptio.query): the tags table holds the tags as
    # saved, so each tag condition also looks at the type column (catalogues written by
    # any version answer alike, nothing to migrate)
    for pattern in q.tags:
        if is_glob(pattern):
            where.append("(a.type GLOB ? OR EXISTS (SELECT 1 FROM tags t"
                         " WHERE t.artifact = a.id AND t.tag GLOB ?))")
        else:
            where.append("a.id IN (SELECT t.artifact FROM tags t WHERE t.tag = ?"
                         " UNION ALL SELECT x.id FROM artifacts x WHERE x.type = ?)")
        params.extend([pattern, pattern])
    for key, value in q.info:
        where.append("a.id IN (SELECT i.artifact FROM info i WHERE i.key = ? AND i.value = ?)")
        params.extend([key, value])
    # lineage, both ways: the same walk over based_on with parent and child swapped
    # (table and column names are these constants, never the caller's text)
    for start, walk, known, wanted in ((q.based_on, "descendants", "parent", "child"),
                                       (q.ancestor_of, "ancestors", "child", "parent")):
        if start is None:
            continue
        if q.transitive:
            ctes.append(
                f"{walk}(id, depth) AS ("
                f" SELECT {wanted}, 1 FROM based_on WHERE {known} = ?"
                f" UNION SELECT b.{wanted}, d.depth + 1 FROM based_on b"
                f" JOIN {walk} d ON b.{known} = d.id WHERE d.depth < ?)"
            )
            cte_params.extend([start, q.depth])
            where.append(f"a.id IN (SELECT id FROM {walk})")
        else:
            where.append(f"a.id IN (SELECT {wanted} FROM based_on WHERE {known} = ?)")
            params.append(start)
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
