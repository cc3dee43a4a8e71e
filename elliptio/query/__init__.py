"""The one query model, its text form, and its compilation for each catalogue backend.

A :class:`Query` (:mod:`.model`) means the same thing on every catalogue backend; the SQL
compiler lives in :mod:`.compilers` (not in the SQLite code) beside the MongoDB compiler,
so the two can be read side by side. The text form is :mod:`.text`, the reading of globs,
times and ``info`` values :mod:`.values`. Semantics, fixed for every backend:

- Conditions combine with AND. ``files`` and ``tags`` hold several globs: each must match
  at least one file / tag of the artifact.
- The type is a tag: an artifact's tags, for every tag condition (and the mount's
  ``by-tag/``, :meth:`Catalogue.distinct` of ``"tag"``), are the tags it was saved with
  and its ``type`` (``info.type`` as text). ``tag=*dataset*`` finds an artifact saved
  with ``info={"type": "dataset_list"}`` and no tags. The metadata and ``Artifact.tags``
  keep the tags as saved; catalogues index them as saved too (the compilers look at the
  type beside them), so a catalogue written by an older version answers alike.
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
  are read as YAML scalars (``epochs=10`` is an int, ``epochs="10"`` a string). Keys are
  compared exactly as written, case and ``-`` included (``info.learningRate=0.1``,
  ``info.batch-size=32``); the query's own keys (``user``, ``based-on``, ``INFO.``) are
  read in any case, with ``-`` for ``_``.
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

from .compilers import Neighbours, compile_mongo, compile_sql, mongo_glob, walk_lineage
from .model import DEFAULT_DEPTH, MAX_DEPTH, Query
from .text import fields_text, text_item
from .values import (
    canonical,
    check_glob,
    flatten_info,
    glob_to_regex,
    id_floor,
    is_glob,
    parse_time,
)

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "Neighbours",
    "Query",
    "canonical",
    "check_glob",
    "compile_mongo",
    "compile_sql",
    "fields_text",
    "flatten_info",
    "glob_to_regex",
    "id_floor",
    "is_glob",
    "mongo_glob",
    "parse_time",
    "text_item",
    "walk_lineage",
]
