"""The ``elliptiofs`` command: mount the lake.

    elliptiofs MOUNTPOINT [--foreground] [--debug] [--scope session|pid|uid] [--allow-other]

Configuration is the library's (``ELLIPTIO_STORE``, ``ELLIPTIO_CATALOGUE``,
``ELLIPTIO_READLOG``, the config file). Without ``--foreground`` the command returns once
the mount is up (or with the error that prevented it) and the daemon runs on in the
background, logging to ``--log`` (default ``<user cache dir>/elliptio/elliptiofs.log``).

Exit codes: 0 mounted (daemon: clean unmount), 2 bad arguments or configuration,
10 /dev/fuse unusable, 11 mountpoint unusable, 6 store unusable, 7 catalogue unusable,
12 the mount itself failed, 1 anything else.

The daemon starts and stops in :func:`.serve.serve`: one exit stack and one nursery; each
resource registers its own cleanup. SIGTERM/SIGINT end the FUSE loop and unmount;
``fusermount3 -u`` ends it too. The mount uses ``auto_unmount``, so even a killed daemon
leaves no dead mount.

This module parses the options and runs the daemon in the foreground or through the fork
(:mod:`.daemon`); the checks before mounting are :mod:`.start`'s, what follows the mount
(kernel tuning, the indexer warning, systemd) :mod:`.kernel`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from elliptio import CatalogueError, ConfigError, Settings, StorageError
from elliptio.text import visible

from .daemon import daemonise
from .serve import serve
from .settings import DaemonSettings
from .start import (
    EXIT_CATALOGUE,
    EXIT_CONFIG,
    EXIT_STORE,
    StartError,
    check_fuse_device,
    check_mountpoint,
)

#: SQLite page cache per catalogue connection in the daemon (MiB), unless
#: ELLIPTIO_SQLITE_CACHE_MB says otherwise: the library's default (sized for bulk reindex)
#: would let a long-running daemon's RSS grow with the lake as listings touch pages; the
#: daemon's queries are indexed point lookups and keyset pages
DAEMON_SQLITE_CACHE_MB = 16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="elliptiofs",
        description="Mount the ElliptIO lake: read-only artifacts and query directories, "
                    "and outbox/, where what is copied in is saved as new artifacts.")
    p.add_argument("mountpoint", help="an empty directory to mount the lake on")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (systemd, debugging); log to stderr")
    p.add_argument("-d", "--debug", action="store_true", help="log every FUSE call")
    p.add_argument("--scope", choices=("session", "pid", "uid"), default="session",
                   help="which readers count as one for lineage (default: session)")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users use the mount (needs user_allow_other in "
                        "/etc/fuse.conf unless root)")
    p.add_argument("--log", help="log file (default: stderr in the foreground, else "
                                 "<user cache dir>/elliptio/elliptiofs.log)")
    p.add_argument("--no-writeback", dest="writeback", action="store_false",
                   help="turn the kernel's writeback cache off (it is on: it merges writes "
                        "into the outbox into large requests; see docs/mount.md)")
    p.add_argument("--cache-mb", type=int, default=256,
                   help="memory for read-ahead across all open files (MiB, default 256)")
    p.add_argument("--scan-ahead", type=int, default=64, metavar="N",
                   help="when a process reads the same small file of artifact after "
                        "artifact, fetch it from up to N artifacts ahead (default 64; 0: "
                        "off, e.g. where every GET is billed)")
    args = p.parse_args(argv)
    # paths are resolved here, before the daemon changes its directory to /: a relative
    # mountpoint means the one below the caller's working directory, and every message
    # names the absolute path
    args.mountpoint = os.path.abspath(args.mountpoint)
    if args.log:
        args.log = os.path.abspath(args.log)
    if args.scan_ahead < 0:
        p.error(f"--scan-ahead must be 0 (off) or more, not {args.scan_ahead}")
    if args.cache_mb < 1:
        p.error(f"--cache-mb must be at least 1, not {args.cache_mb}")
    return args


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s"
    if args.log or not args.foreground:
        path = Path(args.log) if args.log else Path(
            __import__("platformdirs").user_cache_dir("elliptio", appauthor=False)
        ) / "elliptiofs.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("elliptiofs", "elliptio", "pyfuse3"):
        logging.getLogger(name).setLevel(level)


def _run(args: argparse.Namespace, ready: Callable[[], None]) -> int:
    try:
        settings = Settings.load()
        if "sqlite_cache_mb" not in settings.source:
            settings = dataclasses.replace(settings, sqlite_cache_mb=DAEMON_SQLITE_CACHE_MB)
        daemon = DaemonSettings.load()
        mountpoint = check_mountpoint(args.mountpoint)
        trio.run(serve, args, settings, daemon, mountpoint, ready)
    except ConfigError as exc:
        raise StartError(str(exc), EXIT_CONFIG) from None
    except (StorageError, CatalogueError) as exc:  # only before the mount is up
        raise StartError(str(exc), EXIT_STORE if isinstance(exc, StorageError)
                         else EXIT_CATALOGUE) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_fuse_device()
        check_mountpoint(args.mountpoint)
        Settings.load()
        DaemonSettings.load()
    except StartError as exc:
        print(f"elliptiofs: {visible(exc)}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"elliptiofs: {visible(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.foreground:
        setup_logging(args)
        try:
            return _run(args, lambda: None)
        except StartError as exc:
            print(f"elliptiofs: {visible(exc)}", file=sys.stderr)
            return exc.code

    def serve_in_child(ready: Callable[[], None]) -> int:
        setup_logging(args)
        return _run(args, ready)

    return daemonise(serve_in_child)


if __name__ == "__main__":
    sys.exit(main())
