"""Reads through the mount as lineage of library saves: what the calling process's scope
read through every ``elliptiofs`` running on this host.

A save without an explicit ``based_on`` (``eio.save``, the builder, ``eio save``) takes
the artifacts this process loaded (:mod:`elliptio.lineage`) and then
:func:`mount_reads`: the artifacts whose files the process's *reader scope* opened
through a mount, by the same rule the outbox uses (``elliptiofs --scope``; by default
the process session), in first-read order, reads made before the save only.
``based_on=[...]`` (``[]`` included) replaces both, as always.

Who may learn what. The read log itself (SQLite, ``ELLIPTIO_READLOG``) is the daemon's
private file (mode 0600): it says what everyone read, which is nobody else's business.
Instead each daemon answers on a Unix socket; the kernel tells it who asks
(``SO_PEERCRED``: pid and uid), it computes that process's scope itself and returns that
scope's artifact ids and nothing else. A process can ask only about itself; the request
carries nothing but a version. So the daemon and the saver may run as different users
(a root or service-account mount, users saving as themselves): the socket is mode 0666
in a directory everyone may enter.

Where the sockets are (one per mount, ``<hash of the mountpoint>.sock``; several mounts
on one host are asked one after the other and their answers merged, first-read order
kept per mount):

- ``/run/elliptio/mounts/`` (:data:`RUN_DIR`) for a daemon running as root with the
  default read log (the system unit);
- otherwise ``elliptiofs-sockets/`` beside the daemon's read log (:func:`beside`).

A save looks in both: beside *its* ``readlog`` setting (the same key and default as the
daemon's, so one user's own mount is found without configuration; a team sets one
``readlog:`` in the shared config file) and :data:`RUN_DIR`. A directory that group or
others may write is ignored (whoever can put a socket there could answer in a daemon's
place and invent parents). An answer counts only when the daemon serves the lake being
saved to (same store URL): a mount of another lake never lends its reads.

Cost. No mount running: two failed ``scandir`` calls (microseconds). A mount running: a
connection per mount and one indexed SQLite query in the daemon (bench/bench_readlog.py).
A daemon that does not answer within :data:`TIMEOUT` seconds is given up with one
WARNING and the save goes on without that mount's reads; a socket nobody listens on (a
daemon that was killed) is no mount.

Across hosts: each host's daemons keep their own read log and answer only local
processes; a save on another host never sees them (pass ``based_on=`` there).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator

from .config import default_data_dir, read_config
from .errors import UsageError
from .ids import check_id
from .redact import redact_url

__all__ = ["RUN_DIR", "SOCKETS", "REQUEST", "TIMEOUT", "MAX_ANSWER", "beside",
           "daemon_socket_dir", "socket_name", "socket_path", "socket_dirs", "answer",
           "mount_reads", "with_mount_reads"]

log = logging.getLogger(__name__)

#: the host-wide directory of a root daemon's sockets
RUN_DIR = "/run/elliptio/mounts"
#: the directory beside a read log that holds its daemons' sockets
SOCKETS = "elliptiofs-sockets"
#: what a client sends: the protocol's name and version, nothing about who asks
REQUEST = b"eio-reads 1\n"
#: seconds a save waits for one daemon's answer
TIMEOUT = 2.0
#: the largest answer read (bytes): ~300,000 ids
MAX_ANSWER = 8 << 20
#: a path a Unix socket address can hold (sun_path is 108 bytes with its NUL)
MAX_SUN_PATH = 100


def beside(readlog: str) -> str:
    """The socket directory of daemons whose read log is *readlog*."""
    return os.path.join(os.path.dirname(os.path.abspath(readlog)), SOCKETS)


def daemon_socket_dir(readlog: str, readlog_given: bool) -> str:
    """Where a daemon with read log *readlog* (*readlog_given*: set in the configuration,
    not the default) puts its socket."""
    if os.geteuid() == 0 and not readlog_given:
        return RUN_DIR
    return beside(readlog)


def socket_name(mountpoint: str) -> str:
    return hashlib.sha256(os.fsencode(mountpoint)).hexdigest()[:16] + ".sock"


@contextlib.contextmanager
def socket_path(directory: str, name: str) -> Iterator[str]:
    """An address for the socket *name* in *directory*: the path itself, or, when that is
    too long for a socket address, the same file through ``/proc/self/fd``."""
    path = os.path.join(directory, name)
    if len(os.fsencode(path)) <= MAX_SUN_PATH:
        yield path
        return
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def socket_dirs() -> list[str]:
    """The directories a save looks in (see the module's docstring)."""
    values, _ = read_config(["readlog"])
    readlog = str(values.get("readlog") or default_data_dir() / "readlog.sqlite")
    return list(dict.fromkeys([beside(readlog), RUN_DIR]))


def answer(ids: list[str], store: str, mountpoint: str) -> bytes:
    """A daemon's answer (one JSON line) for the artifact ids *ids*."""
    return json.dumps({"v": 1, "store": redact_url(store), "mountpoint": mountpoint,
                       "artifacts": ids}).encode() + b"\n"


def _sockets(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it if e.name.endswith(".sock"))
    except OSError:
        return []  # no such directory: no mount there (the common case: one syscall)
    if names:
        try:
            st = os.stat(directory)
        except OSError:
            return []
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("ignoring the mount sockets in %s: others may write that "
                        "directory, so an answer from there cannot be trusted", directory)
            return []
    return names


def _ask(directory: str, name: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    where = os.path.join(directory, name)
    try:
        with socket_path(directory, name) as address, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
            s.sendall(REQUEST)
            data = b""
            while not data.endswith(b"\n"):
                s.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_ANSWER:
                    raise ValueError("answer too long")
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # a daemon that is gone (killed: its socket stayed): no mount
    except (TimeoutError, socket.timeout):
        log.warning("the mount answering on %s did not say within %.1f s what this "
                    "process read through it: those reads are not in this save's "
                    "based_on", where, timeout)
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot ask the mount on %s what this process read (%s): those "
                    "reads are not in this save's based_on", where, exc)
        return None
    try:
        reply = json.loads(data)
        if not isinstance(reply, dict) or not isinstance(reply.get("artifacts"), list):
            raise ValueError("not an answer")
        reply["artifacts"] = [check_id(a) for a in reply["artifacts"]]
    except (ValueError, UsageError) as exc:
        log.warning("the mount on %s gave a malformed answer (%s): its reads are not in "
                    "this save's based_on", where, exc)
        return None
    return reply


def mount_reads(store: str, *, timeout: float | None = None) -> list[str]:
    """The artifacts this process's scope read, before now, through every mount of the
    lake whose store is *store* running on this host (see the module's docstring)."""
    want = redact_url(store)
    out: dict[str, None] = {}
    for directory in socket_dirs():
        for name in _sockets(directory):
            reply = _ask(directory, name, TIMEOUT if timeout is None else timeout)
            if reply is not None and reply.get("store") == want:
                for aid in reply["artifacts"]:
                    out.setdefault(aid, None)
    return list(out)


def with_mount_reads(used: list[str], store: str) -> list[str]:
    """*used* (what this process loaded), then what it read through mounts of *store*."""
    extra = [a for a in mount_reads(store) if a not in used]
    return used + extra if extra else used
