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
  from the start of the file get read-ahead in blocks (:data:`BLOCK_SIZE`); any other
  read (a Parquet footer, a column chunk) fetches exactly the bytes asked for, so a
  column subset reads only those column chunks.
- **Verified.** Bytes handed over in order from the start are hashed
  (:class:`elliptio.verified.InOrderCheck`, the one rule of every reader): the read that
  would hand over the last byte of a file whose bytes do not match its recorded sha256
  raises ``IntegrityError`` instead. Ranges read elsewhere cannot be checked against a
  whole-file digest and are served as they are.
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsspec.caching import BaseCache
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from . import lineage
from .artifact import Artifact, ArtifactFile
from .errors import IntegrityError, NotFound, UsageError
from .lake import Lake
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


class _InOrderAhead(BaseCache):
    """Read-ahead for a file read in order from its start, nothing for other reads.

    A read that begins where the in-order reading from offset 0 stopped is served from a
    block of at least :attr:`blocksize` (or the read's own size: a large read is one GET
    handed over without a copy), and once a second block is needed the next one is
    fetched in a background thread while the reader works (hashes) on this one. Any other
    read fetches exactly its range. So a CSV read front to back costs one GET per block,
    and a Parquet reader (footer first, then column chunks) one GET per range it asks
    for, without bytes it did not ask for.
    """

    name = "eio-in-order"

    def __init__(self, blocksize: int, fetcher: Any, size: int) -> None:
        super().__init__(blocksize, fetcher, size)
        self._block = b""
        self._block_start = 0
        self._next = 0  # where reading in order from offset 0 continues
        self._ahead: tuple[int, Future[bytes]] | None = None  # (start, the next block)
        self._pool: ThreadPoolExecutor | None = None

    def _fetch(self, start: int | None, stop: int | None) -> bytes:
        start = 0 if start is None else start
        stop = self.size if stop is None else min(stop, self.size)
        if start >= stop:
            return b""
        b0 = self._block_start
        if b0 <= start and stop <= b0 + len(self._block):
            self.hit_count += 1
            out = self._block[start - b0:stop - b0]  # the whole block: no copy
        elif start == self._next:
            self.miss_count += 1
            out = self._in_order(start, stop)
        else:
            self.miss_count += 1
            return self.fetcher(start, stop)  # type: ignore[no-any-return]
        if start == self._next:
            self._next = start + len(out)
        return out

    def _in_order(self, start: int, stop: int) -> bytes:
        pieces = []
        pos = start
        while pos < stop:
            b0, b1 = self._block_start, self._block_start + len(self._block)
            if b0 <= pos < b1:
                pieces.append(self._block[pos - b0:min(stop, b1) - b0])
                pos += len(pieces[-1])
                continue
            n = max(self.blocksize, stop - pos)
            if self._ahead is not None and self._ahead[0] == pos:
                block = self._ahead[1].result()  # its error, if any, is this read's
                self._ahead = None
                if len(block) < min(n, self.size - pos):  # the read is larger than it
                    block += self.fetcher(pos + len(block), min(self.size, pos + n))
            else:
                self._drop_ahead()
                block = self.fetcher(pos, min(self.size, pos + n))
                if pos > 0 and self._pool is None:  # a second block: a streaming reader
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="eio-ahead")
            self._block, self._block_start = block, pos
        end = self._block_start + len(self._block)
        if self._pool is not None and self._ahead is None and end < self.size:
            n = max(self.blocksize, len(self._block))
            self._ahead = (end, self._pool.submit(self.fetcher, end,
                                                  min(self.size, end + n)))
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._block = b""


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
        if cache_type is None:  # the default: read-ahead only in order
            self.cache = _InOrderAhead(self.blocksize, self._fetch_range, self.size)
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

    def read(self, length: int | None = -1) -> bytes:
        pos = self.loc
        data = super().read(length)
        asked = self.size - pos if length is None or length < 0 else length
        try:
            self._check.passing(pos, data, asked)
        except IntegrityError:
            self.loc = pos  # nothing of this read was handed over
            raise
        return data  # type: ignore[no-any-return]

