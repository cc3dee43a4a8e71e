"""``eio://`` URLs: a read-only fsspec filesystem over the lake's artifacts.

``eio://<id>/<path>`` is one file of an artifact, ``eio://<id>/`` the artifact as a
directory (its files' directories included, and its empty directories); ``<id>`` may be
a unique prefix of at least 6 characters, as everywhere else (:meth:`Lake.resolve_id`).
fsspec finds the protocol through the ``fsspec.specs`` entry point, so pandas, pyarrow,
DuckDB (``duckdb.register_filesystem(fsspec.filesystem("eio"))``) and polars open the URLs
as they are. The lake is the default lake of the configuration
(:func:`elliptio.api.default_lake`, looked up at every call, so a changed configuration is
followed) unless one is given: ``fsspec.filesystem("eio", lake=lake)`` or
``storage_options={"lake": lake}``.

- **Lineage.** Opening a file records its artifact as used by this process, as
  :func:`elliptio.load` does: the next save is ``based_on`` it. Listing, ``info`` and
  ``glob`` record nothing.
- **Ranged reads.** A file is an :class:`fsspec.spec.AbstractBufferedFile` whose ranges
  come from :meth:`Store.read_range` (on S3, ranged GETs). Reads that continue in order
  from the start of the file get read-ahead (:class:`elliptio.urlfs_read.InOrderReads`:
  a first block of :data:`BLOCK_SIZE`, then the store's own reader read in order — on
  S3 one streaming GET — by a fetch thread, hashed in a thread of its own); any other
  read (a Parquet footer, a column chunk) fetches exactly the bytes asked for, so a
  column subset reads only those column chunks.
- **Verified.** Bytes handed over in order from the start are hashed
  (:class:`elliptio.verified.InOrderCheck`, the one rule of every reader): the read that
  would hand over the last byte of a file whose bytes do not match its recorded sha256
  raises ``IntegrityError`` instead (and so does that read again). Ranges read elsewhere
  cannot be checked against a whole-file digest and are served as they are.
- **Read-only, clear errors.** Unknown, malformed or ambiguous ids and missing paths are
  ``FileNotFoundError`` with the library's message; opening for writing, ``rm``,
  ``mkdir``, ``put``, ``mv``, ``touch`` … are ``PermissionError``. A file entry that breaks
  the store's rules (:func:`elliptio.layout.entry_problem`) is refused with
  ``IntegrityError`` before a byte is read; store and catalogue failures are the library's
  ``StorageError``/``CatalogueError``.

The artifact's captured logs and ``.eio/metadata.yaml`` are not part of the tree
(``Artifact.logs`` and ``Artifact.metadata`` give them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from . import lineage
from .artifact import Artifact, ArtifactFile
from .errors import IntegrityError, NotFound, UsageError
from .lake import Lake
from .urlfs_read import InOrderReads
from .verified import InOrderCheck

__all__ = ["BLOCK_SIZE", "EioFile", "EioFileSystem"]

#: read-ahead of a file read in order from its start (one ranged GET each)
BLOCK_SIZE = 8 << 20
#: artifacts whose file index a filesystem keeps (metadata of an id never changes)
CACHED_ARTIFACTS = 64
READ_ONLY = "eio:// is read-only: artifacts are immutable"


@dataclass(frozen=True)
class _Tree:
    """An artifact's files by path and its directories (children by name)."""

    artifact: Artifact
    files: dict[str, ArtifactFile]
    dirs: dict[str, dict[str, bool]]  # directory ("" = the artifact) -> child -> is a dir

    @classmethod
    def of(cls, artifact: Artifact) -> _Tree:
        files = dict(artifact.files.items())
        dirs: dict[str, dict[str, bool]] = {"": {}}

        def add(path: str, is_dir: bool) -> None:
            parent, _, name = path.rpartition("/")
            if parent not in dirs:
                add(parent, True)
            dirs[parent][name] = is_dir
            if is_dir:
                dirs.setdefault(path, {})

        for path, f in files.items():
            if f.problem is None:  # refused entries are not listed (open says why)
                add(path, False)
        for d in artifact.dirs:
            add(d, True)
        return cls(artifact, files, dirs)


