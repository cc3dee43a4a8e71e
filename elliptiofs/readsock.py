"""The daemon's answer to "what did I read through this mount?": a Unix socket that tells
a process asking the artifacts its own reader scope read, and nothing else.

Library saves (``eio.save``, ``eio save``) add those artifacts to ``based_on``
(:mod:`elliptio.mountreads` is the client and says where the sockets are). The read log
stays the daemon's private file; this is its only reader besides the outbox.

Per connection: the kernel's ``SO_PEERCRED`` names the asking process (pid and uid as of
its ``connect()``); the daemon checks the pid still belongs to that uid (a pid reused by
another user's process answers nothing), computes its scope with the outbox's rule
(:func:`elliptiofs.readlog.scope_for`, ``--scope``), and answers that scope's artifact
ids first read before the request arrived, with the lake's store URL (the client keeps
the answer only for a save into the same lake). A process cannot name another process
or scope: the request is a fixed version line. Each connection gets
:data:`CONNECTION_TIMEOUT` seconds; at most :data:`MAX_CLIENTS` are served at once.

A socket that cannot be made (a directory the daemon may not write) is logged as a
WARNING; the mount serves on, and library saves just do not see its reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import time
from pathlib import Path

import trio

from elliptio.mountreads import REQUEST, answer, daemon_socket_dir, socket_name, socket_path

from .readlog import ReadLog, ReadLogError, scope_for

log = logging.getLogger(__name__)

#: seconds one client may take from connect to the answer sent
CONNECTION_TIMEOUT = 5.0
#: clients served at once (more wait in the listen backlog)
MAX_CLIENTS = 16
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def process_uid(pid: int) -> int | None:
    """The effective uid of *pid* now (``/proc/<pid>/status``), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


def runs_as(pid: int, uid: int) -> bool:
    """Whether *pid* is a process of effective uid *uid* now.

    The owner of ``/proc/<pid>`` is the process's effective uid whenever it may dump
    core, which one ``stat`` tells (µs); the status file costs ~0.2 ms (the kernel writes
    it out, memory statistics included, under the process's memory-map lock), so it is
    read only when the owner is another: then the process may be one the kernel shows as
    root (not dumpable: setuid, or it said so), or it is not *uid*'s. (A root asker is
    believed on the owner alone: a pid reused by a non-dumpable process shows root too,
    but root may read the read log itself, so there is nothing to keep from it.)"""
    try:
        if os.stat(f"/proc/{pid}").st_uid == uid:
            return True
    except OSError:
        return False
    return process_uid(pid) == uid


def reads_of(readlog: ReadLog, pid: int, uid: int, mode: str, before: float) -> list[str]:
    """What the process *pid* (run by *uid*) may be told: its scope's artifacts first read
    before *before*. Nothing when *pid* no longer is *uid*'s process."""
    if pid > 0 and not runs_as(pid, uid):
        return []
    return readlog.artifacts_for(scope_for(pid, uid, mode), before=before)


class ReadsSocket:
    """The listening socket of one mount and its serving task (:meth:`run`)."""

    def __init__(self, readlog: ReadLog, mode: str, store: str, mountpoint: str,
                 directory: str) -> None:
        self.readlog, self.mode, self.store = readlog, mode, store
        self.mountpoint, self.directory = mountpoint, directory
        self.name = socket_name(mountpoint)
        self.path = os.path.join(directory, self.name)
        self._sock: trio.socket.SocketType | None = None
        self._ino: tuple[int, int] | None = None
        self._limit = trio.CapacityLimiter(MAX_CLIENTS)

    @classmethod
    def for_daemon(cls, readlog: ReadLog, mode: str, store: str, mountpoint: str,
                   readlog_given: bool) -> ReadsSocket:
        return cls(readlog, mode, store, mountpoint,
                   daemon_socket_dir(readlog.path, readlog_given))

    def open(self) -> bool:
        """Bind and listen; False (and a WARNING) when that is not possible."""
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)  # left by a daemon of this mountpoint that died
            plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with socket_path(self.directory, self.name) as address:
                    plain.bind(address)
                    os.chmod(address, 0o666)  # every local user may ask (about itself)
                plain.listen(64)
            except BaseException:
                plain.close()
                raise
            sock = trio.socket.from_stdlib_socket(plain)
        except OSError as exc:
            log.warning("cannot open the lineage socket %s (%s): library saves will not "
                        "see reads through this mount", self.path, exc.strerror or exc)
            return False
        st = os.lstat(self.path)
        self._sock, self._ino = sock, (st.st_dev, st.st_ino)
        log.debug("answering lineage queries on %s", self.path)
        return True

    def close(self) -> None:
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:  # still ours, not a newer daemon's
                os.unlink(self.path)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled (then the socket is closed and removed)."""
        if not self.open():
            task_status.started()
            return
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                assert self._sock is not None
                while True:
                    conn, _ = await self._sock.accept()
                    await self._limit.acquire_on_behalf_of(conn)
                    nursery.start_soon(self._serve, conn)
        finally:
            self.close()

    async def _serve(self, conn: trio.socket.SocketType) -> None:
        try:
            with conn, trio.move_on_after(CONNECTION_TIMEOUT):
                pid, uid, _ = _CRED.unpack(conn.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
                request = b""
                while not request.endswith(b"\n") and len(request) <= len(REQUEST):
                    chunk = await conn.recv(64)
                    if not chunk:
                        break
                    request += chunk
                if request != REQUEST:
                    return  # not our client: no answer
                before = time.time()
                try:
                    # on the trio thread, as the read log's writes are (readonly.py): one
                    # indexed lookup of one scope's rows (~0.05 ms at 1,000,000 rows), less
                    # than a hand-off to a worker thread and back costs, and each hand-off
                    # waits for the OS to run that thread, which on a busy machine is
                    # what a save waited for (bench/bench_readlog.py, docs/mount.md)
                    ids = reads_of(self.readlog, pid, uid, self.mode, before)
                except ReadLogError as exc:
                    log.warning("cannot answer a lineage query: %s", exc)
                    return
                data = answer(ids, self.store, self.mountpoint)
                while data:
                    sent = await conn.send(data)
                    data = data[sent:]
        except OSError as exc:
            log.debug("lineage query from a client that went away: %s", exc)
        finally:
            self._limit.release_on_behalf_of(conn)
