"""What to save: the caller's files turned into checked :class:`Entry` items.

Every check happens here, before anything is written: a missing or unreadable path, a
special file, a directory loop, an unsafe or reserved name (:func:`elliptio.layout.check_name`)
or two inputs with one name is a ``UsageError`` and the save never starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import layout
from .errors import UsageError

#: what ``save`` takes: a path, a list of paths, or ``{name in artifact: local path}``
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


def is_special(mode: int) -> bool:
    """True for FIFOs, sockets and device files (which save refuses)."""
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


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
        st = _stat(source, f"no such file or directory: {source}")
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


def _stat(path: str, missing: str) -> os.stat_result:
    """``os.stat`` of *path* (symlinks followed); ``UsageError`` saying *missing* when
    nothing is there, or that it cannot be read."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise UsageError(missing) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


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
            cst = _stat(path, f"{path} is a broken symlink")
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
