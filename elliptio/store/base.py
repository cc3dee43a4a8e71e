"""The blob-store interface every store implements (local directory, S3, in memory).

Keys are ``/``-separated relative paths (see :mod:`elliptio.layout`). A store knows
nothing of artifacts, catalogues or lineage: it holds bytes under keys, and it never
overwrites a key that exists. Errors of the library underneath (OSError, botocore) are
translated here at the edge into :mod:`elliptio.errors` exceptions.

Retrying is done in one place, :func:`elliptio.store.retry.retry`, and only inside
store implementations; callers never loop (the few places allowed a second attempt are
listed, with why, in :mod:`elliptio.store.retry`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import StorageError
from ..layout import parse_key

#: called with the number of bytes just transferred (for progress bars)
Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Digest:
    """What a store measured while reading a source file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class StoredObject:
    """One thing a store holds under a key, with what ``eio fsck`` needs to judge an orphan.

    *mtime* is the POSIX time it was last written. *kind* is ``"object"`` (a committed
    key, or on S3 one version of it), ``"marker"`` (an S3 delete marker), ``"upload"`` (an
    S3 incomplete multipart upload; *mtime* is its newest part), ``"temporary"`` (a local
    ``.eio-tmp-*`` file being written or left by a kill) or ``"directory"`` (a local
    directory, which may be all a save has made yet). *version* is the S3 version id, or
    the upload id of an upload; ``""`` elsewhere. Two listings of an unchanged prefix give
    equal objects, so comparing them shows whether anything was written in between.
    """

    key: str
    size: int
    mtime: float
    version: str = ""
    kind: str = "object"


def is_metadata_key(key: str) -> bool:
    """True for an artifact's commit point, ``.../.eio/metadata.yaml``: the one kind of key
    :meth:`Store.remove_orphan` never deletes, whatever it is given."""
    return key == ".eio/metadata.yaml" or key.endswith("/.eio/metadata.yaml")


class Staged(abc.ABC):
    """A file read (and hashed) by :meth:`Store.stage`, not yet visible under its key.

    Exactly one of :meth:`commit` and :meth:`discard` must be called. ``commit`` makes the
    bytes visible under the key and locks them; ``discard`` drops them (for dedup: the
    content already exists elsewhere in the lake).
    """

    key: str
    digest: Digest

    @abc.abstractmethod
    def commit(self, progress: Progress = None) -> None:
        """Make the staged bytes visible and locked under :attr:`key`.

        Raises :class:`~elliptio.errors.Immutable` if the key exists,
        :class:`~elliptio.errors.IntegrityError` if the source changed since staging,
        :class:`~elliptio.errors.StorageError` on failure after retries.
        """

    @abc.abstractmethod
    def discard(self) -> None:
        """Drop the staged bytes. Never fails loudly; may be called after a failed commit."""


