"""The checks before mounting: /dev/fuse, the mountpoint, the lake's store and catalogue.

Each failure is a :class:`StartError`: one line for the user and the exit code of
:mod:`elliptiofs.cli` (docs/mount.md lists them).
"""

from __future__ import annotations

import errno
import os
import shutil

from elliptio import ConfigError, ElliptioError, Lake
from elliptio.redact import redact_url

EXIT_CONFIG = 2
EXIT_STORE = 6
EXIT_CATALOGUE = 7
EXIT_FUSE_DEVICE = 10
EXIT_MOUNTPOINT = 11
EXIT_MOUNT = 12


class StartError(Exception):
    """The mount cannot start: one line for the user and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def check_fuse_device() -> None:
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as exc:
        hint = ("load the fuse module (modprobe fuse) or pass the device to the container"
                if exc.errno == errno.ENOENT else "check its permissions (crw-rw-rw-)")
        raise StartError(f"/dev/fuse is not usable ({exc.strerror}): {hint}",
                         EXIT_FUSE_DEVICE) from None
    os.close(fd)
    if shutil.which("fusermount3") is None:
        raise StartError("fusermount3 is not installed: install the fuse3 package",
                         EXIT_FUSE_DEVICE)


def check_mountpoint(path: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise StartError(f"mountpoint {path} does not exist", EXIT_MOUNTPOINT) from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise StartError(f"mountpoint {path} is a dead FUSE mount: unmount it first "
                             f"(fusermount3 -u {path})", EXIT_MOUNTPOINT) from None
        raise StartError(f"mountpoint {path} is not usable: {exc.strerror}",
                         EXIT_MOUNTPOINT) from None
    import stat as stat_

    if not stat_.S_ISDIR(st.st_mode):
        raise StartError(f"mountpoint {path} is not a directory", EXIT_MOUNTPOINT)
    if os.path.ismount(path):
        raise StartError(f"mountpoint {path} is already a mount point (is the lake mounted "
                         f"there? unmount it first: fusermount3 -u {path})", EXIT_MOUNTPOINT)
    if os.getuid() != 0 and not os.access(path, os.W_OK):
        raise StartError(f"no write permission on mountpoint {path} (FUSE needs it)",
                         EXIT_MOUNTPOINT)
    return os.path.realpath(path)


def check_lake(lake: Lake) -> None:
    """Reach the store and the catalogue once, so a wrong URL fails the start, not the
    first `ls`."""
    for what, part, url, code in (("store", lambda: lake.store, lake.settings.store,
                                   EXIT_STORE),
                                  ("catalogue", lambda: lake.catalogue,
                                   lake.settings.catalogue, EXIT_CATALOGUE)):
        try:
            part().check()
        except ConfigError as exc:
            raise StartError(str(exc), EXIT_CONFIG) from None
        except ElliptioError as exc:
            shown = redact_url(url)
            # the backends' messages mostly name the URL already: once is enough
            where = "" if shown in str(exc) else f" {shown}"
            raise StartError(f"cannot use the {what}{where}: {exc}", code) from None
