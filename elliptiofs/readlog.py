"""Which reader scope read which artifact: lineage from reads through the mount.

Every ``open()`` of an artifact's user file through the mount records (reader scope ->
artifact id) here; the outbox turns the artifacts of the writing process's scope into the
new artifact's ``based_on``. ``read()`` carries no caller and page-cache hits never reach
the daemon, so ``open()`` (whose request context has pid and uid) is the place.

A scope is a string, from :func:`scope_for`:

- ``session`` (default): the reader's session (``getsid``), keyed with the session
  leader's start time and the boot id, so a session id reused by the kernel later, or
  after a reboot, is a new scope. Everything run from one login shell or one job script
  shares a session.
- ``pid``: the reading process alone (keyed with its start time and the boot id).
- ``uid``: everything the user reads, ever (until pruned).

A scope of a process or session that is gone can never be read in or written from again:
the daemon drops its records an hour after its last read (:func:`keep_pruned`, at start
and hourly), except those an outbox entry still staged takes its lineage from. ``uid``
scopes never end.

The log is a small SQLite file in WAL mode at ``Settings.readlog`` (``ELLIPTIO_READLOG``;
default beside the catalogue in the user data directory), readable by the daemon's user
alone (mode 0600: it says what everyone read). Library saves learn their own scope's
reads by asking the daemon (:mod:`elliptiofs.readsock`), never from the file. A record is committed before ``open()`` returns; ``synchronous=NORMAL`` keeps it
across a crash of the daemon (not necessarily across a power loss).

The API the outbox uses::

    log = ReadLog(settings.readlog)
    scope = scope_for(ctx.pid, ctx.uid, "session")
    log.record(scope, artifact_id)          # idempotent
    log.artifacts_for(scope)                # ids in first-read order
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import trio

from elliptio.connections import PerThread, open_wal
from elliptio.errors import ConfigError, ElliptioError

from . import procinfo

log = logging.getLogger(__name__)

SCOPES = ("session", "pid", "uid")
SCHEMA_VERSION = 1
BUSY_TIMEOUT = 5.0
#: (scope, artifact) pairs remembered as written, so repeated opens skip the database
RECENT = 65536
#: how often the daemon drops the records of scopes that ended (seconds; also at start)
PRUNE_EVERY = 3600.0
#: records younger than this stay even when their scope ended (seconds): another daemon
#: sharing the read log may have staged entries that still take their lineage from them
PRUNE_AGE = 3600.0


class ReadLogError(ElliptioError):
    """The read log cannot be opened or written."""


def create_tables(db: sqlite3.Connection) -> None:
    db.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS reads (
            scope    TEXT NOT NULL,     -- reader scope from scope_for(): session:/pid:/uid:...
            artifact TEXT NOT NULL,     -- artifact id whose file was opened
            first    REAL NOT NULL,     -- unix time of the first open in this scope
            pid      INTEGER NOT NULL,  -- the process that opened it first (for people)
            uid      INTEGER NOT NULL,  -- its uid
            PRIMARY KEY (scope, artifact)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS reads_first ON reads(first);
        CREATE TABLE IF NOT EXISTS schema (
            version INTEGER NOT NULL    -- SCHEMA_VERSION of the code that created the file
        );
        INSERT INTO schema(version) SELECT {SCHEMA_VERSION}
            WHERE NOT EXISTS (SELECT 1 FROM schema);
        """
    )


# -- scopes ---------------------------------------------------------------------------------
def scope_for(pid: int, uid: int, mode: str = "session") -> str:
    """The reader scope of process *pid* (run by *uid*) under *mode* (session|pid|uid).

    Falls back to the uid scope when the process cannot be seen (pid 0: a reader in
    another pid namespace; or a process that is gone).
    """
    if mode not in SCOPES:
        raise ConfigError(f"unknown read scope {mode!r}: use one of {', '.join(SCOPES)}")
    if mode == "uid" or pid <= 0:
        return f"uid:{uid}"
    if mode == "pid":
        start = procinfo.start_time(pid)
        return f"pid:{procinfo.BOOT}:{pid}:{start}" if start else f"uid:{uid}"
    try:
        sid = os.getsid(pid)
    except OSError:
        return f"uid:{uid}"
    # The session id is the leader's pid; the kernel does not hand it out again while any
    # member lives, but may after. The leader's start time tells two sessions apart; a
    # session whose leader has exited keeps "gone" (its members still agree on it).
    start = procinfo.start_time(sid) or "gone"
    return f"session:{procinfo.BOOT}:{sid}:{start}"


def scope_ended(scope: str, sessions: set[int] | None) -> bool:
    """Can no process have *scope* any more? A process or a session leader that is gone
    (or another boot) does not come back under its start time; a session whose leader
    has gone ends with its last member (*sessions*: the session ids of every process,
    None: unknown). ``uid:`` scopes never end, nor does anything this module did not make.
    """
    kind, _, rest = scope.partition(":")
    boot, _, rest = rest.partition(":")
    pid, _, start = rest.partition(":")
    if kind not in ("pid", "session") or not pid.isdigit() or not start:
        return False
    if boot != procinfo.BOOT:
        return True
    if start == "gone":
        return sessions is not None and int(pid) not in sessions
    return procinfo.read_start_time(int(pid)) != start