def check_key(key: str) -> list[str]:
    """The components of *key*, or ``StorageError`` for a key no store accepts (empty,
    absolute, with an empty, ``.`` or ``..`` component): the one rule of every store."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid store key {key!r}")
    return parts


def artifact_dirs_of(keys: Iterable[str]) -> Iterator[str]:
    """The distinct ``YYYY/MM/DD/<user>/<id>`` prefixes of the *keys* that lie inside an
    artifact of the layout (:func:`~elliptio.layout.parse_key`), in first-seen order."""
    seen: set[str] = set()
    for key in keys:
        k = parse_key(key)
        if k is not None and k.path and k.prefix not in seen:
            seen.add(k.prefix)
            yield k.prefix


class Store(abc.ABC):
    """A place that holds immutable bytes under keys.

    Contract, for every implementation:

    - ``put_*``/``stage().commit()`` never overwrite an existing key (``Immutable``), and
      leave the object locked (read-only file / S3 Object Lock retention).
    - A key becomes visible whole or not at all; an interrupted write leaves at most an
      invisible temporary (local) or an incomplete multipart upload (S3).
    - Reads raise ``NotFound`` for a missing key, ``StorageError`` after retries otherwise.
    - All methods are safe to call from several threads at once.
    - Nothing here deletes a committed key, except :meth:`remove_orphan`, which refuses
      to touch a prefix that holds an artifact's ``metadata.yaml`` and never deletes a
      ``metadata.yaml`` key.
    """

    #: the URL this store was opened with (``file:///...``, ``s3://bucket/prefix``)
    url: str

    @abc.abstractmethod
    def stage(self, key: str, source: str, progress: Progress = None) -> Staged:
        """Read the local file *source* once, hashing it; return a :class:`Staged`.

        Implementations may already copy the bytes to an invisible temporary here (local
        store) or only hash them (S3, where an upload cannot be taken back once locked).
        *progress* sees the bytes where they move: here (local) or in ``commit`` (S3).
        """

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically and lock it. ``Immutable`` if the key exists."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if *key* is a committed object."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes of *key*; ``NotFound`` if missing."""

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to *length* bytes from *offset* (fewer only at the end of the object)."""

    def read_bytes(self, key: str) -> bytes:
        """The whole object (for small objects such as metadata and logs)."""
        return self.read_range(key, 0, self.size(key))

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable, seekable binary file object over *key*."""

    @abc.abstractmethod
    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        """Copy *key* to the local path *dest* (written via a temporary and renamed).

        Returns the digest measured while writing; the caller compares it with the
        recorded one.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every committed key under *prefix* (``""`` = the whole store), in no set order."""

    @abc.abstractmethod
    def list_stat(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every committed key under *prefix*, as :meth:`list` gives them, with its size and
        last-modified time (one listing: no request per key)."""

    def inventory(self, prefix: str) -> list[StoredObject]:
        """Everything under the artifact directory *prefix* that :meth:`remove_orphan`
        would remove: the committed keys and what interrupted writes left (local
        temporaries and directories; S3 versions, delete markers and incomplete uploads).
        For ``eio fsck``, which judges an orphan's age by its newest entry and removes only
        what it listed."""
        return list(self.list_stat(prefix.rstrip("/") + "/"))

    def list_metadata(self, prefix: str = "") -> Iterator[str]:
        """Every ``.../.eio/metadata.yaml`` key under *prefix*."""
        for key in self.list(prefix):
            if key.endswith("/.eio/metadata.yaml"):
                yield key

    def list_artifact_dirs(self, prefix: str = "") -> Iterator[str]:
        """Every ``YYYY/MM/DD/<user>/<id>`` prefix holding anything, committed or left by
        an interrupted save (for ``eio fsck``)."""
        return artifact_dirs_of(self.list(prefix))

    @abc.abstractmethod
    def url_for(self, key: str) -> str:
        """A URL naming *key* for other tools (``file:///abs/path`` or ``s3://bucket/key``)."""

    def s3_url(self, key: str) -> str | None:
        """``s3://`` URL of *key*, or None when the store is not S3."""
        return None

    def presign(self, key: str, expires: int = 3600) -> str:
        """A time-limited HTTPS URL for *key*; only S3 stores can make one."""
        from ..errors import UsageError

        raise UsageError(f"{self.url} is not an S3 store: no presigned URL")

    @abc.abstractmethod
    def remove_orphan(self, prefix: str, listed: Collection[StoredObject] | None = None
                      ) -> int:
        """Remove what an interrupted save left under *prefix* (an artifact directory).

        Refuses (``Immutable``) if ``<prefix>/.eio/metadata.yaml`` exists, checked after
        *listed* was made and before anything is deleted. With *listed* (an
        :meth:`inventory` of *prefix*) only those entries are removed, and on stores that
        can tell, only if unchanged since: anything written after the listing stays.
        Without it the store lists the prefix itself first. A ``metadata.yaml`` key is
        never deleted, even if listed; nothing outside *prefix* is touched. Returns the
        number of objects removed; objects whose lock forbids removal are left and counted
        as not removed.
        """

    def seal(self, prefix: str) -> None:
        """Called once an artifact's ``metadata.yaml`` is written under *prefix*; a store may
        lock the artifact's directory further (the local store makes it read-only)."""

    @abc.abstractmethod
    def check(self) -> str:
        """Check the store is usable; return a one-line description. Raise if not."""

    def init(self) -> str:
        """Create the store if needed (``eio init``), or check an existing one; return what
        was done, in one line for the user. Raise with what is missing if unusable."""
        return self.check()

    def close(self) -> None:
        """Release connections and thread pools."""
