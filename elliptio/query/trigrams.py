"""What the SQLite catalogue's trigram search index holds, seen from the query side: the
layout of one search document, and the trigrams a glob or a free-text needle needs there.

The index (:mod:`elliptio.catalogue.sqlite_search`) is an FTS5 table with the ``trigram``
tokenizer, case-sensitive, that records only which documents hold a trigram
(``detail=none``). A document holds the searchable values of its artifacts, each wrapped
in the marks of its kind and separated by :data:`SEP`:

- every file's base name (:data:`NAME`) and relative path (:data:`PATH`), as saved;
- every tag as saved and the type (:data:`TAG`: the type is one of the tags);
- the lower-cased free-text column (:data:`TEXT`).

The marks make an anchored glob narrower: ``*.h5`` needs the trigram ``h5`` + end of a
name, which a path ``x.h5/y`` does not hold. Two separator characters between values make
every trigram that spans a boundary depend on one value only, so the trigrams of a
document are those of its values, whatever their order or repetition.

A query asks the index for documents holding *all* the trigrams its globs and text need
and then checks the exact condition on the rows: the index only narrows. So the rule here
is one-sided — every value a condition matches holds every trigram given for it — and a
condition with no run of three literal characters gives none (it is not narrowed).
"""

from __future__ import annotations

from collections.abc import Iterable

#: between two values of a document, and at its two ends
SEP = "\x1f\x1f"
#: (start, end) marks of each kind of value
NAME = ("\x01", "\x02")
PATH = ("\x03", "\x04")
TAG = ("\x05", "\x06")
TEXT = ("\x07", "\x08")


def glob_runs(pattern: str) -> list[str]:
    """The literal runs of glob *pattern*, split at ``*``, ``?`` and classes (a class of one
    member, like ``[[]``, is that character), first to last; a pattern that starts or ends
    with a wildcard has an empty first or last run. Classes are read as
    :func:`~elliptio.query.values.glob_to_regex` reads them (a ``]`` first in a class is a
    member). ``[]`` for an unclosed class (refused before any compiler sees it)."""
    runs: list[str] = []
    cur = ""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c in "*?":
            runs.append(cur)
            cur = ""
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            close = pattern.find("]", j + 1 if j < n and pattern[j] == "]" else j)
            if close < 0:
                return []
            members = pattern[j:close]
            if negate or len(members) != 1:
                runs.append(cur)
                cur = ""
            else:
                cur += members
            i = close
        else:
            cur += c
        i += 1
    runs.append(cur)
    return runs


def glob_trigrams(pattern: str, marks: tuple[str, str]) -> set[str]:
    """Trigrams every value of the kind *marks* that matches *pattern* holds in its
    document. Globs are anchored: the first run starts at the value's start mark unless a
    wildcard comes first, the last ends at its end mark unless one comes last."""
    runs = glob_runs(pattern)
    if not runs:
        return set()
    runs[0] = marks[0] + runs[0]
    runs[-1] = runs[-1] + marks[1]
    return {t for r in runs for t in _trigrams(r)}


def text_trigrams(needle: str) -> set[str]:
    """Trigrams the text of every artifact containing *needle* holds (the needle is
    lower-cased already, as the text column is)."""
    return set(_trigrams(needle))


def _trigrams(run: str) -> Iterable[str]:
    for i in range(len(run) - 2):
        t = run[i:i + 3]
        if "\x00" not in t:  # FTS5 reads its query as a C string
            yield t


def match_expression(trigrams: Iterable[str]) -> str:
    """An FTS5 query for the documents holding every one of *trigrams*: each a quoted
    string (so ``*``, ``?``, ``[``, ``"`` and words like ``AND`` are literal), implicitly
    ANDed."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in sorted(trigrams))
