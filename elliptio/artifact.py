"""The in-memory model of an artifact and (de)serialisation of ``metadata.yaml``.

An :class:`Artifact` is a read-only view of one committed artifact: its metadata (a plain
dict, the content of ``metadata.yaml``), its files, its empty directories and its
captured logs. It holds the :class:`ArtifactSource` it came from (a
:class:`~elliptio.lake.Lake`) to reach the bytes and its relatives.

The format of ``metadata.yaml`` (``elliptio: 1``), keys in this order::

    elliptio    1, the format version (FORMAT_VERSION)
    id          the artifact id (26 Crockford base32 characters)
    user        who saved it (the store layout's user segment)
    created     ISO-8601 UTC time, milliseconds, ``Z``
    prefix      the store key prefix ``YYYY/MM/DD/<user>/<id>``
    info        the user's metadata (a mapping; ``info.type`` is the type)
    tags        [str]
    based_on    [artifact id]
    files       [{path, size, sha256, object}]: relative path inside the artifact; bytes;
                hex digest; store key of the bytes (another artifact's when deduplicated)
    dirs        [path]: the directories that hold no file, relative paths like file
                paths, sorted; only those no file or other entry implies (``run/a/b``,
                not also ``run/a``). Written only when there are some: an artifact
                without the key (every one saved before it existed) has none
    logs        {name: {path, size, sha256, object}}: captured logs under ``.eio/logs/``
    provenance  what made it (python, platform, host, argv, git, pip freeze …)

Readers ignore keys they do not know, so an older ElliptIO reads an artifact with
``dirs`` as one without its empty directories. ``dirs`` entries read back from the store
are untrusted like file paths: :func:`load_metadata` and :attr:`Artifact.dirs` refuse one
that save would not have written (see :func:`stored_dirs`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import yaml

from . import layout
from .artifactdiff import Comparisons
from .errors import IntegrityError, NotFound, UsageError
from .verified import verified_open

if TYPE_CHECKING:
    from .query import Query
    from .store import Store

FORMAT_VERSION = 1
# libyaml when available: metadata of an artifact with 10,000 files dumps in ms, not seconds
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_metadata(md: Mapping[str, Any]) -> bytes:
    """``metadata.yaml`` bytes: block style, keys in the order given, unicode kept."""
    return yaml.dump(dict(md), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100).encode()


def load_metadata(data: bytes, where: str = "metadata.yaml") -> dict[str, Any]:
    """Parse and minimally validate ``metadata.yaml``; ``IntegrityError`` if malformed."""
    try:
        md = yaml.load(data, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise IntegrityError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(md, dict):
        raise IntegrityError(f"{where}: not a mapping")
    for key in ("id", "user", "created", "prefix", "files"):
        if key not in md:
            raise IntegrityError(f"{where}: missing {key!r}")
    if not isinstance(md["files"], list) or not all(
        isinstance(f, dict) and {"path", "size", "sha256", "object"} <= f.keys()
        for f in md["files"]
    ):
        raise IntegrityError(f"{where}: malformed 'files'")
    stored_dirs(md, where)
    return md


def stored_dirs(md: Mapping[str, Any], where: str) -> list[str]:
    """The ``dirs`` of metadata read back (from the store or a catalogue row: untrusted),
    or ``[]`` without the key. ``IntegrityError`` unless every entry is a name save
    writes: one that :func:`~elliptio.layout.check_name` accepts and leaves as it is (no
    ``..``, not absolute, no ``.eio`` component …), not a file of the artifact nor below
    one. So a download built from it stays inside its destination."""
    raw = md.get("dirs")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise IntegrityError(f"{where}: malformed 'dirs'")
    try:
        for d in raw:
            if layout.check_name(d) != d:
                raise UsageError(f"directory name {d!r} is not normalised")
        layout.check_dirs(raw, (str(f["path"]) for f in md.get("files") or []
                                if isinstance(f, Mapping)))
    except UsageError as exc:
        raise IntegrityError(f"{where}: bad 'dirs' entry: {exc}") from None
    return list(raw)


class ArtifactSource(Protocol):
    """What an artifact needs of the lake it came from: the store holding its bytes, and
    lookups of the artifacts it is related to. :class:`~elliptio.lake.Lake` is one."""

    @property
    def store(self) -> Store: ...

    def get(self, artifact_id: str) -> Artifact | None: ...

    def search(self, query: Query | str | None = None, **kwargs: Any) -> list[Artifact]: ...


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact (or one captured log)."""

    artifact_id: str
    path: str
    size: int
    sha256: str
    object: str  # store key of the bytes (another artifact's when deduplicated)
    _lake: ArtifactSource = field(repr=False, compare=False)
    deduplicated: bool = False  # True when the bytes are another artifact's object
    #: why the entry breaks the store's rules (layout.entry_problem): then every read
    #: refuses it with IntegrityError, whatever the catalogue holds
    problem: str | None = field(default=None, compare=False)

    def _checked(self) -> str:
        if self.problem is not None:
            raise IntegrityError(f"{self.artifact_id}: refused: {self.problem}")
        return self.object

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def url(self) -> str:
        """Where the bytes are: ``file:///...`` (local store) or ``s3://bucket/key``."""
        return self._lake.store.url_for(self._checked())

    @property
    def s3_url(self) -> str | None:
        """``s3://bucket/key`` (pandas/fsspec read it with the standard AWS environment), or
        None on a local store."""
        return self._lake.store.s3_url(self._checked())

    @property
    def eio_url(self) -> str:
        """``eio://<artifact id>/<path>``, which pandas, pyarrow, DuckDB and polars open
        through fsspec (:mod:`elliptio.urlfs`): reading it records the artifact as used,
        as :func:`elliptio.load` does, and checks the bytes against the sha256."""
        return f"eio://{self.artifact_id}/{self.path}"

    def presign(self, expires: int = 3600) -> str:
        """A presigned HTTPS URL valid for *expires* seconds (S3 stores only)."""
        return self._lake.store.presign(self._checked(), expires)

    def open(self) -> BinaryIO:
        """A readable, seekable binary file object. Read in order to its end, the bytes
        are checked against the recorded sha256: the read that would complete a file
        whose bytes differ raises ``IntegrityError`` (see :mod:`elliptio.verified`)."""
        raw = self._lake.store.open(self._checked())
        return verified_open(raw, f"{self.artifact_id}/{self.path}", self.sha256, self.size)

    def read_bytes(self) -> bytes:
        """The whole content, verified against the recorded sha256."""
        data = self._lake.store.read_bytes(self._checked())
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise IntegrityError(f"{self.artifact_id}/{self.path}: content does not match its "
                                 "recorded sha256")
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def download(self, dest: str | os.PathLike[str] = ".", *, progress: Any = None) -> Path:
        """Write the file to *dest* (a directory: the file keeps its base name), verified.

        An existing local file of that name is replaced (atomically, after the bytes were
        verified); the artifact itself is never touched.
        """
        target = Path(dest)
        if target.is_dir():
            target = target / self.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {target.parent}: {exc.strerror}") from exc
        digest = self._lake.store.download(self._checked(), str(target), progress)
        if digest.sha256 != self.sha256 or digest.size != self.size:
            target.unlink(missing_ok=True)
            raise IntegrityError(
                f"{self.artifact_id}/{self.path}: downloaded bytes do not match the recorded "
                f"sha256 (got {digest.sha256[:12]}…, want {self.sha256[:12]}…); nothing kept"
            )
        return target


