"""SQLite connections, one per thread, every one closed: :class:`PerThread`.

sqlite3 objects must not cross threads, so the catalogue (and the daemon's read log) keep
a connection per thread. Threads come and go (the web server's worker threads, the
daemon's pools, a save's or a reindex's own pool); a connection left in a thread's local
data would stay open until the garbage collector finds it (Python 3.13 says
``ResourceWarning: unclosed database`` then). Here each is closed when its thread ends or
when its owner closes, whichever comes first.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

__all__ = ["PerThread", "open_wal"]


def open_wal(path: str, timeout: float,
             set_up: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """A connection to the SQLite file *path* (its directory made if needed) as
    :class:`PerThread` wants it: autocommit, ``check_same_thread=False``, WAL journal,
    ``synchronous=NORMAL``; then *set_up* (the owner's pragmas and schema). A connection
    whose set-up fails is closed before the error goes on; ``OSError`` and
    ``sqlite3.Error`` reach the caller untranslated, to say in its own words."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                         check_same_thread=False)  # see PerThread
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        set_up(db)
    except BaseException:
        db.close()  # a connection that failed its set-up is nobody's
        raise
    return db


class PerThread:
    """One sqlite3 connection per thread, made by *connect* on a thread's first
    :meth:`get`, and closed when that thread ends or at :meth:`close`, whichever comes
    first. A thread that asks again after :meth:`close` gets a new connection. An owner
    that forgets :meth:`close` gets a ``ResourceWarning`` naming *what* when this object
    is collected, as for an unclosed file (the connections are closed then).

    *connect* makes the connection with ``check_same_thread=False`` (only its own thread
    uses it, but :meth:`close` closes it from whichever thread calls that) and closes it
    itself when setting it up fails. A connection closed while its thread is inside a call
    makes that call fail with :class:`sqlite3.ProgrammingError` (a worker of a closing
    daemon still running one, say): SQLite serialises the two, nothing breaks."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], what: str) -> None:
        self._connect = connect
        self._local = threading.local()
        self._open: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): a thread's older connection is stale
        # not at exit: the threads' finalizers close what is left then
        weakref.finalize(self, _forgotten, what, self._open, self._lock).atexit = False

    def get(self) -> sqlite3.Connection:
        """This thread's connection (made now if it has none since the last close)."""
        local = self._local
        if getattr(local, "generation", None) == self._generation:
            return local.db
        db = self._connect()
        with self._lock:
            self._open.add(db)
            generation = self._generation
        # A thread's local data goes when the thread ends, and the token with it: its
        # finalizer closes the connection then (or at exit, so that what an owner left
        # open is closed and its write-ahead log checkpointed, not merely dropped).
        token = _ThreadToken()
        weakref.finalize(token, _close_one, db, self._open, self._lock)
        local.db, local.token, local.generation = db, token, generation
        return db

    def open_count(self) -> int:
        """How many connections are open (for tests and people)."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._generation += 1
            dbs = list(self._open)
            self._open.clear()
        for db in dbs:
            db.close()


class _ThreadToken:
    """Lives exactly as long as one thread's connection may (see PerThread.get)."""


def _close_one(db: sqlite3.Connection, open_: set[sqlite3.Connection],
               lock: threading.Lock) -> None:
    with lock:
        open_.discard(db)
    db.close()


def _forgotten(what: str, open_: set[sqlite3.Connection], lock: threading.Lock) -> None:
    with lock:
        dbs = list(open_)
        open_.clear()
    for db in dbs:
        db.close()
    if dbs:
        warnings.warn(f"{what} was not closed ({len(dbs)} connection(s) closed now)",
                      ResourceWarning, stacklevel=1)
