"""The spool: the directory where the outbox stages what is copied in, locked by one
daemon. It holds a file's bytes in ``data/<sid>`` (written with ``pwrite`` by the
operations, read back by the commit) and ``journal.sqlite``, the namespace as it was at
its last change (names, parents, owners, modes, metadata xattrs, the writers' lineage
scopes and command lines, commit states; empty directories too) — written on every change
of the namespace, not on every write. Both survive a kill of the daemon: the bytes sit in
the kernel's page cache of a local file, the journal is SQLite in WAL mode.

On start :meth:`Journal.load` rebuilds the namespace and moves every top-level entry
that was not committed under ``.recovered/`` (never committed or dropped silently); staged
bytes the journal does not know are dropped only when it holds rows (they belonged to
entries it says were deleted or committed) — without it they come back as
``.recovered/unnamed-<sid>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elliptio.errors import ConfigError

from .namespace import RECOVERED, RECOVERED_STATE, ROOT_SID, Item, Namespace

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: columns each older version lacks, added on open (v1: who wrote and who set xattrs)
MIGRATIONS = {1: ("writer_uids TEXT NOT NULL DEFAULT '[]'",
                  "xattr_uids TEXT NOT NULL DEFAULT '{}'")}


def create_tables(db: sqlite3.Connection) -> None:
    db.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS items (
            sid      INTEGER PRIMARY KEY,  -- stable number; a file's bytes are data/<sid>
            parent   INTEGER NOT NULL,     -- 0 outbox/, -1 outbox/.recovered/, else a dir's sid
            name     TEXT NOT NULL,        -- name in the parent
            kind     TEXT NOT NULL,        -- file | dir | link (a committed entry)
            uid      INTEGER NOT NULL,     -- owner: the creating process's uid
            gid      INTEGER NOT NULL,
            mode     INTEGER NOT NULL,     -- permission bits shown by stat
            mtime_ns INTEGER NOT NULL,
            state    TEXT NOT NULL,        -- staging|committing|pending|error|committed|recovered
            artifact TEXT,                 -- link: the committed artifact's id
            error    TEXT,                 -- why it is not committed (user.eio.error)
            xattrs   TEXT NOT NULL,        -- JSON {{name: hex value}}: user.* set by the user
            scopes   TEXT NOT NULL,        -- JSON [read scope of each writer] (lineage)
            writers  TEXT NOT NULL,        -- JSON [command line of each writer] (provenance)
            writer_uids TEXT NOT NULL DEFAULT '[]',  -- JSON [uid that created it or opened
                                           -- it to write]: a sidecar counts when all are
                                           -- its entry's owner ('[]': the creator alone)
            xattr_uids  TEXT NOT NULL DEFAULT '{{}}' -- JSON {{xattr name: uid that set it}}:
                                           -- only the owner's count (absent: the owner)
        );
        CREATE TABLE IF NOT EXISTS schema (
            version INTEGER NOT NULL       -- SCHEMA_VERSION of the code that created it
        );
        INSERT INTO schema(version) SELECT {SCHEMA_VERSION}
            WHERE NOT EXISTS (SELECT 1 FROM schema);
        """
    )


