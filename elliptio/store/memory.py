"""The in-memory store: a lake in the process's memory, for tests and trials.

``memory://<name>``: the stores opened with one name in one process share their objects
(``ELLIPTIO_STORE=memory://x`` reaches the same lake from every :class:`~elliptio.Lake`),
for as long as one of them exists, like SQLite's shared in-memory databases; ``memory://``
without a name is a lake of its own.

The contract and the semantics are the local store's (:mod:`.local`): :meth:`~MemoryStore.stage`
reads the source once, hashing it into a staged copy nobody sees, so what is committed is
what was hashed; ``commit`` and ``put_bytes`` publish a key whole and never over an
existing one (``Immutable``); :meth:`~MemoryStore.seal` closes an artifact's prefix to new
keys (the local store makes its directories read-only); nothing removes a committed key
but :meth:`~MemoryStore.remove_orphan`, which refuses a prefix holding ``metadata.yaml``.
Objects are ``bytes``: nobody can change one in place.

For tests, :attr:`MemoryStore.faults` (one for every store of the name) is called as
``faults(operation, key)`` before each operation (``stage``, ``commit``, ``put_bytes``,
``exists``, ``size``, ``read_range``, ``open``, ``download``, ``list`` (also for
``list_stat`` and ``inventory``),
``remove_orphan``, ``seal``), and what it raises, the operation raises, before anything
changed: a store made to fail without patching its internals. :attr:`MemoryStore.staged`
counts the staged copies neither committed nor discarded.
"""

from __future__ import annotations

import io
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import BinaryIO
from urllib.parse import quote, urlparse

from ..errors import ConfigError, Immutable, NotFound, StorageError
from ..redact import redact_url
from .base import Digest, Progress, Staged, Store, StoredObject, check_key, is_metadata_key
from .files import copy_hashing, download_from, os_error

