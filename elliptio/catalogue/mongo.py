"""The MongoDB catalogue: for teams (a replica set, a sharded cluster, or Atlas).

``ELLIPTIO_CATALOGUE=mongodb://host/`` (or ``mongodb+srv://``); the database and collection
come from ``ELLIPTIO_MONGO_DATABASE`` / ``ELLIPTIO_MONGO_COLLECTION`` (``elliptio`` /
``artifacts``). Queries are compiled by :func:`elliptio.query.compile_mongo`, beside the
SQL compiler, with the same semantics (proved by ``tests/test_t2_catalogue_contract.py``).

One document per artifact — the shape (see :func:`document`)::

    _id        str        artifact id (time-ordered): sort key, keyset cursor, time index
    user       str        who saved it
    created    str        ISO-8601 UTC creation time, for display (time filters use _id)
    type       str|null   info.type as text, the most common filter
    prefix     str        store key prefix YYYY/MM/DD/<user>/<id>
    tags       [str]      distinct tags, in order, as saved (queries and distinct("tag")
                          look at ``type`` beside them: the type is one of the tags)
    file_names [str]      last path component of every file (file globs without '/')
    file_paths [str]      relative path of every file (file globs with '/')
    files      [{path, size, sha256, object}]   as in metadata.yaml (dedup lookups)
    info_kv    [{k, v}]   one per leaf of info: dotted key, canonical JSON of the value;
                          equality on (k, v) is exactly SQLite's ``info`` table, so 10,
                          "10" and [10] all differ
    based_on   [str]      parent ids (a parent need not be catalogued)
    text       str        lower-cased words for free-text search (id, user, type, tags,
                          paths, info values)
    metadata   {...}      metadata.yaml verbatim, after a JSON round trip (so every backend
                          returns the same dict) …
    metadata_json str     … or, when it cannot be a BSON document (an integer beyond 64
                          bits, a key starting with '$' or holding '.' or NUL), as JSON text
    v          int        DOCUMENT_VERSION of the code that wrote the document

Indexes (created idempotently on first use, see :data:`INDEXES`): every query field is
indexed — user, type, tags, file names and paths, (info key, value), based_on (children
lookups and transitive walks), files' (sha256, size) for dedup; ``_id`` doubles as the
time index. Compound ``(field, _id)`` keys let a filtered query walk its index in id order,
so newest-first pages stop after ``limit`` documents. Free text is a substring match
(``$regex`` on ``text``): it scans, like SQLite's ``instr``; MongoDB's ``$text`` index has
word semantics and would answer differently.

Transitive lineage is a breadth-first walk with ``$in``, one query per hop (bounded by the
query's depth, cycles guarded), in :func:`elliptio.query.walk_lineage`; ``$graphLookup``
would save round trips but mongomock cannot run it, and one semantics matters more.

pymongo errors never leave this module: they become :class:`CatalogueError`. Nothing here
retries (pymongo's own retryable writes/reads apply).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from ..errors import CatalogueError, ConfigError
from ..query import Query, compile_mongo
from ..redact import redact, redact_url
from .base import Catalogue, Conflict, index_fields

DOCUMENT_VERSION = 1
#: a server that does not answer within this many ms is reported as unreachable
SERVER_SELECTION_TIMEOUT_MS = 10_000
_INT64 = 1 << 63

#: (name, keys) of every index; created with create_index, which is a no-op if it exists
INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("user_id", [("user", 1), ("_id", 1)]),
    ("type_id", [("type", 1), ("_id", 1)]),
    ("tags_id", [("tags", 1), ("_id", 1)]),
    ("file_names", [("file_names", 1)]),
    ("file_paths", [("file_paths", 1)]),
    ("info_kv", [("info_kv.k", 1), ("info_kv.v", 1)]),
    ("based_on", [("based_on", 1)]),
    ("files_sha", [("files.sha256", 1), ("files.size", 1)]),
    ("created", [("created", 1)]),
]

T = TypeVar("T")


def document(md: Mapping[str, Any]) -> dict[str, Any]:
    """The MongoDB document of one artifact's metadata (see the module docstring)."""
    f = index_fields(md)
    plain = json.loads(json.dumps(md, ensure_ascii=False, default=str))
    doc: dict[str, Any] = {
        "_id": f.id,
        "v": DOCUMENT_VERSION,
        "user": f.user,
        "created": f.created,
        "type": f.type,
        "prefix": f.prefix,
        "tags": list(f.tags),
        "file_names": sorted({row[1] for row in f.files}),
        "file_paths": [row[0] for row in f.files],
        "files": [{"path": p, "size": size, "sha256": sha, "object": obj}
                  for p, _name, size, sha, obj in f.files],
        "info_kv": [{"k": k, "v": v} for k, v in f.info],
        "based_on": list(f.based_on),
        "text": f.text,
    }
    if _bson_safe(plain):
        doc["metadata"] = plain
    else:
        doc["metadata_json"] = json.dumps(plain, ensure_ascii=False)
    return doc