class Files(Mapping[str, ArtifactFile]):
    """The files of an artifact by relative path; a KeyError names what exists."""

    def __init__(self, items: dict[str, ArtifactFile], what: str) -> None:
        self._items, self._what = items, what

    def __getitem__(self, key: str) -> ArtifactFile:
        try:
            return self._items[key]
        except KeyError:
            names = ", ".join(list(self._items)[:10]) or "none"
            raise FileNotInArtifact(f"{self._what} has no file {key!r} (it has: {names})") \
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Files {list(self._items)}>"


class FileNotInArtifact(NotFound, KeyError):
    """No such file or log in this artifact (a KeyError too, for Mapping semantics)."""

    def __str__(self) -> str:
        return str(self.args[0])


class LogNotFound(NotFound, AttributeError):
    """No such captured log (an AttributeError too, so ``hasattr`` works)."""


class Logs:
    """Captured logs by name, as attributes: ``a.logs.pip_freeze.download()``."""

    def __init__(self, items: dict[str, ArtifactFile], what: str) -> None:
        self._items, self._what = items, what

    def __getattr__(self, name: str) -> ArtifactFile:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise LogNotFound(f"{self._what} has no log {name!r} (it has: "
                              f"{', '.join(self._items) or 'none'})") from None

    __getitem__ = __getattr__

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __dir__(self) -> list[str]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"<Logs {list(self._items)}>"