#: called as ``faults(operation, key)`` before each operation; raises to make it fail
Faults = Callable[[str, str], None]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class _Objects:
    """What every store of one name shares."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}  # key -> when it was published (POSIX time)
        self.sealed: set[str] = set()  # artifact prefixes closed to new keys
        self.staged = 0
        self.faults: Faults | None = None


_lakes: weakref.WeakValueDictionary[str, _Objects] = weakref.WeakValueDictionary()
_lakes_lock = threading.Lock()


def _objects_named(name: str) -> _Objects:
    with _lakes_lock:
        objects = _lakes.get(name)
        if objects is None:
            objects = _lakes[name] = _Objects()
        return objects


class _MemoryStaged(Staged):
    def __init__(self, store: MemoryStore, key: str, data: bytes, digest: Digest) -> None:
        self.store, self.key, self.digest = store, key, digest
        self._data: bytes | None = data

    def commit(self, progress: Progress = None) -> None:
        self.store._fault("commit", self.key)
        data = self._release()
        if data is None:
            raise StorageError(f"{self.key}: nothing staged (committed or discarded already)")
        self.store._publish(self.key, data)
        if progress:
            progress(self.digest.size)

    def discard(self) -> None:
        self._release()

    def _release(self) -> bytes | None:
        objects = self.store._objects
        with objects.lock:
            data, self._data = self._data, None
            if data is not None:
                objects.staged -= 1
        return data


class MemoryStore(Store):
    """Objects in a dictionary shared by name. See the module docstring."""

    def __init__(self, url: str = "memory://") -> None:
        parsed = urlparse(url)
        if parsed.scheme != "memory" or parsed.path not in ("", "/") or parsed.query \
                or parsed.fragment or (parsed.netloc and not _NAME.fullmatch(parsed.netloc)):
            raise ConfigError(f"not an in-memory store URL (want memory://name): {redact_url(url)}")
        self.name = parsed.netloc or f"private-{secrets.token_hex(8)}"
        self.url = f"memory://{self.name}"
        self._objects = _objects_named(self.name)

    @property
    def faults(self) -> Faults | None:
        """The test hook of every store of this name (see the module docstring)."""
        return self._objects.faults

    @faults.setter
    def faults(self, hook: Faults | None) -> None:
        self._objects.faults = hook

    @property
    def staged(self) -> int:
        """Staged copies neither committed nor discarded (a save that failed has none)."""
        return self._objects.staged

    # -- helpers ---------------------------------------------------------------------
    def _fault(self, operation: str, key: str) -> None:
        hook = self._objects.faults
        if hook is not None:
            hook(operation, key)

    def _get(self, key: str) -> bytes:
        check_key(key)
        with self._objects.lock:
            data = self._objects.data.get(key)
        if data is None:
            raise NotFound(f"{key}: no such object")
        return data

    def _publish(self, key: str, data: bytes) -> None:
        parts = check_key(key)
        objects = self._objects
        with objects.lock:
            sealed = next((p for p in ("/".join(parts[:i]) for i in range(1, len(parts)))
                           if p in objects.sealed), None)
            if sealed is not None:
                raise StorageError(f"{key}: permission denied (artifact {sealed} is sealed)")
            if key in objects.data:
                raise Immutable(f"{key}: already exists and is locked")
            objects.data[key] = data
            objects.mtimes[key] = time.time()

    def _under(self, prefix: str) -> list[str]:
        """The committed keys under *prefix* (``""``: all), sorted."""
        top = prefix.rstrip("/") if prefix.strip("/") else ""
        if top:
            check_key(top)
        with self._objects.lock:
            keys = list(self._objects.data)
        return sorted(k for k in keys if not top or k.startswith(top + "/"))

    # -- writing ---------------------------------------------------------------------
    def stage(self, key: str, source: str, progress: Progress = None) -> Staged:
        check_key(key)
        self._fault("stage", key)
        copy = io.BytesIO()
        try:
            with open(source, "rb") as src:
                digest = copy_hashing(src, copy, progress)
        except OSError as exc:
            raise os_error(exc, key) from exc
        with self._objects.lock:
            self._objects.staged += 1
        return _MemoryStaged(self, key, copy.getvalue(), digest)

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        self._fault("put_bytes", key)
        self._publish(key, bytes(data))

    def seal(self, prefix: str) -> None:
        top = prefix.rstrip("/")
        check_key(top)
        self._fault("seal", top)
        with self._objects.lock:
            self._objects.sealed.add(top)

    # -- reading ---------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        check_key(key)
        self._fault("exists", key)
        with self._objects.lock:
            return key in self._objects.data

    def size(self, key: str) -> int:
        self._fault("size", key)
        return len(self._get(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self._fault("read_range", key)
        data = self._get(key)
        if offset < 0:
            raise StorageError(f"{key}: negative offset {offset}")
        return data[offset:offset + length] if length > 0 else b""

    def open(self, key: str) -> BinaryIO:
        self._fault("open", key)
        return io.BytesIO(self._get(key))

    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        self._fault("download", key)
        return download_from(io.BytesIO(self._get(key)), dest, key, progress)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._fault("list", prefix)
        return iter(self._under(prefix))

    def list_stat(self, prefix: str = "") -> Iterator[StoredObject]:
        self._fault("list", prefix)
        keys = self._under(prefix)
        with self._objects.lock:
            found = [(k, self._objects.data.get(k), self._objects.mtimes.get(k, 0.0))
                     for k in keys]
        return iter([StoredObject(k, len(d), t) for k, d, t in found if d is not None])

    def url_for(self, key: str) -> str:
        check_key(key)
        return f"{self.url}/{quote(key)}"

    # -- housekeeping ----------------------------------------------------------------
    def remove_orphan(self, prefix: str, listed: Collection[StoredObject] | None = None
                      ) -> int:
        top = prefix.rstrip("/")
        check_key(top)
        self._fault("remove_orphan", top)
        objects = self._objects
        with objects.lock:
            if f"{top}/.eio/metadata.yaml" in objects.data:
                raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
            mine = [k for k in objects.data if k.startswith(top + "/")]
            if listed is not None:  # only what was listed, and only if unchanged since
                wanted = {(o.key, o.mtime) for o in listed}
                mine = [k for k in mine if (k, objects.mtimes.get(k, 0.0)) in wanted]
            gone = [k for k in mine if not is_metadata_key(k)]
            for k in gone:
                del objects.data[k]
                objects.mtimes.pop(k, None)
        return len(gone)

    def check(self) -> str:
        return f"in-memory store {self.name}"
