"""Paths inside the local store without symbolic links.

Anyone who can write to a shared store directory can plant a symbolic link in it (to
``/etc/passwd``, to another user's home, to a directory outside the store). A link is not
an object: the local store never reads, lists, serves, writes or removes through one. Every
path is opened one component at a time from the root with ``O_NOFOLLOW`` (``openat``), so
a link anywhere below the root, including one swapped in between a check and a use, is
refused rather than followed. The root itself may be a link: it is the owner's
configuration, not something planted.

Objects themselves are never links (the store publishes regular files with ``link(2)``
of a temporary it created), so the rule costs saves nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import NotFound, StorageError

#: a directory opened only to be walked through (no read permission needed)
_DIR = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
#: the errors ``O_NOFOLLOW`` gives for a link: at the end (ELOOP), on the way (ENOTDIR)
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR)


def _refused(what: str) -> NotFound:
    return NotFound(f"{what}: no such object (a symbolic link or not a directory inside "
                    f"the store is never followed)")


def open_dir(root: Path, parts: Sequence[str], what: str, *, create: bool = False) -> int:
    """A file descriptor (``O_PATH``) of the directory *root*/*parts*, opened without
    following a link below *root*; with *create*, missing directories are made. ``NotFound``
    if a component is a link or missing; the caller closes the descriptor."""
    fd = os.open(root, _DIR)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            nfd = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError as exc:
        os.close(fd)
        if exc.errno in _LINK_ERRNOS:
            raise _refused(what) from exc
        raise
    return fd


def open_file(root: Path, parts: Sequence[str], what: str) -> int:
    """A read-only descriptor of the regular file *root*/*parts* (``NotFound`` for a link,
    a directory, or nothing there). ``OSError`` for other failures."""
    dfd = open_dir(root, parts[:-1], what)
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise _refused(what) from exc
        raise
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFound(f"{what}: no such object (not a regular file)")
    return fd


def stat_file(root: Path, parts: Sequence[str], what: str) -> os.stat_result:
    """The ``lstat`` of the regular file *root*/*parts*; ``NotFound`` for anything else."""
    dfd = open_dir(root, parts[:-1], what)
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)
    if not stat.S_ISREG(st.st_mode):
        raise NotFound(f"{what}: no such object (not a regular file)")
    return st


def make_dirs(root: Path, parts: Sequence[str], what: str) -> None:
    """Make the directory *root*/*parts* and its parents, refusing (``StorageError``) to
    make or pass through a link below *root*."""
    try:
        os.close(open_dir(root, parts, what, create=True))
    except NotFound as exc:
        raise StorageError(f"{what}: refused: a symbolic link (or a file) inside the "
                           f"store lies on the way") from exc


def is_real_dir(root: Path, parts: Sequence[str]) -> bool:
    """True if *root*/*parts* is a directory reached without a link below *root*."""
    try:
        os.close(open_dir(root, parts, "/".join(parts)))
    except (NotFound, OSError):
        return False
    return True


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` (top-down; the caller may prune the directory list) in which a
    symbolic link is neither a directory nor a file: links are not listed, nor followed.
    The caller checks *top* itself with :func:`is_real_dir`."""
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except OSError:
        return
    dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    files = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    yield top, dirs, files
    for d in dirs:
        yield from walk(os.path.join(top, d))