class Journal:
    """The spool directory *spool*, locked for this daemon: its journal and its data
    files. Raises :class:`~elliptio.errors.ConfigError` when it cannot be used."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.data = spool / "data"
        self._lock_fd = self._lock()
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _lock(self) -> int:
        try:
            self.data.mkdir(parents=True, exist_ok=True)
            os.chmod(self.spool, 0o700)  # staged bytes of every user: the daemon's only
            fd = os.open(self.spool / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot use the spool directory {self.spool}: "
                              f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"the spool directory {self.spool} is in use by another "
                              "elliptiofs; give each mount its own ELLIPTIO_SPOOL") from None
        return fd

    def _open(self) -> sqlite3.Connection:
        path = self.spool / "journal.sqlite"
        #: the journal was not there: what data/ holds is known to nobody (load keeps it)
        self.created = not path.exists()
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # survives a kill of the daemon
            create_tables(db)
            (version,) = db.execute("SELECT version FROM schema").fetchone()
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise ConfigError(f"cannot open the outbox journal {path}: {exc}") from None
        if version in MIGRATIONS:
            try:
                db.execute("BEGIN")  # all of the upgrade or none
                for column in MIGRATIONS[version]:
                    db.execute(f"ALTER TABLE items ADD COLUMN {column}")
                db.execute("UPDATE schema SET version = ?", (SCHEMA_VERSION,))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.close()  # rolls the upgrade back
                raise ConfigError(f"cannot upgrade the outbox journal {path}: {exc}") \
                    from None
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            db.close()
            raise ConfigError(f"outbox journal {path} has schema version {version}, this "
                              f"elliptiofs needs {SCHEMA_VERSION}")
        return db

    def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)

    def data_path(self, item: Item) -> Path:
        """Where the staged bytes of file *item* are."""
        return self.data / str(item.sid)

    # -- writing ----------------------------------------------------------------------------
    def persist(self, item: Item) -> None:
        """Write *item*'s row as it is now (outbox/ and .recovered/ have none)."""
        if item.sid <= ROOT_SID:
            return
        assert item.parent is not None
        self._db.execute(
            "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item.sid, item.parent.sid, item.name, item.kind, item.uid, item.gid, item.mode,
             item.mtime_ns, item.state, item.artifact, item.error,
             json.dumps({k: v.hex() for k, v in item.xattrs.items()}),
             json.dumps(item.scopes), json.dumps(item.writers),
             json.dumps(item.writer_uids), json.dumps(item.xattr_uids)))

    def delete(self, items: list[Item], *, data: bool = True) -> list[Path]:
        """Delete the rows of *items* (dropped from the namespace) and their staged bytes;
        without *data*, return the files for the caller to delete once it is safe."""
        files = []
        for item in items:
            self._db.execute("DELETE FROM items WHERE sid = ?", (item.sid,))
            if item.kind == "file":
                files.append(self.data_path(item))
        if data:
            for f in files:
                # open handles keep working on the unlinked file, as on any filesystem
                f.unlink(missing_ok=True)
        return files

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction: the journal holds all of what happens inside, or none."""
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- loading ----------------------------------------------------------------------------
    def load(self, ns: Namespace) -> None:
        """Rebuild *ns* from the journal; move what was not committed into .recovered/
        (the daemon stopped: nothing is committed or dropped silently)."""
        rows = self._db.execute("SELECT * FROM items ORDER BY sid").fetchall()
        by_sid: dict[int, tuple[Any, ...]] = {r[0]: r for r in rows}
        for r in rows:
            sid, _, name, kind, uid, gid, mode, mtime_ns, state, aid, error, xa, sc, wr, \
                wu, xu = r
            item = Item(sid, None, name, kind, uid=uid, gid=gid, mode=mode,
                        mtime_ns=mtime_ns, changed=ns.clock())
            item.state, item.artifact, item.error = state, aid, error
            item.xattrs = {k: bytes.fromhex(v) for k, v in json.loads(xa).items()}
            item.scopes, item.writers = json.loads(sc), json.loads(wr)
            item.writer_uids, item.xattr_uids = json.loads(wu), json.loads(xu)
            ns.add(item)
        for r in rows:
            item = ns.items[r[0]]
            parent = ns.items.get(r[1]) if r[1] in by_sid or r[1] <= ROOT_SID else None
            if parent is None or parent.children is None:
                parent = ns.recovered  # its directory's row is gone: keep it anyway
            ns.attach(item, parent, ns.free_name(parent, item.name))
            if item.kind == "file":
                path = self.data_path(item)
                try:
                    st = path.stat()
                    item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
                except FileNotFoundError:
                    path.touch(mode=0o600)  # created, never written
        for item in list((ns.root.children or {}).values()):
            if item.kind == "link" or item is ns.recovered:  # .recovered/ is not an entry
                continue
            ns.recover(item)
            self.persist(item)
            log.warning("outbox: %s of %s was not committed when the daemon stopped; kept "
                        "as outbox/%s/%s (commit or delete it)", item.name,
                        ns.owner_name(item.uid), RECOVERED, item.name)
        known = {str(s) for s, i in ns.items.items() if i.kind == "file"}
        unknown = [f for f in self.data.iterdir() if f.name not in known
                   and f.name.isdigit() and f.is_file()]
        if self.created or not rows:
            # no journal (deleted, a spool restored without it, or one just created when
            # the daemon died): nobody knows what these bytes are, so they are kept
            self._keep_unnamed(ns, unknown)
            return
        for f in unknown:
            # the bytes of an entry deleted or committed: the journal said so first, then
            # they go (saving._committed), so a crash in between leaves only these
            f.unlink()

    def _keep_unnamed(self, ns: Namespace, files: list[Path]) -> None:
        """Staged bytes without a journal row: each one a recovered entry
        ``.recovered/unnamed-<sid>``, owned by its spool file's owner (the daemon's user:
        only the journal knew the writer), never dropped."""
        kept = []
        with self.transaction():
            for f in sorted(files, key=lambda f: int(f.name)):
                st = f.stat()
                item = ns.add(Item(int(f.name), None, f"unnamed-{f.name}", "file",
                                   uid=st.st_uid, gid=st.st_gid, mode=0o600,
                                   mtime_ns=st.st_mtime_ns, changed=ns.clock()))
                item.size = st.st_size
                ns.attach(item, ns.recovered, ns.free_name(ns.recovered, item.name))
                item.state = RECOVERED_STATE
                item.error = ("the outbox journal was missing when the daemon started: "
                              "the name, directory, writer and metadata of these bytes "
                              "are lost, the bytes are kept (move the file into outbox/ "
                              "under its name to commit it, or delete it)")
                self.persist(item)
                kept.append(item)
        if kept:
            log.warning("outbox: the journal %s was missing at start; kept the %d staged "
                        "file(s) it would have named as outbox/%s/unnamed-<n>, owned by "
                        "uid %s (commit or delete them)", self.spool / "journal.sqlite",
                        len(kept), RECOVERED, ", ".join(sorted({str(i.uid) for i in kept})))
