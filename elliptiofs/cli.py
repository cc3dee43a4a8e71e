"""The ``elliptiofs`` command: mount the lake.

    elliptiofs MOUNTPOINT [--foreground] [--debug] [--scope session|pid|uid] [--allow-other]

Configuration is the library's (``ELLIPTIO_STORE``, ``ELLIPTIO_CATALOGUE``,
``ELLIPTIO_READLOG``, the config file). Without ``--foreground`` the command returns once
the mount is up (or with the error that prevented it) and the daemon runs on in the
background, logging to ``--log`` (default ``<user cache dir>/elliptio/elliptiofs.log``).

Exit codes: 0 mounted (daemon: clean unmount), 2 bad arguments or configuration,
10 /dev/fuse unusable, 11 mountpoint unusable, 6 store unusable, 7 catalogue unusable,
12 the mount itself failed, 1 anything else.

The daemon starts and stops in :func:`serve`: one exit stack and one nursery; each resource
registers its own cleanup. SIGTERM/SIGINT end the FUSE loop and unmount; ``fusermount3 -u``
ends it too. The mount uses ``auto_unmount``, so even a killed daemon leaves no dead mount.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

from elliptio import CatalogueError, ConfigError, ElliptioError, Lake, Settings, StorageError

from .settings import DaemonSettings

log = logging.getLogger("elliptiofs")

EXIT_CONFIG = 2
EXIT_STORE = 6
EXIT_CATALOGUE = 7
EXIT_FUSE_DEVICE = 10
EXIT_MOUNTPOINT = 11
EXIT_MOUNT = 12

#: kernel read-ahead for the mount (KiB): 128 KiB requests cap reads at ~0.6 GB/s
READ_AHEAD_KB = 4096
#: SQLite page cache per catalogue connection in the daemon (MiB), unless
#: ELLIPTIO_SQLITE_CACHE_MB says otherwise: the library's default (sized for bulk reindex)
#: would let a long-running daemon's RSS grow with the lake as listings touch pages; the
#: daemon's queries are indexed point lookups and keyset pages
DAEMON_SQLITE_CACHE_MB = 16
#: FUSE requests the kernel keeps in flight (parallel readers)
MAX_BACKGROUND = 64
#: catalogue calls in flight at once (searches, a network catalogue, scan planning)
CATALOGUE_THREADS = 8


class StartError(Exception):
    """The mount cannot start: one line for the user and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


# -- checks before mounting ----------------------------------------------------------------
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
    try:
        lake.store.check()
    except ConfigError as exc:
        raise StartError(str(exc), EXIT_CONFIG) from None
    except ElliptioError as exc:
        raise StartError(f"cannot use the store {lake.settings.store}: {exc}",
                         EXIT_STORE) from None
    try:
        lake.catalogue.check()
    except ConfigError as exc:
        raise StartError(str(exc), EXIT_CONFIG) from None
    except ElliptioError as exc:
        raise StartError(f"cannot use the catalogue {lake.settings.catalogue}: {exc}",
                         EXIT_CATALOGUE) from None


# -- after mounting --------------------------------------------------------------------------
def mount_device(mountpoint: str, fstype: str = "fuse.elliptiofs") -> str | None:
    """``major:minor`` of the FUSE mount (of *fstype*) at *mountpoint*, from
    /proc/self/mountinfo (not from stat(): the daemon must not call into its own mount from
    the trio thread)."""
    found = None
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        where = fields[4].encode().decode("unicode_escape")
        if where == mountpoint and fstype in line.split(" - ", 1)[-1].split()[:1]:
            found = fields[2]  # the last one is the top of the mount stack
    return found


UPDATEDB_CONF = "/etc/updatedb.conf"


