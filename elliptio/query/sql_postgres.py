"""PostgreSQL's dialect of the one SQL compiler (:mod:`elliptio.query.sql`), for
:mod:`elliptio.catalogue.postgres`.

The statement is :class:`~elliptio.query.sql.SQLCompiler`'s — keyset order by id, the
time range on ids, lineage by recursive CTE; only the conditions an index of PostgreSQL
answers are written here:

- a glob without ``[`` classes becomes ``LIKE`` (``*`` → ``%``, ``?`` → ``_``, the
  characters ``% _ \\`` escaped), which a ``pg_trgm`` GIN index answers for
  ``*dataset*`` and ``*.nomatch`` alike and the ``COLLATE "C"`` b-tree for a prefix
  (``andy*``); a glob with classes becomes an anchored regex ``~``
  (:func:`~elliptio.query.values.glob_to_regex`, whose output PostgreSQL's regex engine
  reads with the same meaning: case-sensitive, anchored, ``*`` crosses ``/``), which
  ``pg_trgm`` answers too. ``LIKE`` and ``~`` compare characters, not bytes, in a UTF-8
  database, so ``?`` is one character as in SQLite's ``GLOB``;
- a file or tag condition is a semi-join on one table (``a.id IN (SELECT ...)``), which
  the planner drives from that table's index when the pattern is rare and checks while
  walking the ids when it is common (a page of ``*dataset*`` then stops after its
  limit). The PostgreSQL catalogue keeps the type as a row of ``tags`` (the type is one
  of the tags), so a tag condition is one table, not a union with ``artifacts.type``;
- free text is ``LIKE '%needle%'`` on the lower-cased ``text`` column (the needle
  escaped): a substring, never a pattern, answered by ``pg_trgm``;
- ``info.<key> = value`` is ``info @> '{"key": ["canonical JSON"]}'`` on the ``jsonb``
  column, answered by its ``jsonb_path_ops`` GIN index; the value is compared as its
  canonical JSON text, so ``10``, ``10.0`` and ``"10"`` differ exactly as on SQLite.

PostgreSQL's text cannot hold NUL: :func:`pg_text` maps it to U+FFFD, the same way for
what is stored and for what is asked, so a query still finds what was saved.
"""

from __future__ import annotations

import json
from typing import Any

from .model import Query
from .sql import SQLCompiler
from .values import glob_to_regex, is_glob

#: what stands for NUL, which PostgreSQL text cannot hold (stored and queried alike)
NUL_STANDIN = "\ufffd"


def pg_text(value: str) -> str:
    """*value* as PostgreSQL text can hold it (see :data:`NUL_STANDIN`)."""
    return value.replace("\x00", NUL_STANDIN) if "\x00" in value else value


def escape_like(text: str) -> str:
    """*text* as a ``LIKE`` pattern that matches exactly it (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_to_like(pattern: str) -> str:
    """A glob without ``[`` classes as a ``LIKE`` pattern with the same meaning."""
    out = []
    for c in pattern:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        else:
            out.append(escape_like(c))
    return "".join(out)


def info_containment(key: str, value: str) -> str:
    """The ``jsonb`` a row's ``info`` column contains when it has leaf *key* = *value*
    (canonical JSON), in the shape :mod:`elliptio.catalogue.postgres_schema` stores."""
    return json.dumps({pg_text(key): [pg_text(value)]}, ensure_ascii=False)


class PostgresCompiler(SQLCompiler):
    """PostgreSQL's dialect: ``%s`` placeholders, ``LIKE``/``~`` for globs, ``LIKE`` for
    free text, ``jsonb @>`` for info (see the module docstring)."""

    p = "%s"

    def glob_cond(self, column: str, pattern: str) -> str:
        if not is_glob(pattern):
            self.params.append(pattern)
            return f"{column} = %s"
        if "[" in pattern:
            self.params.append(glob_to_regex(pattern))
            return f"{column} ~ %s"
        self.params.append(glob_to_like(pattern))
        return f"{column} LIKE %s"

    def file_glob_cond(self, pattern: str) -> str:
        column = "f.path" if "/" in pattern else "f.name"
        cond = self.glob_cond(column, pattern)
        return f"a.id IN (SELECT f.artifact FROM files f WHERE {cond})"

    def tag_glob_cond(self, pattern: str) -> str:
        # the PostgreSQL catalogue keeps the type as a row of tags (one of the tags)
        return f"a.id IN (SELECT t.artifact FROM tags t WHERE {self.glob_cond('t.tag', pattern)})"

    def tag_equal_cond(self, tag: str) -> str:
        self.params.append(tag)
        return "a.id IN (SELECT t.artifact FROM tags t WHERE t.tag = %s)"

    def text_cond(self, text: str) -> str:
        self.params.append("%" + escape_like(text) + "%")
        return "a.text LIKE %s"

    def info_cond(self, key: str, value: str) -> str:
        self.params.append(info_containment(key, value))
        return "a.info @> %s::jsonb"

    def compile(self) -> tuple[str, list[Any]]:
        sql, params = super().compile()
        params = [pg_text(v) if isinstance(v, str) else v for v in params]
        if self.count or self.q.limit is None:
            return sql, params
        # a page is chosen by id alone, then its rows are read: the planner would read
        # the whole row of every match before sorting (3,000 matches of *.h5 in 100,000
        # artifacts: 100 ms), where the ids come from index-only scans
        select = "SELECT a.id, a.metadata FROM artifacts a"
        assert sql.count(select) == 1, sql
        inner = sql.replace(select, "SELECT a.id FROM artifacts a")
        order = "DESC" if self.q.order == "newest" else "ASC"
        return (f"SELECT p.id, m.metadata FROM ({inner}) AS p"
                f" JOIN artifacts m ON m.id = p.id ORDER BY p.id {order}"), params


def compile_postgres(q: Query, *, count: bool = False, at_most: int | None = None
                     ) -> tuple[str, list[Any]]:
    """``(statement, params)`` for the PostgreSQL catalogue (:class:`PostgresCompiler`)."""
    return PostgresCompiler(q, count=count, at_most=at_most).compile()
