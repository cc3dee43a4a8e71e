"""A :class:`~elliptio.query.Query` compiled to SQL: one compiler, one dialect per SQL
catalogue.

:class:`SQLCompiler` writes the statement every SQL backend shares — the ``artifacts``,
``files``, ``tags``, ``info`` and ``based_on`` tables of :mod:`elliptio.catalogue.sqlite`,
keyset order by id, lineage by recursive CTE — and asks its dialect only for what differs
between databases: the parameter placeholder and the conditions an index of that database
answers (a glob, free text, an ``info`` equality). :class:`SQLiteCompiler` is SQLite's
dialect; PostgreSQL's subclasses the same base. The semantics are :mod:`elliptio.query`'s,
checked on every backend by the catalogue contract suite.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .model import Query
from .trigrams import NAME, PATH, TAG, glob_trigrams, text_trigrams
from .values import id_floor, is_glob


class SQLCompiler:
    """Compiles one query. Subclasses (dialects) override the ``*_cond`` hooks and
    :attr:`p`; each hook appends its parameters to :attr:`params` in the order its
    placeholders appear and returns the condition."""

    #: the driver's positional placeholder
    p = "?"

    def __init__(self, q: Query, *, count: bool = False, at_most: int | None = None
                 ) -> None:
        self.q = replace(q, limit=None, after=None) if count else q
        self.count = count
        #: with *count*: stop counting there (the statement counts at most that many)
        self.at_most = at_most if count else None
        self.params: list[Any] = []

    # -- dialect hooks ---------------------------------------------------------------------
    def glob_cond(self, column: str, pattern: str) -> str:
        """*column* matches *pattern*: a glob (:mod:`elliptio.query`), or equality when it
        has no glob characters."""
        self.params.append(pattern)
        return f"{column} GLOB {self.p}" if is_glob(pattern) else f"{column} = {self.p}"

    def file_glob_cond(self, pattern: str) -> str:
        """Some file of ``a`` matches the glob *pattern* (its name, or with ``/`` its
        path)."""
        column = "f.path" if "/" in pattern else "f.name"
        cond = self.glob_cond(column, pattern)
        return f"EXISTS (SELECT 1 FROM files f WHERE f.artifact = a.id AND {cond})"

    def tag_glob_cond(self, pattern: str) -> str:
        """Some tag of ``a`` — the tags as saved, or its type — matches glob *pattern*."""
        own = self.glob_cond("a.type", pattern)
        saved = self.glob_cond("t.tag", pattern)
        return f"({own} OR EXISTS (SELECT 1 FROM tags t WHERE t.artifact = a.id AND {saved}))"

    def tag_equal_cond(self, tag: str) -> str:
        """Some tag of ``a`` — the tags as saved, or its type — is *tag* (a value without
        glob characters)."""
        self.params += [tag, tag]
        return (f"a.id IN (SELECT t.artifact FROM tags t WHERE t.tag = {self.p}"
                f" UNION ALL SELECT x.id FROM artifacts x WHERE x.type = {self.p})")

    def text_cond(self, text: str) -> str:
        """``a.text`` (lower-cased words) contains *text* (lower-cased by the model)."""
        self.params.append(text)
        return f"instr(a.text, {self.p}) > 0"

    def info_cond(self, key: str, value: str) -> str:
        """``a`` has the info leaf *key* with canonical JSON *value*."""
        self.params += [key, value]
        return (f"a.id IN (SELECT i.artifact FROM info i WHERE i.key = {self.p}"
                f" AND i.value = {self.p})")

    # -- the statement ---------------------------------------------------------------------
    def compile(self) -> tuple[str, list[Any]]:
        """``(statement, params)`` selecting ``a.id, a.metadata`` ordered and limited as
        the query asks; with ``count``, ``count(*)`` of every match (no order, limit or
        cursor), or with ``at_most`` of the first that many the database meets (it stops
        there: a common condition costs what a page of it costs)."""
        q, p = self.q, self.p
        ctes: list[str] = []
        cte_params: list[Any] = []
        where: list[str] = []
        params = self.params

        if q.ids:
            where.append(f"a.id IN ({','.join([p] * len(q.ids))})")
            params.extend(q.ids)
        if q.user is not None:
            where.append(self.glob_cond("a.user", q.user))
        if q.since is not None:
            where.append(f"a.id >= {p}")
            params.append(id_floor(q.since))
        if q.until is not None:
            where.append(f"a.id < {p}")
            params.append(id_floor(q.until))
        if q.type is not None:
            where.append(self.glob_cond("a.type", q.type))
        for pattern in q.files:
            if is_glob(pattern):
                where.append(self.file_glob_cond(pattern))
                continue
            # an exact name drives the query from the files_name index (a correlated
            # EXISTS would scan every artifact when the name is rare: 600 ms on 1M)
            where.append(f"a.id IN (SELECT f.artifact FROM files f WHERE f.name = {p}"
                         + (f" AND f.path = {p})" if "/" in pattern else ")"))
            params.append(pattern.rsplit("/", 1)[-1])
            if "/" in pattern:
                params.append(pattern)
        # the type is one of the tags (elliptio.query): the tags table holds the tags as
        # saved, so each tag condition also looks at the type column (catalogues written
        # by any version answer alike, nothing to migrate)
        for pattern in q.tags:
            if is_glob(pattern):
                where.append(self.tag_glob_cond(pattern))
            else:
                where.append(self.tag_equal_cond(pattern))
        for key, value in q.info:
            where.append(self.info_cond(key, value))
        # lineage, both ways: the same walk over based_on with parent and child swapped
        # (table and column names are these constants, never the caller's text)
        for start, walk, known, wanted in ((q.based_on, "descendants", "parent", "child"),
                                           (q.ancestor_of, "ancestors", "child", "parent")):
            if start is None:
                continue
            if q.transitive:
                ctes.append(
                    f"{walk}(id, depth) AS ("
                    f" SELECT {wanted}, 1 FROM based_on WHERE {known} = {p}"
                    f" UNION SELECT b.{wanted}, d.depth + 1 FROM based_on b"
                    f" JOIN {walk} d ON b.{known} = d.id WHERE d.depth < {p})"
                )
                cte_params.extend([start, q.depth])
                where.append(f"a.id IN (SELECT id FROM {walk})")
            else:
                where.append(f"a.id IN (SELECT {wanted} FROM based_on WHERE {known} = {p})")
                params.append(start)
        if q.text is not None:
            where.append(self.text_cond(q.text))
        if q.after is not None:
            where.append(f"a.id < {p}" if q.order == "newest" else f"a.id > {p}")
            params.append(q.after)
        sql = ""
        if ctes:
            sql = "WITH RECURSIVE " + ", ".join(ctes) + " "
        matches = " FROM artifacts a" + (" WHERE " + " AND ".join(where) if where else "")
        if self.count and self.at_most is not None:
            params.append(self.at_most)
            return (f"{sql}SELECT count(*) FROM (SELECT 1{matches} LIMIT {p}) c",
                    cte_params + params)
        if self.count:
            return f"{sql}SELECT count(*){matches}", cte_params + params
        sql += "SELECT a.id, a.metadata" + matches
        sql += " ORDER BY a.id " + ("DESC" if q.order == "newest" else "ASC")
        if q.limit is not None:
            sql += f" LIMIT {p}"
            params.append(q.limit)
        return sql, cte_params + params


#: stands in :attr:`SQLiteCompiler.params` for the candidate buckets, set per chunk
CANDIDATES = object()


class SQLiteCompiler(SQLCompiler):
    """SQLite's dialect (:mod:`elliptio.catalogue.sqlite`): ``GLOB``, ``instr``.

    With *search*, the globs on files and tags and the free text are narrowed by the
    catalogue's trigram index (:mod:`elliptio.catalogue.sqlite_search`): the statement gets
    one more condition, ``a.id`` among the ids of a list of buckets whose parameter is
    :data:`CANDIDATES`, and :attr:`trigrams` says what the index must hold for them. The
    catalogue fills that parameter a chunk of the index at a time. The exact conditions
    stay as the base class writes them, so the index only ever narrows. Without *search*
    (and when no condition has three literal characters in a row) the statement is the
    base class's, which any version-1 file answers too."""

    def __init__(self, q: Query, *, count: bool = False, at_most: int | None = None,
                 search: bool = False) -> None:
        super().__init__(q, count=count, at_most=at_most)
        self.search = search
        #: every match's search document holds all of these
        self.trigrams: set[str] = set()
        self._infos = 0

    def _narrowed(self, cond: str, trigrams: set[str]) -> str:
        if not self.search or not trigrams:
            return cond
        first = not self.trigrams
        self.trigrams |= trigrams
        if not first:  # one candidate list narrows for every condition
            return cond
        self.params.append(CANDIDATES)
        return (f"({cond} AND a.id IN (SELECT x.id FROM json_each({self.p}) j"
                " JOIN artifacts x ON x.id >= j.value AND x.id < j.value || '~'))")

    def file_glob_cond(self, pattern: str) -> str:
        cond = super().file_glob_cond(pattern)
        return self._narrowed(cond, glob_trigrams(pattern, PATH if "/" in pattern else NAME))

    def tag_glob_cond(self, pattern: str) -> str:
        return self._narrowed(super().tag_glob_cond(pattern), glob_trigrams(pattern, TAG))

    def text_cond(self, text: str) -> str:
        return self._narrowed(super().text_cond(text), text_trigrams(text))

    def info_cond(self, key: str, value: str) -> str:
        # the first info equality is a list of ids SQLite builds once and walks in id
        # order; a second one as a list too would be built whole before the first row
        # (91k ids for model.layers=3 on 1M: 37 ms), as EXISTS it is one primary-key
        # lookup per row of the first, and the walk stops at the limit
        self._infos += 1
        if self._infos == 1:
            return super().info_cond(key, value)
        self.params += [key, value]
        return (f"EXISTS (SELECT 1 FROM info i WHERE i.artifact = a.id"
                f" AND i.key = {self.p} AND i.value = {self.p})")


def compile_sql(q: Query, *, count: bool = False, at_most: int | None = None
                ) -> tuple[str, list[Any]]:
    """``(statement, params)`` for the SQLite catalogue (:class:`SQLiteCompiler`)."""
    return SQLiteCompiler(q, count=count, at_most=at_most).compile()
