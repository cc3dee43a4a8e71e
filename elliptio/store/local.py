"""The local-directory store: the embedded default.

Objects are plain files under the root directory, keys mapped to relative paths. Writes go
to an invisible temporary beside the target (``.eio-tmp-*``, a name no user file can have,
since user names starting with ``.eio`` are refused) and are published with ``link(2)``,
which fails if the target exists: publishing is atomic and never overwrites. Published
files are made read-only (0444), and :meth:`LocalStore.seal` makes an artifact's
directories read-only once its ``metadata.yaml`` is written.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlparse

from ..errors import ConfigError, Immutable, StorageError
from .base import Digest, Progress, Staged, Store, check_key
from .files import copy_hashing, download_from, os_error

TMP_PREFIX = ".eio-tmp-"


class _LocalStaged(Staged):
    def __init__(self, store: LocalStore, key: str, tmp: Path, digest: Digest) -> None:
        self.store, self.key, self.tmp, self.digest = store, key, tmp, digest

    def commit(self, progress: Progress = None) -> None:
        target = self.store._path(self.key)
        try:
            os.link(self.tmp, target)
        except OSError as exc:
            raise os_error(exc, self.key) from exc
        finally:
            self.tmp.unlink(missing_ok=True)
        if progress:
            progress(self.digest.size)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


class LocalStore(Store):
    """A directory on a local (or network) filesystem. See the module docstring."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"not a local store URL (want file:///path): {url}")
        path = unquote(parsed.path)
        if not path.startswith("/"):
            raise ConfigError(f"local store path must be absolute: {url}")
        self.root = Path(path)
        self.url = "file://" + quote(str(self.root))

    # -- helpers ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def _tmp_beside(self, target: Path) -> Path:
        return target.with_name(f"{TMP_PREFIX}{secrets.token_hex(6)}-{target.name}")

    def _ensure_dir(self, path: Path, what: str) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, what) from exc

    # -- writing ---------------------------------------------------------------------
    def stage(self, key: str, source: str, progress: Progress = None) -> Staged:
        target = self._path(key)
        self._ensure_dir(target.parent, key)
        tmp = self._tmp_beside(target)
        try:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                digest = copy_hashing(src, dst, progress)
                os.fchmod(dst.fileno(), 0o444)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise os_error(exc, key) from exc
            raise
        return _LocalStaged(self, key, tmp, digest)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        self._ensure_dir(target.parent, key)
        tmp = self._tmp_beside(target)
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), 0o444)
            os.link(tmp, target)
        except OSError as exc:
            raise os_error(exc, key) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def seal(self, prefix: str) -> None:
        """Make every directory under *prefix* read-only (after its metadata is written)."""
        top = self._path(prefix)
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.chmod(dirpath, 0o555)
            except OSError:
                pass

    # -- reading ---------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except OSError as exc:
            raise os_error(exc, key) from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return os.pread(f.fileno(), length, offset)
        except OSError as exc:
            raise os_error(exc, key) from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except OSError as exc:
            raise os_error(exc, key) from exc

    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        try:
            src = open(self._path(key), "rb")
        except OSError as exc:
            raise os_error(exc, f"{key} -> {dest}") from exc
        with src:
            return download_from(src, dest, key, progress)

    def list(self, prefix: str = "") -> Iterator[str]:
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not top.is_dir():
            return
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in sorted(files):
                if not name.startswith(TMP_PREFIX):
                    yield rel + name

    def list_metadata(self, prefix: str = "") -> Iterator[str]:
        # Walk only as deep as the layout needs: YYYY/MM/DD/user/id/.eio/metadata.yaml
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not top.is_dir():
            return
        for dirpath, dirs, files in os.walk(top):
            if os.path.basename(dirpath) == ".eio":
                dirs[:] = []
                if "metadata.yaml" in files:
                    rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
                    yield rel + "/metadata.yaml"
            elif ".eio" in dirs:
                dirs[:] = [".eio"]  # an artifact directory: the user's files are not needed
            dirs.sort()

    def list_artifact_dirs(self, prefix: str = "") -> Iterator[str]:
        # Directories, not files: a save killed while staging leaves only temporaries.
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        depth0 = len(top.relative_to(self.root).parts) if top != self.root else 0
        if not top.is_dir():
            return
        for dirpath, dirs, _files in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            depth = 0 if rel == "." else len(rel.split(os.sep))
            if depth == 5:
                dirs[:] = []
                yield rel.replace(os.sep, "/")
            elif depth < depth0:
                continue
            dirs.sort()

    def url_for(self, key: str) -> str:
        return "file://" + quote(str(self._path(key)))

    def remove_orphan(self, prefix: str) -> int:
        top = self._path(prefix.rstrip("/"))
        if (top / ".eio" / "metadata.yaml").exists():
            raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
        removed = 0
        for dirpath, _dirs, files in os.walk(top, topdown=False):
            try:
                os.chmod(dirpath, 0o755)
            except OSError:
                pass
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    os.unlink(p)
                    removed += 1
                except OSError:
                    pass
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        return removed

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, str(self.root)) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"store directory {self.root} is not writable")
        return f"local store at {self.root}"

