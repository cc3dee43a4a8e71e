"""After mounting: the kernel's limits of the mount raised, the warning about nightly
indexers, and systemd told (``READY=1``, ``STOPPING=1``).

:func:`when_initialised` runs in the daemon's nursery once ``pyfuse3.init`` is done; the
bench's floor mount (``bench/floorfs.py``) uses it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

log = logging.getLogger("elliptiofs")

#: kernel read-ahead for the mount (KiB): 128 KiB requests cap reads at ~0.6 GB/s
READ_AHEAD_KB = 4096
#: FUSE requests the kernel keeps in flight (parallel readers)
MAX_BACKGROUND = 64


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