def _bson_safe(value: Any, depth: int = 0) -> bool:
    if depth > 90:  # BSON nesting limit is 100
        return False
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and not k.startswith("$") and "." not in k and "\0" not in k
            and _bson_safe(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_bson_safe(v, depth + 1) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -_INT64 <= value < _INT64
    return True


def _metadata_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    if "metadata" in doc:
        return dict(doc["metadata"])
    return json.loads(doc["metadata_json"])


class MongoCatalogue(Catalogue):
    """See the module docstring. *client* (tests: a ``mongomock.MongoClient``) replaces the
    connection made from *url*."""

    def __init__(self, url: str, *, database: str = "elliptio",
                 collection: str = "artifacts", client: Any = None) -> None:
        self.url = redact_url(url)
        self._owns_client = client is None
        if client is None:
            try:
                import pymongo
            except ImportError as exc:
                raise ConfigError(
                    "a mongodb:// catalogue needs pymongo: pip install 'elliptio[mongo]'"
                ) from exc
            options: dict[str, Any] = {}
            if "serverselectiontimeoutms" not in url.lower():
                options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
            try:
                client = pymongo.MongoClient(url, **options)
            except Exception as exc:  # ConfigurationError, InvalidURI, ValueError
                raise ConfigError(f"bad MongoDB URL {self.url}: {redact(str(exc))}") from exc
        if not database or not collection:
            raise ConfigError("MongoDB database and collection names must not be empty")
        self.database, self.collection_name = database, collection
        self._client = client
        self._coll = client[database][collection]
        self._mock = type(client).__module__.startswith("mongomock")
        self._indexed = False
        self._index_lock = threading.Lock()

    # -- the edge: every pymongo call goes through here ---------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            from pymongo.errors import PyMongoError
        except ImportError:  # mongomock without pymongo installed
            PyMongoError = Exception  # type: ignore[misc,assignment]  # noqa: N806
        try:
            self._ensure_indexes()
            return fn()
        except CatalogueError:
            raise
        except PyMongoError as exc:
            raise CatalogueError(self._describe(exc, what)) from exc
        except (OverflowError, ValueError, TypeError) as exc:
            # bson refuses the value (mongomock raises plain Python errors here)
            if _is_bson_error(exc):
                raise CatalogueError(f"catalogue {self.url}: {what} failed: {exc}") from exc
            raise

    def _describe(self, exc: Exception, what: str) -> str:
        name = type(exc).__name__
        # a driver's message may quote the URL it was given, credentials included
        msg = redact(str(exc))
        if name in ("ServerSelectionTimeoutError", "AutoReconnect", "NetworkTimeout",
                    "ConnectionFailure"):
            return f"cannot reach the MongoDB catalogue {self.url} during {what}: {msg}"
        if name == "OperationFailure" and getattr(exc, "code", None) in (13, 18):
            return (f"MongoDB catalogue {self.url} refused {what} (authentication or "
                    f"authorisation): {msg}")
        return f"catalogue {self.url}: {what} failed: {msg}"

    def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        with self._index_lock:
            if self._indexed:
                return
            for name, keys in INDEXES:
                self._coll.create_index(keys, name=name)
            self._indexed = True

    # -- writing -------------------------------------------------------------------------
    def claim_many(self, items: Iterable[Mapping[str, Any]]) -> tuple[int, list[Conflict]]:
        # The filter names the prefix, so a document of the id from another prefix does
        # not match and the upsert's insert collides with its _id (DuplicateKeyError):
        # the first claim wins, atomically, on the server.
        from pymongo import ReplaceOne
        from pymongo.errors import BulkWriteError, DuplicateKeyError

        docs: dict[str, dict[str, Any]] = {}
        refused: list[dict[str, Any]] = []
        for md in items:
            d = document(md)
            held = docs.get(d["_id"])
            if held is not None and held["prefix"] != d["prefix"]:
                refused.append(d)  # the first of the batch claims it
            else:
                docs[d["_id"]] = d  # the last one wins, as with repeated upserts
        if docs and self._mock:
            # mongomock 4.3's bulk_write breaks on pymongo >= 4.9's ReplaceOne (an unknown
            # ``sort`` argument): one replace at a time has the same effect
            def each() -> None:
                for i, d in docs.items():
                    try:
                        self._coll.replace_one({"_id": i, "prefix": d["prefix"]}, d,
                                               upsert=True)
                    except DuplicateKeyError:
                        refused.append(d)

            self._call("upsert", each)
        elif docs:
            ops = [ReplaceOne({"_id": i, "prefix": d["prefix"]}, d, upsert=True)
                   for i, d in docs.items()]
            order = list(docs.values())

            def bulk() -> None:
                try:
                    self._coll.bulk_write(ops, ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors") or []
                    if any(e.get("code") != 11000 for e in errors):
                        raise
                    refused.extend(order[e["index"]] for e in errors)

            self._call("upsert", bulk)
        conflicts = []
        for d in refused:
            held_doc = self._call("get", lambda d=d: self._coll.find_one(  # type: ignore[misc]
                {"_id": d["_id"]}, {"prefix": 1}))
            conflicts.append(Conflict(d["_id"], str((held_doc or {}).get("prefix")),
                                      d["prefix"]))
        refused_ids = {id(d) for d in refused}
        return sum(1 for d in docs.values() if id(d) not in refused_ids), conflicts

    # -- reading -------------------------------------------------------------------------
    def get(self, artifact_id: str) -> dict[str, Any] | None:
        doc = self._call("get", lambda: self._coll.find_one(
            {"_id": artifact_id}, {"metadata": 1, "metadata_json": 1}))
        return _metadata_of(doc) if doc else None

    def _neighbours(self, direction: str, ids: list[str]) -> Iterator[str]:
        # one query per hop of a lineage walk; projection keeps it to ids
        if direction == "children":
            for doc in self._coll.find({"based_on": {"$in": ids}}, {"_id": 1}):
                yield doc["_id"]
        else:
            for doc in self._coll.find({"_id": {"$in": ids}}, {"based_on": 1}):
                yield from doc.get("based_on") or ()

    def find(self, query: Query) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            flt, sort, limit = compile_mongo(query, self._neighbours)
            cursor = self._coll.find(flt, {"metadata": 1, "metadata_json": 1}).sort(sort)
            if limit is not None:
                cursor = cursor.limit(limit)
            return [_metadata_of(d) for d in cursor]

        return self._call("query", run)

    def count(self, query: Query, at_most: int | None = None) -> int:
        def run() -> int:
            flt, _sort, _limit = compile_mongo(replace(query, limit=None, after=None),
                                               self._neighbours)
            if at_most is not None:  # (MongoDB reads a limit of 0 as none)
                return int(self._coll.count_documents(flt, limit=at_most)) if at_most > 0 else 0
            return int(self._coll.count_documents(flt))

        return self._call("count", run)

    def existing(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        if not wanted:
            return set()
        return self._call("query", lambda: {
            d["_id"] for d in self._coll.find({"_id": {"$in": wanted}}, {"_id": 1})})

    def all_ids(self) -> Iterator[str]:
        # keyset pages, so a huge collection is never one long-lived cursor
        after: str | None = None
        while True:
            flt = {"_id": {"$gt": after}} if after is not None else {}
            page = self._call("query", lambda flt=flt: [  # type: ignore[misc]
                d["_id"] for d in self._coll.find(flt, {"_id": 1}).sort("_id", 1).limit(5000)])
            yield from page
            if len(page) < 5000:
                return
            after = page[-1]

    def find_objects(self, sha256: str, size: int, limit: int = 4) -> list[str]:
        def run() -> list[str]:
            found: list[str] = []
            cursor = self._coll.find(
                {"files": {"$elemMatch": {"sha256": sha256, "size": size}}},
                {"files": 1}).sort("_id", 1).limit(limit * 4)
            for doc in cursor:
                for f in doc["files"]:
                    if (f["sha256"] == sha256 and f["size"] == size
                            and str(f["object"]) not in found):
                        found.append(str(f["object"]))
                if len(found) >= limit:
                    break
            return found[:limit]

        return self._call("query", run)

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        if limit <= 0:
            return []
        return self._call("query", lambda: [
            d["_id"] for d in self._coll.find(
                {"_id": {"$gte": prefix, "$lt": prefix + "\uffff"}}, {"_id": 1}
            ).sort("_id", 1).limit(limit)])

    def distinct(self, field: str, prefix: str | None = None, limit: int = 1000,
                 after: str | None = None) -> list[str]:
        if limit <= 0:
            return []
        cond: dict[str, Any] = {"$ne": None}
        if after is not None:
            cond["$gt"] = after
        if prefix:
            cond["$gte"] = prefix
            cond["$lt"] = prefix + "\uffff"

        def values(name: str) -> list[str]:
            pipeline: list[dict[str, Any]] = [{"$match": {name: cond}}]
            if name == "tags":
                pipeline += [{"$unwind": "$tags"}, {"$match": {"tags": cond}}]
            pipeline += [{"$group": {"_id": "$" + name}}, {"$sort": {"_id": 1}},
                         {"$limit": limit}]
            return self._call("query", lambda: [
                d["_id"] for d in self._coll.aggregate(pipeline)])

        if field != "tag":
            return values({"user": "user", "type": "type"}[field])
        # the type is one of the tags (elliptio.query): the first *limit* values of the
        # union lie among the first *limit* of each side
        return sorted(set(values("tags")) | set(values("type")))[:limit]

    def check(self) -> str:
        self._call("ping", lambda: self._client.admin.command("ping"))
        return f"MongoDB catalogue {self.url} ({self.database}.{self.collection_name})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _is_bson_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "bson" in text or "mongodb can only handle" in text or "int64" in text
