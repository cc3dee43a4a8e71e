"""A :class:`Lake`: one store and one catalogue, and the one save path.

A lake is opened lazily from :class:`~elliptio.config.Settings` (or given a store and a
catalogue). :meth:`Lake.save_entries` is the one save implementation: ``eio.save``, the
CLI and the FUSE outbox all commit through it. The artifacts it returns reach their bytes
through it (it is the :class:`~elliptio.artifact.ArtifactSource` they hold).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import layout, lineage, provenance
from .artifact import FORMAT_VERSION, Artifact, dump_metadata
from .catalogue import Catalogue, open_catalogue
from .config import Settings, valid_user
from .errors import CatalogueError, IntegrityError, NotFound, QueryError, StorageError, UsageError
from .ids import ID_RE, check_id, id_time, new_id
from .inputs import Entry, SourceSpec, resolve_inputs
from .query import Query
from .store import Store, open_store
from .store.base import Digest
from .store.files import hash_stream
from .trust import read_stored_metadata
from .validate import check_ids, check_info, check_tags
from .version import __version__

log = logging.getLogger(__name__)

#: files staged concurrently (many small files are bound by per-file latency)
SAVE_WORKERS = 8


class Lake:
    """One store and one catalogue, opened lazily from :class:`Settings`."""

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None,
                 catalogue: Catalogue | None = None) -> None:
        self.settings = settings or Settings.load()
        self._store = store
        self._catalogue = catalogue
        self._lock = threading.Lock()
        self._verified: set[tuple[str, str, int]] = set()  # dedup objects re-hashed

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    s = self.settings
                    self._store = open_store(s.store, lock_mode=s.lock_mode,
                                             lock_days=s.lock_days,
                                             allow_unlocked=s.allow_unlocked)
        return self._store

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            with self._lock:
                if self._catalogue is None:
                    s = self.settings
                    self._catalogue = open_catalogue(s.catalogue, sqlite_cache_mb=s.sqlite_cache_mb,
                                                     database=s.mongo_database,
                                                     collection=s.mongo_collection)
        return self._catalogue

    def close(self) -> None:
        """Close the catalogue's and the store's connections and threads (a later call
        opens them again)."""
        try:
            if self._catalogue is not None:
                self._catalogue.close()
        finally:
            if self._store is not None:
                self._store.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- saving ------------------------------------------------------------------------
    def save(self, files: SourceSpec, info: Mapping[str, Any] | None = None, *,
             tags: Iterable[str] | str | None = None, based_on: Iterable[Any] | None = None,
             progress: Callable[[int], None] | None = None, **kwinfo: Any) -> Artifact:
        """Save *files* as one new locked artifact. See :func:`elliptio.save`."""
        if info is not None and not isinstance(info, Mapping):
            raise UsageError(f"info must be a mapping, got {type(info).__name__}")
        merged = {**(info or {}), **kwinfo}
        entries = resolve_inputs(files)
        return self.save_entries(entries, info=merged, tags=tags, based_on=based_on,
                                 progress=progress)

    def save_entries(self, entries: Sequence[Entry], *, info: Mapping[str, Any] | None,
                     tags: Iterable[str] | str | None = None,
                     based_on: Iterable[Any] | None = None, user: str | None = None,
                     progress: Callable[[int], None] | None = None,
                     extra_provenance: Mapping[str, Any] | None = None,
                     writer: Mapping[str, Any] | None = None) -> Artifact:
        """The one save path. Validates everything, then writes user files, logs, and
        ``metadata.yaml`` last; then updates the catalogue. ``directory`` entries become
        the metadata's ``dirs`` (those a file implies are dropped); at least one file is
        needed.

        *user* overrides the configured user (the FUSE outbox passes the writing uid's
        name). *writer* describes the program the files come from when it is not this
        process (see :func:`elliptio.provenance.capture`); *extra_provenance* is added to
        the provenance as it is. A failure before the metadata is written
        removes what was written where the store allows it; anything left is an orphan
        that ``eio fsck`` reports.
        """
        s = self.settings
        user = valid_user(user or s.user)
        clean_info = check_info(info, s.max_info_bytes)
        clean_tags = check_tags(tags)
        if based_on is None:
            from .mountreads import with_mount_reads  # + reads through local mounts

            parents = with_mount_reads(lineage.current(), s.store)
        else:
            parents = check_ids(based_on)
            for p in parents:
                lineage.record(p)
        files = [e for e in entries if not e.directory]
        file_names = [layout.check_name(e.name) for e in files]
        dirs = layout.check_dirs((e.name for e in entries if e.directory), file_names)
        if not files:
            raise UsageError("nothing to save: no files given")
        store = self.store
        catalogue = self.catalogue
        aid = new_id()
        created = id_time(aid)
        prefix = layout.artifact_prefix(created, user, aid)
        prov, logs = provenance.capture(user, __version__, writer=writer)
        if extra_provenance:
            prov.update(extra_provenance)
        log.info("saving %d file(s) as %s", len(files), aid)
        try:
            file_records = self._store_files(store, catalogue, prefix, files, progress)
            log_records = {}
            for name, text in logs.items():
                key = f"{prefix}/{layout.LOGS}{provenance.LOG_FILE_NAMES.get(name, name)}"
                data = text.encode()
                store.put_bytes(key, data)
                log_records[name] = {"path": key[len(prefix) + 1:], "size": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest(), "object": key}
            md: dict[str, Any] = {
                "elliptio": FORMAT_VERSION,
                "id": aid,
                "user": user,
                "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "prefix": prefix,
                "info": clean_info,
                "tags": clean_tags,
                "based_on": parents,
                "files": file_records,
                **({"dirs": dirs} if dirs else {}),  # absent when none: the old format
                "logs": log_records,
                "provenance": prov,
            }
            store.put_bytes(layout.metadata_key(prefix), dump_metadata(md))
        except BaseException:
            self._remove_partial(store, prefix)
            raise
        store.seal(prefix)
        artifact = Artifact(md, self)
        try:
            catalogue.upsert(md)
        except CatalogueError as exc:
            artifact.catalogued = False
            log.warning("artifact %s is saved in the store but the catalogue could not be "
                        "updated (%s); `eio reindex` (or the indexer) will pick it up", aid, exc)
        return artifact

    def _store_files(self, store: Store, catalogue: Catalogue, prefix: str,
                     entries: Sequence[Entry], progress: Callable[[int], None] | None
                     ) -> list[dict[str, Any]]:
        # Each worker stages (reads + hashes), decides dedup and commits one file, so
        # many small files overlap their per-file latency. Identical files inside one save
        # share one object: the first to claim a digest commits, the others reference it.
        by_digest: dict[tuple[str, int], str] = {}
        claim = threading.Lock()
        # set once a dedup lookup failed: the rest of this save asks no more (each lookup
        # of a catalogue that is down waits for its timeout, per file)
        catalogue_down = threading.Event()

        def store_one(e: Entry) -> dict[str, Any]:
            staged = store.stage(f"{prefix}/{e.name}", e.source, progress)
            try:
                d = staged.digest
                with claim:
                    key = by_digest.get((d.sha256, d.size))
                if key is None and not catalogue_down.is_set():
                    found = catalogue_objects(catalogue, d.sha256, d.size, catalogue_down)
                    key = next((c for c in found
                                if self._known_good(store, c, d.sha256, d.size)), None)
                with claim:
                    key = key or by_digest.get((d.sha256, d.size))
                    mine = key is None
                    if mine:
                        by_digest[(d.sha256, d.size)] = key = staged.key
                if mine:
                    staged.commit()
                else:
                    staged.discard()
            except BaseException:
                staged.discard()
                raise
            return {"path": e.name, "size": d.size, "sha256": d.sha256, "object": key}

        workers = min(SAVE_WORKERS, len(entries))
        if workers <= 1:
            return [store_one(e) for e in entries]
        with ThreadPoolExecutor(workers, thread_name_prefix="eio-save") as pool:
            futures = [pool.submit(store_one, e) for e in entries]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _known_good(self, store: Store, key: str, sha256: str, size: int) -> bool:
        """Whether the existing object *key* may stand in for bytes with this digest:
        dedup never lends trust. The catalogue's claim (anyone's metadata) is not enough:
        the key must be a file of the store layout outside any ``.eio/``, and its bytes are
        re-read and hashed now (once per process and object). A save that cannot verify
        stores its own bytes."""
        k = layout.parse_key(key)
        if k is None or not k.path or k.path.split("/", 1)[0] == ".eio":
            return False
        if (key, sha256, size) in self._verified:
            return True
        try:
            with store.open(key) as fh:
                got = hash_stream(fh, most=size)
        except (NotFound, StorageError) as exc:
            log.debug("dedup candidate %s unreadable: %s", key, exc)
            return False
        if got != Digest(sha256, size):
            log.warning("dedup: %s does not hold the bytes the catalogue records for it; "
                        "this save stores its own (eio fsck --verify reports it)", key)
            return False
        self._verified.add((key, sha256, size))
        return True

    def _remove_partial(self, store: Store, prefix: str) -> None:
        try:
            store.remove_orphan(prefix)
        except Exception as exc:  # the orphan stays; fsck reports it
            log.debug("could not remove partial artifact %s: %s", prefix, exc)

    # -- reading -----------------------------------------------------------------------
    def resolve_id(self, text: str) -> str:
        """Full id from a full id or a unique prefix of at least 6 characters."""
        if not isinstance(text, str):
            raise UsageError(f"artifact id must be a string, got {type(text).__name__}")
        t = text.strip().lower()
        if ID_RE.match(t):
            return t
        if 6 <= len(t) < 26 and all(c in "0123456789abcdefghjkmnpqrstvwxyz" for c in t):
            matches = self.catalogue.ids_with_prefix(t, limit=2)
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"id prefix {text!r} is ambiguous; give more characters")
            raise NotFound(f"no artifact with an id starting with {text!r}")
        return check_id(text)

    def _metadata(self, artifact_id: str) -> dict[str, Any]:
        md = self.catalogue.get(artifact_id)
        if md is None:
            md = self._metadata_from_store(artifact_id)
        if md is None:
            raise NotFound(f"no artifact {artifact_id}")
        return md

    def _metadata_from_store(self, artifact_id: str) -> dict[str, Any] | None:
        # The id carries its creation date, so the store can be searched without the
        # catalogue (a save whose catalogue write failed is still loadable).
        # Only accepted metadata (elliptio.trust) is returned; without a catalogue to say
        # which claim came first, an id claimed at two prefixes is refused.
        day = f"{id_time(artifact_id):%Y/%m/%d}/"
        keys = [key for key in self.store.list_metadata(day)
                if (k := layout.parse_key(key)) is not None and k.is_metadata
                and k.id == artifact_id]
        if len(keys) > 1:
            raise IntegrityError(f"artifact {artifact_id} is claimed at {' and '.join(keys)} "
                                 "and is not catalogued: `eio fsck` reports the conflict")
        if not keys:
            return None
        return read_stored_metadata(self.store, keys[0])

    def get(self, artifact_id: str) -> Artifact | None:
        """The artifact, or None; does not record lineage."""
        try:
            return Artifact(self._metadata(check_id(artifact_id)), self)
        except NotFound:
            return None

    def load(self, artifact_id: str | Artifact) -> Artifact:
        """The artifact; records it as used by this process (lineage)."""
        if isinstance(artifact_id, Artifact):
            artifact_id = artifact_id.id
        aid = self.resolve_id(artifact_id)
        artifact = Artifact(self._metadata(aid), self)
        lineage.record(aid)
        return artifact

    def search(self, query: Query | str | None = None, **kwargs: Any) -> list[Artifact]:
        """Artifacts matching *query* (a Query, its text form, or keyword fields)."""
        q = self.make_query(query, **kwargs)
        return [Artifact(md, self) for md in self.catalogue.find(q)]

    @staticmethod
    def make_query(query: Query | str | None = None, **kwargs: Any) -> Query:
        if isinstance(query, Query):
            if kwargs:
                raise QueryError("pass either a Query or keyword fields, not both")
            return query
        if isinstance(query, str):
            return Query.parse(query, **kwargs)
        if query is not None:
            raise QueryError(f"query must be a Query or a string, got {type(query).__name__}")
        if "file" in kwargs:
            kwargs["files"] = kwargs.pop("file")
        if "tag" in kwargs:
            kwargs["tags"] = kwargs.pop("tag")
        try:
            return Query.build(**kwargs)
        except TypeError as exc:
            raise QueryError(str(exc).replace("build()", "search()")) from None


def catalogue_objects(catalogue: Catalogue, sha256: str, size: int,
                      failed: threading.Event | None = None) -> list[str]:
    """Store keys recorded as holding this content (dedup candidates, to be verified), or
    none (dedup is an optimisation: a catalogue that cannot answer never fails a save);
    *failed* is set when it could not answer."""
    try:
        return catalogue.find_objects(sha256, size)
    except CatalogueError as exc:
        if failed is not None:
            failed.set()
        log.debug("dedup lookup failed: %s", exc)
        return []