class Artifact(Comparisons):
    """A committed, immutable artifact. ``metadata`` is the content of metadata.yaml."""

    def __init__(self, metadata: dict[str, Any], lake: ArtifactSource) -> None:
        self.metadata = metadata
        self._lake = lake
        self.catalogued = True  # False when the save could not update the catalogue

    def __repr__(self) -> str:
        return f"<Artifact {self.id} by {self.user} at {self.metadata.get('created')}, " \
               f"{len(self.metadata['files'])} file(s)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Artifact) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> str:
        return str(self.metadata["id"])

    @property
    def user(self) -> str:
        return str(self.metadata["user"])

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(str(self.metadata["created"]).replace("Z", "+00:00"))

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.metadata.get("info") or {})

    @property
    def type(self) -> str | None:
        t = self.info.get("type")
        return None if t is None else str(t)

    @property
    def tags(self) -> list[str]:
        return list(self.metadata.get("tags") or [])

    @property
    def based_on(self) -> list[str]:
        return list(self.metadata.get("based_on") or [])

    @property
    def prefix(self) -> str:
        return str(self.metadata["prefix"])

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.metadata.get("provenance") or {})

    @property
    def files(self) -> Files:
        items = (self._file(f) for f in self.metadata.get("files") or [])
        return Files({f.path: f for f in items}, f"artifact {self.id}")

    @property
    def dirs(self) -> list[str]:
        """The empty directories (relative paths, sorted); ``IntegrityError`` if the
        metadata names one that save would not have written."""
        return stored_dirs(self.metadata, f"artifact {self.id}")

    @property
    def logs(self) -> Logs:
        items = {}
        for name, entry in (self.metadata.get("logs") or {}).items():
            items[name] = self._file(entry, "log")
        return Logs(items, f"artifact {self.id}")

    def _file(self, entry: Any, kind: str = "file") -> ArtifactFile:
        problem = layout.entry_problem(self.metadata, entry, kind)
        if problem is not None:
            e = entry if isinstance(entry, Mapping) else {}
            return ArtifactFile(self.id, str(e.get("path", "?")), 0, "", "", self._lake,
                                problem=problem)
        obj = str(entry["object"])
        return ArtifactFile(self.id, str(entry["path"]), int(entry["size"]),
                            str(entry["sha256"]), obj, self._lake,
                            deduplicated=not obj.startswith(self.prefix + "/"))

    def parents(self) -> list[Artifact]:
        """The artifacts this one is based on that the catalogue knows."""
        return [a for a in (self._lake.get(i) for i in self.based_on) if a is not None]

    def children(self, transitive: bool = False) -> list[Artifact]:
        return self._lake.search(based_on=self.id, transitive=transitive, limit=None)

    def download(self, dest: str | os.PathLike[str] = ".", *, progress: Any = None,
                 paths: Iterable[str] | None = None) -> Path:
        """Download every file (or those of *paths*) to ``dest/<id>/`` keeping relative
        paths, verified, and (without *paths*) make its empty directories; returns that
        dir. Before anything is written, every chosen file and directory is checked: a
        refused entry (``layout.entry_problem``: a path such as ``../x`` or ``/abs``, an
        object outside the rules) or hostile ``dirs`` raise ``IntegrityError``; a target
        that would resolve outside ``dest/<id>/`` (a symlink planted there) too."""
        root = Path(dest) / self.id
        files = self.files
        chosen = [files[p] for p in paths] if paths is not None else list(files.values())
        dirs = self.dirs if paths is None else []
        for f in chosen:
            f._checked()
        for f in chosen:
            target = root / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.resolve().is_relative_to(root.resolve()):
                raise IntegrityError(f"{self.id}/{f.path}: would be written outside {root}")
            f.download(target, progress=progress)
        for d in dirs:
            try:
                (root / d).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {root / d}: {exc.strerror}") from exc
        return root
