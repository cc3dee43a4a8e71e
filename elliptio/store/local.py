"""The local-directory store: the embedded default.

Objects are plain files under the root directory, keys mapped to relative paths. Writes go
to an invisible temporary beside the target (``.eio-tmp-*``, a name no user file can have,
since user names starting with ``.eio`` are refused) and are published with ``link(2)``,
which fails if the target exists: publishing is atomic and never overwrites. Published
files are made read-only (0444), and :meth:`LocalStore.seal` makes an artifact's
directories read-only once its ``metadata.yaml`` is written.

A symbolic link inside the root is not an object: nothing here reads, lists, serves,
writes or removes through one (:mod:`.nofollow`), so a link planted in a shared store
(to ``/etc/passwd``, or a directory elsewhere) is neither served nor followed.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlparse

from ..errors import ConfigError, Immutable, NotFound, StorageError
from ..redact import redact_url
from .base import Digest, Progress, Staged, Store, StoredObject, check_key, is_metadata_key
from .files import copy_hashing, download_from, os_error
from .nofollow import is_real_dir, make_dirs, open_dir, open_file, stat_file, walk

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
            raise ConfigError(f"not a local store URL (want file:///path): {redact_url(url)}")
        path = unquote(parsed.path)
        if not path.startswith("/"):
            raise ConfigError(f"local store path must be absolute: {redact_url(url)}")
        self.root = Path(path)
        self.url = "file://" + quote(str(self.root))

    # -- helpers ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def _open(self, key: str, what: str | None = None) -> BinaryIO:
        """*key* opened for reading, refusing a symbolic link anywhere below the root."""
        try:
            return os.fdopen(open_file(self.root, check_key(key), what or key), "rb")
        except OSError as exc:
            raise os_error(exc, what or key) from exc

    def _top(self, prefix: str) -> Path | None:
        """The directory of *prefix* (``""``: the root) if it is one reached without a
        link, else None: nothing to list."""
        parts = check_key(prefix.strip("/")) if prefix.strip("/") else []
        return self.root.joinpath(*parts) if is_real_dir(self.root, parts) else None

    def _tmp_beside(self, target: Path) -> Path:
        return target.with_name(f"{TMP_PREFIX}{secrets.token_hex(6)}-{target.name}")

    def _ensure_dir(self, path: Path, what: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            make_dirs(self.root, path.relative_to(self.root).parts, what)
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
        top = self._top(prefix)
        if top is None:
            return
        for dirpath, _dirs, _files in reversed(list(walk(str(top)))):
            try:
                os.chmod(dirpath, 0o555)
            except OSError:
                pass

    # -- reading ---------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            stat_file(self.root, check_key(key), key)
        except (NotFound, OSError):
            return False
        return True

    def size(self, key: str) -> int:
        try:
            return stat_file(self.root, check_key(key), key).st_size
        except OSError as exc:
            raise os_error(exc, key) from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._open(key) as f:
            try:
                return os.pread(f.fileno(), length, offset)
            except OSError as exc:
                raise os_error(exc, key) from exc

    def open(self, key: str) -> BinaryIO:
        return self._open(key)

    def download(self, key: str, dest: str, progress: Progress = None) -> Digest:
        with self._open(key, f"{key} -> {dest}") as src:
            return download_from(src, dest, key, progress)

    def list(self, prefix: str = "") -> Iterator[str]:
        for obj in self._walk_files(prefix, temporaries=False):
            yield obj.key

    def list_stat(self, prefix: str = "") -> Iterator[StoredObject]:
        return self._walk_files(prefix, temporaries=False)

    def inventory(self, prefix: str) -> list[StoredObject]:
        return list(self._walk_files(prefix.rstrip("/"), temporaries=True, directories=True))

    def _walk_files(self, prefix: str, *, temporaries: bool, directories: bool = False
                    ) -> Iterator[StoredObject]:
        """The regular files under *prefix* (never through a link), as objects; with
        *temporaries* the ``.eio-tmp-*`` files too, with *directories* the directories."""
        top = self._top(prefix)
        if top is None:
            return
        for dirpath, dirs, files in walk(str(top)):
            dirs.sort()
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if directories:
                st = _lstat(dirpath)
                if st is not None:
                    yield StoredObject(rel.rstrip("/"), 0, st.st_mtime, kind="directory")
            for name in sorted(files):
                tmp = name.startswith(TMP_PREFIX)
                if tmp and not temporaries:
                    continue
                st = _lstat(os.path.join(dirpath, name))
                if st is not None and stat.S_ISREG(st.st_mode):
                    yield StoredObject(rel + name, st.st_size, st.st_mtime,
                                       kind="temporary" if tmp else "object")

    def list_metadata(self, prefix: str = "") -> Iterator[str]:
        # Walk only as deep as the layout needs: YYYY/MM/DD/user/id/.eio/metadata.yaml
        top = self._top(prefix)
        if top is None:
            return
        for dirpath, dirs, files in walk(str(top)):
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
        top = self._top(prefix)
        if top is None:
            return
        depth0 = len(top.relative_to(self.root).parts) if top != self.root else 0
        for dirpath, dirs, _files in walk(str(top)):
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

    def remove_orphan(self, prefix: str, listed: Collection[StoredObject] | None = None
                      ) -> int:
        base = prefix.rstrip("/")
        check_key(base)
        if listed is None:
            listed = self.inventory(base)
        if self._top(base) is None:
            return 0  # nothing there, or a link: never followed
        if self.exists(f"{base}/.eio/metadata.yaml"):
            raise Immutable(f"{prefix} is a committed artifact; it cannot be removed")
        dirs = sorted((o.key for o in listed if o.kind == "directory"
                       and (o.key == base or o.key.startswith(base + "/"))),
                      key=lambda k: k.count("/"))
        for key in dirs:  # a sealed directory whose metadata.yaml was deleted is 0555
            self._make_writable(key)
        removed = 0
        for obj in listed:
            if obj.kind == "directory" or is_metadata_key(obj.key) \
                    or not obj.key.startswith(base + "/"):
                continue
            removed += self._remove_file(obj)
        for key in reversed(dirs):  # deepest first
            self._remove_dir(key)
        return removed

    def _make_writable(self, key: str) -> None:
        parts = check_key(key)
        try:
            parent = open_dir(self.root, parts[:-1], key)
        except (NotFound, OSError):
            return
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                         dir_fd=parent)
            try:
                if not os.fstat(fd).st_mode & stat.S_IWUSR:
                    os.fchmod(fd, 0o755)
            finally:
                os.close(fd)
        except OSError:
            pass  # it stays, and fsck reports it
        finally:
            os.close(parent)

    def _remove_dir(self, key: str) -> None:
        parts = check_key(key)
        try:
            parent = open_dir(self.root, parts[:-1], key)
        except (NotFound, OSError):
            return
        try:
            os.rmdir(parts[-1], dir_fd=parent)
        except OSError:
            pass  # not empty: something unlisted (or a link) is still there
        finally:
            os.close(parent)

    def _remove_file(self, obj: StoredObject) -> int:
        """Unlink the file *obj* lists if it is still that file (same size and mtime), never
        through a link; 1 if removed."""
        parts = check_key(obj.key)
        try:
            fd = open_dir(self.root, parts[:-1], obj.key)
        except (NotFound, OSError):
            return 0
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime) != \
                    (obj.size, obj.mtime):
                return 0  # replaced or written to since the listing: not what was listed
            os.unlink(parts[-1], dir_fd=fd)
            return 1
        except OSError:
            return 0
        finally:
            os.close(fd)

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, str(self.root)) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"store directory {self.root} is not writable")
        return f"local store at {self.root}"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None