def indexer_warning(mountpoint: str, conf: str = UPDATEDB_CONF) -> str | None:
    """What to tell the admin when the nightly ``updatedb`` (mlocate/plocate, configured in
    *conf*) would crawl this mount: the whole lake, through the catalogue and the store,
    every night. None when *conf* does not exist or prunes the filesystem type
    (``PRUNEFS``) or the mountpoint or a directory above it (``PRUNEPATHS``)."""
    try:
        text = Path(conf).read_text(errors="replace")
    except OSError:
        return None
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() in ("PRUNEFS", "PRUNEPATHS"):
            values[key.strip()] = value.strip().strip("\"'").split()
    if "fuse.elliptiofs" in (v.lower() for v in values.get("PRUNEFS", [])):
        return None
    mnt = Path(mountpoint)
    for pruned in values.get("PRUNEPATHS", []):
        if mnt == Path(pruned) or Path(pruned) in mnt.parents:
            return None
    return (f"{conf} does not keep updatedb off this mount: the nightly index would crawl "
            "the whole lake. Add fuse.elliptiofs to PRUNEFS there (docs/mount.md, \"Keep "
            "indexers off the mount\")")


FUSECTL = "/sys/fs/fuse/connections"


@contextlib.contextmanager
def fusectl() -> Iterator[None]:
    """The FUSE control filesystem on :data:`FUSECTL` for the duration of the block.

    systemd mounts it at boot on most machines; containers and minimal VMs often do not,
    and without it ``max_background`` cannot be raised. Where it is missing and we are
    root, it is mounted for the block and unmounted after it (the values written stay with
    the connection): the machine is left as it was found."""
    path = Path(FUSECTL)
    if os.geteuid() != 0 or not path.is_dir() or os.path.ismount(path):
        yield
        return
    import subprocess

    r = subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL], capture_output=True,
                       text=True)
    if r.returncode != 0:
        log.info("cannot mount the FUSE control filesystem on %s: %s", FUSECTL,
                 r.stderr.strip() or f"exit {r.returncode}")
        yield
        return
    try:
        yield
    finally:
        subprocess.run(["umount", FUSECTL], capture_output=True)


