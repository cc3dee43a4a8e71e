"""The SQLite catalogue's search index (schema version 2): globs on file names, paths and
tags, and free text, answered without a scan of every artifact.

``search`` is an FTS5 table with the trigram tokenizer (case-sensitive; ``detail=none``,
``content=''``: it stores only which documents hold each trigram, nothing of the values).
What a document holds is :mod:`elliptio.query.trigrams`'s; which artifacts it is for is
decided here:

- A document's rowid is a **bucket**: the first 13 characters of an artifact id (63 bits:
  the 48-bit time and 15 random bits), read as a base-32 number. Buckets sort as the ids
  do, so walking the index by rowid walks the artifacts newest first (or oldest first),
  and a query can stop after its ``limit``. Ids that share a bucket (two saves in one
  millisecond with the same 15 bits) share a document; it holds the values of all of them.
- The document of a bucket is made from the rows by one SQL expression (:data:`DOC`)
  when the index is built and when a bucket holds other ids; a new artifact alone in its
  bucket (the common write) gets the same values from its fields (:func:`document`).
  Before the rows of a bucket change, its old document — made by :data:`DOC` from the rows
  as they still are — is deleted (a contentless table forgets a document only when told
  what it held). Both happen in the transaction of the write, so the index and the rows
  change together.
- Cost: ~800 bytes per artifact at 1M (the bench's corpus), nearly all doclists; each
  entry is a rowid delta, 5-6 bytes because of the rowids' 15 random bits (rowids of
  milliseconds would take ~2/3 of it, dense ones ~1/4: a later schema version's choice,
  traded against ids sharing documents).

A query (:func:`find`) reads the index a chunk of buckets at a time, in order, and runs
the compiled statement on those candidates only (the statement checks every condition
exactly: the index only narrows); it stops when the limit is reached. When a pattern is so
common that the candidates outnumber the matches many times over, it gives up after
:data:`BUDGET` candidates and the caller runs the plain statement, which walks the id
index and stops early exactly then.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from ..ids import _ALPHABET, ID_RE
from ..query.trigrams import NAME, PATH, SEP, TAG, TEXT
from .base import IndexFields

log = logging.getLogger(__name__)

#: candidates (buckets) a query reads from the index before it falls back to the plain plan
BUDGET = 4096
#: a catalogue this large says that building its index takes a while
LARGE = 50_000
_BUCKET_CHARS = 13
_MAX_ROWID = (1 << 63) - 1

#: one column, ``doc``: the searchable values of the artifacts of one bucket
#: (:mod:`elliptio.query.trigrams`); the rowid is the bucket
DDL = ("CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(doc,"
       " tokenize = 'trigram case_sensitive 1', content = '', detail = none,"
       " columnsize = 0);")


def _chars(marks: tuple[str, str]) -> tuple[str, str]:
    return tuple(f"char({ord(m)})" for m in marks)  # type: ignore[return-value]


_name, _path, _tag, _text = (_chars(m) for m in (NAME, PATH, TAG, TEXT))
_sep = "char(" + ",".join(str(ord(c)) for c in SEP) + ")"
#: the document of the bucket of ids in [:lo, :hi), from its rows (NULL when it has none),
#: for deletes, builds and writes to a bucket that holds other ids; :func:`document` makes
#: the same from one artifact's fields, for the common write (tests compare the two)
DOC = f"""
SELECT {_sep} || group_concat(v, {_sep}) || {_sep} FROM (
    SELECT {_name[0]} || name || {_name[1]} AS v FROM files
     WHERE artifact >= :lo AND artifact < :hi
    UNION ALL SELECT {_path[0]} || path || {_path[1]} FROM files
     WHERE artifact >= :lo AND artifact < :hi
    UNION ALL SELECT {_tag[0]} || tag || {_tag[1]} FROM tags
     WHERE artifact >= :lo AND artifact < :hi
    UNION ALL SELECT {_tag[0]} || type || {_tag[1]} FROM artifacts
     WHERE id >= :lo AND id < :hi AND type IS NOT NULL
    UNION ALL SELECT {_text[0]} || text || {_text[1]} FROM artifacts
     WHERE id >= :lo AND id < :hi
)"""
_ADD = f"INSERT INTO search(rowid, doc) SELECT :rowid, ({DOC})"
_ADD_DOC = "INSERT INTO search(rowid, doc) VALUES (?, ?)"
_DELETE = f"INSERT INTO search(search, rowid, doc) SELECT 'delete', :rowid, ({DOC})"


class Bucket:
    """The bucket of one artifact id: its rowid in ``search`` and the id range it covers."""

    __slots__ = ("rowid", "lo", "hi")

    def __init__(self, artifact_id: str) -> None:
        if not ID_RE.fullmatch(artifact_id):
            raise ValueError(f"malformed artifact id {artifact_id!r}")
        self.lo = artifact_id[:_BUCKET_CHARS]
        self.hi = self.lo + "~"  # after every id character
        self.rowid = rowid_of(self.lo)

    def params(self) -> dict[str, Any]:
        return {"rowid": self.rowid, "lo": self.lo, "hi": self.hi}


def rowid_of(text: str) -> int:
    """The bucket rowid of an id or id bound (ids past every bucket give the largest)."""
    value = 0
    for ch in text[:_BUCKET_CHARS].ljust(_BUCKET_CHARS, "0"):
        value = value * 32 + _ALPHABET.index(ch)
    return min(value, _MAX_ROWID)


def prefix_of(rowid: int) -> str:
    """The id prefix of bucket *rowid* (the inverse of :func:`rowid_of`)."""
    chars = []
    for _ in range(_BUCKET_CHARS):
        chars.append(_ALPHABET[rowid & 31])
        rowid >>= 5
    return "".join(reversed(chars))


# -- writing (inside the caller's transaction) -------------------------------------------
def forget(db: sqlite3.Connection, bucket: Bucket) -> None:
    """Delete the document of *bucket* as its rows make it now (before they change)."""
    db.execute(_DELETE, bucket.params())


def add(db: sqlite3.Connection, bucket: Bucket) -> None:
    """Index the document of *bucket* as its rows make it now (after they changed)."""
    db.execute(_ADD, bucket.params())


def add_one(db: sqlite3.Connection, bucket: Bucket, f: IndexFields) -> None:
    """Index the document of *bucket* when *f* is its only artifact: :data:`DOC`'s values
    from the fields instead of the rows just written (a third of a bulk load's time)."""
    db.execute(_ADD_DOC, (bucket.rowid, document(f)))


def document(f: IndexFields) -> str:
    """The document of one artifact, from its :func:`~.base.index_fields`: the values of
    :data:`DOC` (the order differs, which changes no trigram: see
    :mod:`elliptio.query.trigrams`)."""
    values = [NAME[0] + name + NAME[1] for _path, name, *_ in f.files]
    values += [PATH[0] + path + PATH[1] for path, *_ in f.files]
    values += [TAG[0] + t + TAG[1] for t in f.tags]
    if f.type is not None:
        values.append(TAG[0] + f.type + TAG[1])
    values.append(TEXT[0] + f.text + TEXT[1])
    return SEP + SEP.join(values) + SEP


def build(db: sqlite3.Connection, path: str) -> int:
    """Index every artifact of a catalogue whose ``search`` table is empty (the migration
    from version 1); returns how many artifacts."""
    total = db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    (log.warning if total >= LARGE else log.info)(
        "catalogue %s: building the search index of %d artifacts (schema version 2), "
        "once", path, total)
    after = ""
    while True:
        ids = [r[0] for r in db.execute(
            "SELECT id FROM artifacts WHERE id > ? ORDER BY id LIMIT 10000", (after,))]
        if not ids:
            return total
        buckets = {i[:_BUCKET_CHARS]: Bucket(i) for i in ids}
        db.executemany(_ADD, [b.params() for b in buckets.values()])
        after = ids[-1][:_BUCKET_CHARS] + "~"  # the rest of the last bucket is indexed


# -- reading ---------------------------------------------------------------------------
def find(db: sqlite3.Connection, sql: str, params: list[Any], slot: int, match: str,
         *, lo: int, hi: int, newest: bool, limit: int | None,
         count: bool = False) -> list[tuple[Any, ...]] | int | None:
    """Run the compiled statement *sql* on the candidates of the index, a chunk of
    buckets at a time, in the query's order: ``params[slot]`` is set to each chunk's
    id prefixes. Returns the rows (at most *limit*), or with *count* their number (at most
    *limit*: counting stops there); None
    when :data:`BUDGET` candidates gave fewer than *limit* rows (the caller then runs the
    plain statement). *lo*/*hi*: the bucket range the query's time range and cursor allow.
    """
    order = "DESC" if newest else "ASC"
    probe = ("SELECT rowid FROM search WHERE search MATCH ? AND rowid >= ? AND rowid <= ?"
             f" ORDER BY rowid {order} LIMIT ?")
    rows: list[tuple[Any, ...]] = []
    counted = 0
    chunk = 256 if count else max(256, 2 * (limit or 0))
    seen = 0
    while True:
        buckets = [r[0] for r in db.execute(probe, (match, lo, hi, chunk))]
        if buckets:
            params[slot] = json.dumps([prefix_of(b) for b in buckets])
            if count:
                counted += db.execute(sql, params).fetchone()[0]
            else:
                rows += db.execute(sql, params).fetchall()
        if count and limit and counted >= limit:
            return limit
        if len(buckets) < chunk or (limit and not count and len(rows) >= limit):
            return counted if count else rows[:limit] if limit else rows
        seen += len(buckets)
        if seen >= BUDGET:
            return None
        if newest:
            hi = buckets[-1] - 1
        else:
            lo = buckets[-1] + 1
        chunk = min(chunk * 4, BUDGET - seen)


def bounds(since_id: str | None, until_id: str | None, after: str | None,
           newest: bool) -> tuple[int, int]:
    """The bucket range [lo, hi] that ids ``>= since_id``, ``< until_id`` and past the
    cursor *after* lie in."""
    lo, hi = 0, _MAX_ROWID
    if since_id is not None:
        lo = rowid_of(since_id)
    if until_id is not None:
        hi = rowid_of(until_id)
    if after is not None and ID_RE.fullmatch(after):
        if newest:
            hi = min(hi, rowid_of(after))
        else:
            lo = max(lo, rowid_of(after))
    return lo, hi