class EioFileSystem(AbstractFileSystem):
    """``eio://<id>/<path>``: the lake's artifacts, read-only (module docstring)."""

    protocol = "eio"
    root_marker = ""

    def __init__(self, lake: Lake | None = None, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        self._lake = lake
        self._trees: OrderedDict[tuple[int, str], _Tree] = OrderedDict()
        self._trees_lock = threading.Lock()

    @property
    def lake(self) -> Lake:
        if self._lake is not None:
            return self._lake
        from .api import default_lake  # api imports the lake, as this module does

        return default_lake()

    # -- paths ---------------------------------------------------------------------------
    def _split(self, path: str) -> tuple[str, str]:
        """(id as written, path inside the artifact) of *path*, with or without eio://."""
        text = self._strip_protocol(path).strip("/")
        aid, _, rel = text.partition("/")
        return aid, rel.strip("/")

    def _tree(self, id_text: str) -> _Tree:
        lake = self.lake
        try:
            aid = lake.resolve_id(id_text)
            key = (id(lake), aid)
            with self._trees_lock:
                tree = self._trees.get(key)
                if tree is not None and tree.artifact._lake is lake:
                    self._trees.move_to_end(key)
                    return tree
            artifact = lake.get(aid)
            if artifact is None:
                raise NotFound(f"no artifact {aid}")
        except (NotFound, UsageError) as exc:
            raise FileNotFoundError(f"eio://{id_text}/: {exc}") from None
        tree = _Tree.of(artifact)
        with self._trees_lock:
            self._trees[key] = tree
            while len(self._trees) > CACHED_ARTIFACTS:
                self._trees.popitem(last=False)
        return tree

    def _file_info(self, id_text: str, f: ArtifactFile, created: datetime) -> dict[str, Any]:
        return {"name": f"{id_text}/{f.path}", "size": f.size, "type": "file",
                "sha256": f.sha256, "artifact": f.artifact_id, "created": created,
                "mtime": created}

    def _dir_info(self, name: str, created: datetime | None = None) -> dict[str, Any]:
        return {"name": name, "size": 0, "type": "directory", "created": created,
                "mtime": created}

    # -- reading the tree ----------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        id_text, rel = self._split(path)
        if not id_text:
            return self._dir_info("")
        tree = self._tree(id_text)
        created = tree.artifact.created
        f = tree.files.get(rel)
        if f is not None and f.problem is None:
            return self._file_info(id_text, f, created)
        if rel in tree.dirs:
            return self._dir_info(f"{id_text}/{rel}".rstrip("/"), created)
        raise FileNotFoundError(f"eio://{id_text}/{rel}: artifact {tree.artifact.id} has no "
                                f"file or directory {rel!r}")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        id_text, rel = self._split(path)
        if not id_text:
            raise FileNotFoundError("eio:// lists one artifact at a time: eio://<id>/ "
                                    "(find ids with eio.search or `eio search`)")
        tree = self._tree(id_text)
        created = tree.artifact.created
        children = tree.dirs.get(rel)
        if children is None:  # a file lists as itself
            info = self.info(path)
            return [info if detail else info["name"]]
        base = f"{id_text}/{rel}".rstrip("/")
        out = []
        for name, is_dir in sorted(children.items()):
            child = f"{rel}/{name}" if rel else name
            out.append(self._dir_info(f"{base}/{name}", created) if is_dir
                       else self._file_info(id_text, tree.files[child], created))
        return out if detail else [o["name"] for o in out]

    def ukey(self, path: str) -> str:
        """The file's recorded sha256 (artifacts never change, so neither does this)."""
        info = self.info(path)
        return str(info.get("sha256") or info["name"])

    def created(self, path: str) -> datetime:
        return self._when(path)

    def modified(self, path: str) -> datetime:
        return self._when(path)

    def _when(self, path: str) -> datetime:
        created = self.info(path).get("created")
        if created is None:
            raise FileNotFoundError(f"eio:// is not an artifact: {path!r}")
        return created  # type: ignore[no-any-return]

    # -- opening ---------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> EioFile:
        if mode != "rb":
            raise PermissionError(f"{READ_ONLY}: cannot open eio://{self._strip_protocol(path)}"
                                  f" with mode {mode!r}")
        id_text, rel = self._split(path)
        if not id_text:
            raise FileNotFoundError("eio:// needs an artifact id: eio://<id>/<path>")
        tree = self._tree(id_text)
        f = tree.files.get(rel)
        if f is None:
            what = (f"{rel!r} is a directory, not a file" if rel in tree.dirs
                    else f"has no file or directory {rel!r}")
            raise FileNotFoundError(f"eio://{id_text}/{rel}: artifact {tree.artifact.id} "
                                    f"{what}")
        key = f._checked()  # IntegrityError for an entry the store's rules refuse
        lineage.record(f.artifact_id)  # as eio.load does: the next save is based on it
        return EioFile(self, self._file_info(id_text, f, tree.artifact.created), f, key,
                       block_size=block_size, cache_type=kwargs.get("cache_type"),
                       cache_options=cache_options)

    # -- everything that would write: refused ----------------------------------------------
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"{READ_ONLY}; save a new artifact with eio.save")

    mkdir = makedirs = rmdir = rm_file = _rm = rm = cp_file = copy = mv = _refuse
    put_file = put = pipe_file = pipe = touch = _refuse


