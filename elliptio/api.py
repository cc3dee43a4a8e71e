"""The public surface: save, load, search, create_artifact (re-exported by ``elliptio``).

A :class:`Lake` binds one store and one catalogue from :class:`~elliptio.config.Settings`.
The module-level functions use a default lake built from the environment (rebuilt when the
configuration changes). :meth:`Lake.save_entries` is the one save implementation: the
library, the CLI and the FUSE outbox all commit through it.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from . import layout, lineage, provenance
from .artifact import FORMAT_VERSION, Artifact, dump_metadata, load_metadata
from .catalogue import Catalogue, open_catalogue
from .config import Settings, valid_user
from .errors import (
    CatalogueError,
    Immutable,
    NotFound,
    QueryError,
    UsageError,
)
from .ids import ID_RE, check_id, id_time, new_id
from .query import Query
from .store import Store, open_store
from .store.local import is_special

log = logging.getLogger(__name__)

__version__ = "0.1.0"

#: tags become directory names in the mount (by-tag/<tag>), so they must be path-safe
MAX_TAGS = 256
MAX_TAG_LEN = 200
#: files staged concurrently (many small files are bound by per-file latency)
SAVE_WORKERS = 8

SourceSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any]


@dataclass(frozen=True)
class Entry:
    """One file to save: its name inside the artifact and where its bytes are now. With
    *directory*, an empty directory instead: no bytes (*source* says where it was, for
    messages); it is recorded in the metadata's ``dirs``."""

    name: str
    source: str
    size: int
    directory: bool = False


# -- input resolution (all checks happen before anything is written) --------------------
def resolve_inputs(files: SourceSpec) -> list[Entry]:
    """Turn what the caller passed into checked :class:`Entry` items.

    - a path or a list of paths: files keep their base name; directories are walked
      recursively and keep their own name as the first component (``cp -r`` semantics);
    - a mapping ``{name in artifact: local path}`` names files explicitly.
    Empty directories met on the way become ``directory`` entries. Symlinks are followed;
    a directory loop, a special file, a missing path, a reserved or unsafe name, two
    inputs with the same name, or no file at all raise ``UsageError``.
    """
    if isinstance(files, (str, os.PathLike)):
        pairs: list[tuple[str | None, str]] = [(None, os.fspath(files))]
    elif isinstance(files, Mapping):
        pairs = [(str(k), os.fspath(v)) for k, v in files.items()]
    elif isinstance(files, Iterable):
        pairs = []
        for f in files:
            if not isinstance(f, (str, os.PathLike)):
                raise UsageError(f"files must be paths, got {type(f).__name__}: {f!r}")
            pairs.append((None, os.fspath(f)))
    else:
        raise UsageError(f"files must be a path, a list of paths or a mapping, got {files!r}")
    if not pairs:
        raise UsageError("nothing to save: no files given")
    entries: dict[str, Entry] = {}
    dirs: dict[str, Entry] = {}

    def add(name: str, source: str, st: os.stat_result) -> None:
        norm = layout.check_name(name)
        if norm in entries:
            raise UsageError(
                f"two inputs map to the same name {norm!r}: {entries[norm].source} and {source}"
            )
        entries[norm] = Entry(norm, source, st.st_size)

    def add_dir(name: str, source: str) -> None:
        norm = layout.check_name(name)
        dirs.setdefault(norm, Entry(norm, source, 0, directory=True))

    for name, source in pairs:
        try:
            st = os.stat(source)
        except FileNotFoundError:
            raise UsageError(f"no such file or directory: {source}") from None
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
        base = name if name is not None else os.path.basename(os.path.normpath(source))
        if stat.S_ISDIR(st.st_mode):
            _walk_dir(source, base, add, add_dir)
        elif stat.S_ISREG(st.st_mode):
            _check_readable(source)
            add(base, source, st)
        elif is_special(st.st_mode):
            raise UsageError(f"{source} is a FIFO, socket or device: only regular files "
                             "and directories can be saved")
        else:
            raise UsageError(f"{source} is not a regular file or directory")
    if not entries:
        raise UsageError("nothing to save: the given directories hold no files")
    return [*entries.values(), *dirs.values()]