async def prune_ended(readlog: ReadLog, in_use: Callable[[], set[str]], *,
                      age: float = PRUNE_AGE) -> int:
    """Drop the records of scopes that ended (:func:`scope_ended`) whose last read is
    more than *age* seconds old, except the scopes in *in_use()* (the outbox's staged
    entries still take their lineage from them); return how many were dropped."""
    ended = await trio.to_thread.run_sync(readlog.ended_scopes, age)
    if not ended:
        return 0
    # scope_for may hand out an ended scope from its cache of start times for START_TTL
    # more; after that no entry can take it up any more
    await trio.sleep(procinfo.START_TTL)
    keep = in_use()
    # no await from in_use() to the delete: nothing is staged in between
    return readlog.forget_scopes([s for s in ended if s not in keep])


async def keep_pruned(readlog: ReadLog, in_use: Callable[[], set[str]], *,
                      every: float = PRUNE_EVERY, age: float = PRUNE_AGE) -> None:
    """The daemon's task: :func:`prune_ended` at start and then every *every* seconds."""
    while True:
        try:
            n = await prune_ended(readlog, in_use, age=age)
            log.debug("read log: dropped %d records of readers that are gone", n)
        except ReadLogError as exc:
            log.warning("cannot prune the read log: %s", exc)
        await trio.sleep(every)


# -- the log ---------------------------------------------------------------------------------
def private(path: str) -> None:
    """Make the read log *path* (and its WAL files, which SQLite creates with the same
    mode) readable by its owner only: it tells what everyone read."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
    for p in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(p)
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(p, 0o600)


class ReadLog:
    """The durable (scope -> artifact) record. Safe to use from several threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connections = PerThread(self._connect, f"read log {path}")
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._db()  # open now: an unusable path is reported at start

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def _connect(self) -> sqlite3.Connection:
        try:
            private(self.path)
            return open_wal(self.path, BUSY_TIMEOUT, self._set_up)
        except sqlite3.Error as exc:
            raise ReadLogError(f"cannot open read log {self.path}: {exc}") from exc
        except OSError as exc:
            raise ReadLogError(f"cannot open read log {self.path}: {exc.strerror}") from exc

    def _set_up(self, db: sqlite3.Connection) -> None:
        has = db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                         "AND name='schema'").fetchone()
        if has is None:
            create_tables(db)  # idempotent: two processes may race to create it
        else:
            (version,) = db.execute("SELECT version FROM schema").fetchone()
            if version != SCHEMA_VERSION:
                raise ReadLogError(f"read log {self.path} has schema version {version}, "
                                   f"this ElliptIO needs {SCHEMA_VERSION}")

    def record(self, scope: str, artifact_id: str, *, pid: int = 0, uid: int = 0) -> None:
        """Record that *scope* read *artifact_id*. Idempotent; committed on return."""
        key = (scope, artifact_id)
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return
        try:
            self._db().execute(
                "INSERT OR IGNORE INTO reads(scope, artifact, first, pid, uid) "
                "VALUES (?,?,?,?,?)", (scope, artifact_id, time.time(), pid, uid))
        except sqlite3.Error as exc:
            raise ReadLogError(f"cannot write read log {self.path}: {exc}") from exc
        with self._lock:
            self._recent[key] = None
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)

    def artifacts_for(self, scope: str, before: float | None = None) -> list[str]:
        """Artifact ids read in *scope* (first read before the unix time *before*, if
        given), in the order they were first read."""
        try:
            rows = self._db().execute(
                "SELECT artifact FROM reads WHERE scope = ? AND first < ? "
                "ORDER BY first, artifact",
                (scope, float("inf") if before is None else before)).fetchall()
        except sqlite3.Error as exc:
            raise ReadLogError(f"cannot read read log {self.path}: {exc}") from exc
        return [r[0] for r in rows]

    def scopes(self) -> list[str]:
        """Every scope with records, sorted (for tests and people inspecting the log; the
        daemon does not call it)."""
        rows = self._db().execute("SELECT DISTINCT scope FROM reads ORDER BY scope").fetchall()
        return [r[0] for r in rows]

    def ended_scopes(self, older_than: float = 0.0) -> list[str]:
        """Scopes that ended (:func:`scope_ended`) whose last record is more than
        *older_than* seconds old."""
        try:
            # its own connection, closed here: the daemon calls this from a worker thread
            # (it reads /proc too), whose connection nothing would close
            with contextlib.closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT)) as db:
                rows = db.execute(
                    "SELECT scope FROM reads GROUP BY scope HAVING MAX(first) < ? "
                    "ORDER BY scope", (time.time() - older_than,)).fetchall()
        except sqlite3.Error as exc:
            raise ReadLogError(f"cannot read read log {self.path}: {exc}") from exc
        live = procinfo.sessions()
        return [r[0] for r in rows if scope_ended(r[0], live)]

    def forget_scopes(self, scopes: list[str]) -> int:
        """Drop every record of *scopes*; return how many."""
        n = 0
        try:
            for scope in scopes:
                n += self._db().execute("DELETE FROM reads WHERE scope = ?",
                                        (scope,)).rowcount
        except sqlite3.Error as exc:
            raise ReadLogError(f"cannot write read log {self.path}: {exc}") from exc
        with self._lock:
            self._recent.clear()
        return n

    def prune(self, older_than: float) -> int:
        """Drop records first made more than *older_than* seconds ago; return how many."""
        cur = self._db().execute("DELETE FROM reads WHERE first < ?",
                                 (time.time() - older_than,))
        with self._lock:
            self._recent.clear()
        return cur.rowcount

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one)."""
        self._connections.close()