class EioFile(AbstractBufferedFile):
    """One artifact file opened through ``eio://``: ranged reads from the store, checked in
    order against the recorded sha256 (module docstring)."""

    DEFAULT_BLOCK_SIZE = BLOCK_SIZE

    def __init__(self, fs: EioFileSystem, info: dict[str, Any], file: ArtifactFile, key: str, *,
                 block_size: int | None = None, cache_type: str | None = None,
                 cache_options: dict[str, Any] | None = None) -> None:
        self._store = file._lake.store
        self._key = key
        what = f"eio://{file.artifact_id}/{file.path}"
        self._check = InOrderCheck(what, file.sha256, file.size)
        super().__init__(fs, info["name"], mode="rb", block_size=block_size,
                         cache_type=cache_type or "none", cache_options=cache_options,
                         size=file.size)
        # the default: read-ahead only in order; fsspec's "none" cache fetches other reads
        # as asked. An explicit cache_type is fsspec's caching instead, for every read.
        self._in_order = (InOrderReads(self._fetch_range, self._open_stream, self._check,
                                       self.size, self.blocksize)
                          if cache_type is None else None)
        self._details = info

    def _fetch_range(self, start: int, end: int) -> bytes:
        want = min(end, self.size) - start
        if want <= 0:
            return b""
        try:
            data = self._store.read_range(self._key, start, want)
        except NotFound:
            raise FileNotFoundError(f"{self._check.what}: the store has no object "
                                    f"{self._key}") from None
        if len(data) < want:  # fewer only at the store's end: shorter than recorded
            raise IntegrityError(f"{self._check.what}: the store holds "
                                 f"{start + len(data)} bytes, the catalogue recorded "
                                 f"{self.size}")
        return data

    def _open_stream(self, start: int) -> BinaryIO:
        """The store's reader of the file from *start* (in order: on S3 one streaming GET)."""
        try:
            reader = self._store.open(self._key)
        except NotFound:
            raise FileNotFoundError(f"{self._check.what}: the store has no object "
                                    f"{self._key}") from None
        reader.seek(start)
        return reader

    def read(self, length: int | None = -1) -> bytes:
        pos = self.loc
        asked = self.size - pos if length is None or length < 0 else int(length)
        ahead = self._in_order
        if ahead is not None and 0 < asked and ahead.serves(pos) and not self.closed:
            data = ahead.read(pos, asked)  # checked piece by piece as it is put together
            self.loc = pos + len(data)
            ahead.next = max(ahead.next, self.loc)
            return data
        data = super().read(length)
        try:
            self._check.passing(pos, data, asked)
        except IntegrityError:
            self.loc = pos  # nothing of this read was handed over
            raise
        return data  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._in_order is not None:
            self._in_order.close()
        super().close()