def tune_mount(mountpoint: str, fstype: str = "fuse.elliptiofs") -> None:
    """Raise the kernel's read-ahead and background-request limit of this mount, where
    permitted (root, or a writable sysfs); otherwise keep the defaults and say so.

    Must run after the kernel has processed the daemon's INIT reply: processing it clamps
    the mount's read-ahead to the ``max_readahead`` negotiated there (128 KiB), undoing an
    earlier write (measured: 128 KiB read requests instead of 1 MiB)."""
    dev = mount_device(mountpoint, fstype)
    if dev is None:
        log.info("cannot find the mount in /proc/self/mountinfo; kernel defaults kept")
        return
    minor = dev.split(":")[1]
    settings = [
        (f"/sys/class/bdi/{dev}/read_ahead_kb", READ_AHEAD_KB),
        (f"{FUSECTL}/{minor}/max_background", MAX_BACKGROUND),
        (f"{FUSECTL}/{minor}/congestion_threshold", MAX_BACKGROUND * 3 // 4),
    ]
    with fusectl():
        for path, value in settings:
            try:
                Path(path).write_text(str(value))
                log.debug("set %s = %s", path, value)
            except OSError as exc:
                log.info("could not set %s to %s (%s); the kernel default stays", path,
                         value, exc.strerror)


async def when_initialised(mountpoint: str, ready: Callable[[], None],
                           fstype: str = "fuse.elliptiofs") -> None:
    """Tune the mount once the kernel has the INIT reply (a ``stat`` of the mountpoint
    from a worker thread returns only then; the trio thread must not call into its own
    mount), then report ready (to *ready* and to systemd). The bench's floor mount
    (``bench/floorfs.py``, *fstype* ``fuse.elliptiofs-floor``) is tuned by it too."""
    with trio.move_on_after(30):
        with contextlib.suppress(OSError):
            await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
    tune_mount(mountpoint, fstype)
    ready()
    notify_systemd("READY=1")


def notify_systemd(state: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", addr, exc)


# -- the daemon -------------------------------------------------------------------------------
async def _watch_signals(terminate: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            terminate()
            return


async def serve(args: argparse.Namespace, settings: Settings, daemon: DaemonSettings,
                mountpoint: str, ready: Callable[[], None]) -> None:
    """Mount, serve until unmounted or signalled, unmount. Raises StartError before the
    mount is up; afterwards only bugs escape."""
    import pyfuse3

    from .ops import Operations
    from .outbox import Outbox
    from .reader import Reader
    from .readlog import ReadLog, ReadLogError, keep_pruned
    from .scan import ScanAhead
    from .tree import Tree
    from .workers import Workers

    async with contextlib.AsyncExitStack() as stack:
        lake = Lake(settings)
        stack.callback(lake.close)
        await trio.to_thread.run_sync(check_lake, lake)
        try:
            readlog = ReadLog(daemon.readlog)
        except ReadLogError as exc:
            raise StartError(str(exc), EXIT_CONFIG) from None
        stack.callback(readlog.close)
        # the spool is locked and its journal read (crash recovery) before mounting
        outbox = Outbox(lake, readlog, daemon, scope=args.scope)
        stack.callback(outbox.close)  # after the nursery: a commit under way finishes
        reader = Reader(lake.store, budget=args.cache_mb << 20)
        stack.callback(reader.close)  # after the nursery: nothing reads any more
        catalogue_workers = Workers(CATALOGUE_THREADS, "eio-cat")
        stack.callback(catalogue_workers.close)  # after the nursery, likewise
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)  # LIFO: runs before the nursery waits
        tree = Tree(lake)
        scan = ScanAhead(tree, reader, catalogue_workers,
                         max_window=args.scan_ahead) if args.scan_ahead else None
        ops = Operations(tree, reader, readlog, catalogue_workers, scope=args.scope,
                         inline_catalogue=settings.catalogue.startswith("sqlite:"),
                         outbox=outbox, scan=scan)
        ops.enable_writeback_cache = args.writeback  # read by pyfuse3.init
        options = {"fsname=elliptiofs", "subtype=elliptiofs", "auto_unmount", "noatime"}
        if args.allow_other:
            options.add("allow_other")
        if args.debug:
            options.add("debug")
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as exc:
            raise StartError(f"cannot mount on {mountpoint}: {exc}", EXIT_MOUNT) from None
        stack.callback(pyfuse3.close, unmount=True)
        # commits are told to the kernel through ops; LIFO: stop that before close()
        outbox.on_commit, outbox.invalidate = ops.artifact_committed, ops.invalidate_name
        stack.callback(outbox.detach)
        await nursery.start(outbox.run)
        # records of readers that are gone, but not those a staged entry still needs
        nursery.start_soon(keep_pruned, readlog, outbox.scopes_in_use)
        log.info("mounted %s on %s (catalogue %s)", settings.store, mountpoint,
                 settings.catalogue)
        if (warning := indexer_warning(mountpoint)) is not None:
            log.warning("%s", warning)
        nursery.start_soon(_watch_signals, pyfuse3.terminate)
        nursery.start_soon(when_initialised, mountpoint, ready)
        await pyfuse3.main()
        notify_systemd("STOPPING=1")
        log.info("unmounting %s", mountpoint)


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
        print(f"elliptiofs: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"elliptiofs: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.foreground:
        setup_logging(args)
        try:
            return _run(args, lambda: None)
        except StartError as exc:
            print(f"elliptiofs: {exc}", file=sys.stderr)
            return exc.code
    return _daemonise(args)


def _daemonise(args: argparse.Namespace) -> int:
    """Fork; the child mounts and serves, the parent waits until the mount is up (exit
    0) or reports the child's one-line error and its exit code."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            answer = r.read().decode(errors="replace")
        if answer.startswith("OK"):
            return 0
        status_text, _, message = answer.partition(" ")
        if not status_text.isdigit():
            _, status = os.waitpid(pid, 0)
            print("elliptiofs: the daemon exited before mounting (see its log)",
                  file=sys.stderr)
            return 1
        print(f"elliptiofs: {message.strip()}", file=sys.stderr)
        os.waitpid(pid, 0)
        return int(status_text)
    # the child: a new session, no terminal, the log file for messages
    os.close(rfd)
    os.setsid()
    os.chdir("/")
    code = 1
    try:
        setup_logging(args)

        def ready() -> None:
            os.write(wfd, b"OK\n")
            os.close(wfd)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)

        code = _run(args, ready)
    except StartError as exc:
        with contextlib.suppress(OSError):
            os.write(wfd, f"{exc.code} {exc}\n".encode())
        code = exc.code
    except BaseException:
        log.exception("the daemon failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