def _check_readable(path: str) -> None:
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path}: permission denied")


def _walk_dir(top: str, base: str, add: Callable[[str, str, os.stat_result], None],
              add_dir: Callable[[str, str], None]) -> None:
    seen: set[tuple[int, int]] = set()

    def walk(directory: str, rel: str) -> None:
        st = os.stat(directory)
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            raise UsageError(f"directory loop at {directory} (a symlink points back up)")
        seen.add(ident)
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise UsageError(f"cannot list {directory}: {exc.strerror}") from None
        if not names:
            add_dir(rel, directory)  # kept as a name: it holds nothing to store
        for n in names:
            path = os.path.join(directory, n)
            try:
                cst = os.stat(path)
            except FileNotFoundError:
                raise UsageError(f"{path} is a broken symlink") from None
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
            child = f"{rel}/{n}" if rel else n
            if stat.S_ISDIR(cst.st_mode):
                walk(path, child)
            elif stat.S_ISREG(cst.st_mode):
                _check_readable(path)
                add(child, path, cst)
            else:
                raise UsageError(f"{path} is a FIFO, socket or device: only regular files "
                                 "and directories can be saved")
        seen.discard(ident)

    walk(top, base)


def check_info(info: Any, max_bytes: int) -> dict[str, Any]:
    """Validate ``info``: a mapping with string keys (no '.'), YAML-safe values, bounded."""
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise UsageError(f"info must be a mapping, got {type(info).__name__}")

    def check(value: Any, where: str, depth: int = 0) -> Any:
        if depth > 32:
            raise UsageError(f"info{where}: nested too deeply (or recursive)")
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or not k:
                    raise UsageError(f"info{where}: keys must be non-empty strings, got {k!r}")
                if "." in k:
                    raise UsageError(f"info{where}: key {k!r} contains '.', which separates "
                                     "nested keys in queries; use nesting or '_'")
                out[k] = check(v, f"{where}.{k}", depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [check(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UsageError(f"info{where}: {value} is not a finite number")
            return value
        if isinstance(value, datetime):
            return value.isoformat()
        raise UsageError(f"info{where}: {type(value).__name__} values cannot be stored "
                         "(use str, int, float, bool, None, lists and mappings)")

    clean = check(info, "")
    size = len(yaml.safe_dump(clean, allow_unicode=True).encode())
    if size > max_bytes:
        raise UsageError(f"info is {size} bytes as YAML; the limit is {max_bytes} "
                         "(ELLIPTIO_MAX_INFO_BYTES): save large data as a file instead")
    return clean


def check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        if not isinstance(t, str) or not t.strip():
            raise UsageError(f"tags must be non-empty strings, got {t!r}")
        t = t.strip()
        if "/" in t or t in (".", "..") or any(ord(c) < 32 for c in t) or len(t) > MAX_TAG_LEN:
            raise UsageError(f"tag {t!r} is not allowed: no '/', control characters, '.' or "
                             f"'..', at most {MAX_TAG_LEN} characters")
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise UsageError(f"at most {MAX_TAGS} tags")
    return out


def _ids(values: Any, what: str) -> list[str]:
    out: list[str] = []
    if isinstance(values, (str, Artifact)):
        values = [values]
    for v in values:
        v = v.id if isinstance(v, Artifact) else v
        aid = check_id(v)
        if aid not in out:
            out.append(aid)
    return out


class Lake:
    """One store and one catalogue, opened lazily from :class:`Settings`."""

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None,
                 catalogue: Catalogue | None = None) -> None:
        self.settings = settings or Settings.load()
        self._store = store
        self._catalogue = catalogue
        self._lock = threading.Lock()

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
        if self._catalogue is not None:
            self._catalogue.close()
        if self._store is not None:
            self._store.close()

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
            parents = lineage.current()
        else:
            parents = _ids(based_on, "based_on")
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
                import hashlib

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

        def store_one(e: Entry) -> dict[str, Any]:
            staged = store.stage(f"{prefix}/{e.name}", e.source, progress)
            try:
                d = staged.digest
                with claim:
                    key = by_digest.get((d.sha256, d.size))
                if key is None:
                    existing = catalogue_object(catalogue, d.sha256, d.size)
                    if existing and store.exists(existing):
                        key = existing
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
        day = f"{id_time(artifact_id):%Y/%m/%d}/"
        for key in self.store.list_metadata(day):
            if key.split("/")[-3] == artifact_id:
                return load_metadata(self.store.read_bytes(key), key)
        return None

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


def catalogue_object(catalogue: Catalogue, sha256: str, size: int) -> str | None:
    try:
        return catalogue.find_object(sha256, size)
    except CatalogueError as exc:  # dedup is an optimisation; never fail a save for it
        log.debug("dedup lookup failed: %s", exc)
        return None


# -- the default lake and the module-level functions ------------------------------------
_default: tuple[Settings, Lake] | None = None
_default_lock = threading.Lock()


def default_lake() -> Lake:
    """The lake of the current configuration (re-opened when the configuration changes)."""
    global _default
    settings = Settings.load()
    with _default_lock:
        if _default is None or _default[0] != settings:
            if _default is not None:
                _default[1].close()
            _default = (settings, Lake(settings))
        return _default[1]


def save(files: SourceSpec, info: Mapping[str, Any] | None = None, *,
         tags: Iterable[str] | str | None = None, based_on: Iterable[Any] | None = None,
         progress: Callable[[int], None] | None = None, **kwinfo: Any) -> Artifact:
    """Save *files* as one new immutable, locked artifact and return it.

    *files*: a path, a list of paths (directories recursively, keeping their name), or a
    mapping ``{name in artifact: local path}``. *info*: metadata (keyword arguments are
    merged into it, so ``type="model"`` lands in ``info["type"]``). *tags*: strings.
    *based_on*: ids or artifacts; by default every artifact this process loaded. Provenance
    is captured automatically. Nothing is written if an input is invalid.
    """
    return default_lake().save(files, info, tags=tags, based_on=based_on, progress=progress,
                               **kwinfo)


def load(artifact_id: str | Artifact) -> Artifact:
    """The artifact with this id (or unique id prefix); recorded as used by this process."""
    return default_lake().load(artifact_id)


def search(query: Query | str | None = None, **fields: Any) -> list[Artifact]:
    """Artifacts matching the query, newest first (default limit 100; ``limit=0`` or
    ``None``: all).

    Fields: user, since, until, files (file), tags (tag), type, info={...}, based_on,
    ancestor_of, transitive, depth, text, limit, order, after. Or a text query like
    ``"user=andy,since=10d,file=*.txt,tag=*dataset*"``.
    """
    return default_lake().search(query, **fields)


class ArtifactBuilder:
    """The builder form: ``create_artifact(tags=[...]).save_files(["x"], type="model")``."""

    def __init__(self, lake: Lake | None, info: Mapping[str, Any] | None, tags: Any,
                 based_on: Any) -> None:
        self._lake, self._info, self._tags, self._based_on = lake, dict(info or {}), tags, \
            based_on
        self.artifact: Artifact | None = None

    def save_files(self, files: SourceSpec, *, tags: Any = None, based_on: Any = None,
                   progress: Callable[[int], None] | None = None, **kwinfo: Any) -> Artifact:
        if self.artifact is not None:
            raise Immutable(f"this builder already saved artifact {self.artifact.id}; "
                            "artifacts are immutable: create a new one")
        info = {**self._info, **kwinfo}
        all_tags = list(check_tags(self._tags)) + [t for t in check_tags(tags)
                                                   if t not in check_tags(self._tags)]
        lake = self._lake or default_lake()
        self.artifact = lake.save(files, info, tags=all_tags,
                                  based_on=based_on if based_on is not None else self._based_on,
                                  progress=progress)
        return self.artifact


def create_artifact(info: Mapping[str, Any] | None = None, *, tags: Any = None,
                    based_on: Any = None, **kwinfo: Any) -> ArtifactBuilder:
    """Start an artifact; ``.save_files(files, **info)`` saves it (once)."""
    return ArtifactBuilder(None, {**(info or {}), **kwinfo}, tags, based_on)



