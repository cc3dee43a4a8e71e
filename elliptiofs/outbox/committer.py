"""When outbox entries commit: the schedule, apart from what a commit does.

A top-level entry commits when no handle is open anywhere in it and nothing in it has
changed for *quiet* seconds (its sidecar beside it too); or at once on the trigger
(:meth:`Committer.trigger`, ``setfattr -n user.eio.commit``). Never by itself: names
starting with ``.``, sidecars, directories holding no file, entries under
``.recovered/``, entries in state ``error``. A save that is refused (:class:`Refused`)
leaves the entry ``error`` until it changes; one that fails (:class:`Failed`: the store or
catalogue is down) leaves it ``pending`` and is tried again after *retry* seconds, the
delay doubling up to :data:`RETRY_MAX` — the outbox's one second attempt at a save.

The clock (monotonic seconds; the namespace stamps changes with the same one), the save
and "is anything open in it" are given, so the schedule is tested without a mount or a
sleep. Runs on the trio thread.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .namespace import (
    COMMITTING,
    ERROR,
    PENDING,
    SIDECAR_SUFFIX,
    STAGING,
    Item,
    Namespace,
    refuse,
)

log = logging.getLogger(__name__)

#: how often the scheduler looks for entries to commit (seconds)
TICK = 0.1
#: retry delays of a failing commit double up to this (seconds)
RETRY_MAX = 600.0


class Refused(Exception):
    """The entry cannot be saved as it is (bad sidecar, bad tag, ...): it needs its user."""


class Failed(Exception):
    """The save failed for a reason outside the entry (store or catalogue down): retried."""


class Committer:
    """Decides when the entries of *ns* commit and records how each commit ended.

    *save(top)* commits *top* (already ``committing``) and returns once it is saved, or
    raises :class:`Refused` / :class:`Failed`; *record(item)* journals a state change;
    *is_open(top)* says whether a handle is open on anything in *top*.
    """

    def __init__(self, ns: Namespace, *, quiet: float, retry: float,
                 save: Callable[[Item], Awaitable[None]],
                 record: Callable[[Item], None],
                 is_open: Callable[[Item], bool],
                 clock: Callable[[], float] = time.monotonic,
                 retry_max: float = RETRY_MAX) -> None:
        self.ns = ns
        self.quiet, self.retry, self.retry_max = quiet, retry, retry_max
        self.save, self.record, self.is_open = save, record, is_open
        self.clock = clock

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler: commit entries that became quiet, retry pending ones."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(TICK)
                for top in self.ready():
                    nursery.start_soon(self.commit, top)

    def ready(self) -> list[Item]:
        """The entries to commit now, each marked ``committing`` (with its ``done``
        event): the quiet ones, and the pending ones whose retry is due."""
        now = self.clock()
        out = []
        for top in list(self.ns.dirty):
            if self.due(top, now):
                self.ns.dirty.discard(top)
                self._start(top)  # atomic with the check: no await between
                out.append(top)
        for top in [i for i in (self.ns.root.children or {}).values()
                    if i.state == PENDING and i.retry_at <= now and not self.is_open(i)]:
            self._start(top)
            out.append(top)
        return out

    def due(self, top: Item, now: float) -> bool:
        """Should *top* commit now? Drops it from the dirty set when it never will."""
        if top.parent is not self.ns.root or top.kind == "link" or top.state != STAGING \
                or top.name.startswith(".") or top.name.endswith(SIDECAR_SUFFIX):
            self.ns.dirty.discard(top)
            return False
        if not self.ns.has_files(top):
            self.ns.dirty.discard(top)  # nothing to save yet; a new file marks it again
            return False
        if self.is_open(top) or now - top.changed < self.quiet:
            return False
        sidecar = self.ns.sidecar_of(top)
        return sidecar is None or (not self.is_open(sidecar)
                                   and now - sidecar.changed >= self.quiet)

    @staticmethod
    def _start(top: Item) -> None:
        top.done = trio.Event()
        top.state = COMMITTING

    async def trigger(self, item: Item) -> None:
        """The explicit trigger: commit *item*'s entry now and wait for the outcome
        (raised as the errno the caller gets)."""
        top = self.ns.top_of(item)
        if top is None or top.kind == "link":
            raise refuse(errno.EINVAL, "nothing to commit here")
        if top.state == COMMITTING:
            assert top.done is not None
            await top.done.wait()
        else:
            if self.is_open(top):
                raise refuse(errno.EBUSY, f"{top.name} is still open")
            if not self.ns.has_files(top):
                raise refuse(errno.EINVAL, f"{top.name} holds no files")
            self.ns.dirty.discard(top)
            self._start(top)
            await self.commit(top)
        if top.state == ERROR:
            raise refuse(errno.EINVAL, top.error or "refused")
        if top.state == PENDING:
            raise refuse(errno.EIO, top.error or "the commit failed; retrying")

    async def commit(self, top: Item) -> None:
        """Commit *top* (already marked ``committing`` by :meth:`ready` or the trigger)."""
        assert top.done is not None
        try:
            self.record(top)  # recovery must know a commit was under way
            try:
                await self.save(top)
            except Refused as exc:
                self._refused(top, str(exc))
            except Failed as exc:
                self._failed(top, str(exc))
        finally:
            top.done.set()

    def _refused(self, top: Item, message: str) -> None:
        top.state, top.error = ERROR, message
        self.record(top)
        log.warning("outbox: %s of %s is not committed: %s", top.name,
                    self.ns.owner_name(top.uid), message)

    def _failed(self, top: Item, message: str) -> None:
        top.retry_delay = min(self.retry_max,
                              top.retry_delay * 2 if top.retry_delay else self.retry)
        top.retry_at = self.clock() + top.retry_delay
        top.state = PENDING
        top.error = f"{message} (retrying in {top.retry_delay:.0f} s)"
        self.record(top)
        log.warning("outbox: committing %s of %s failed, retrying in %.0f s: %s", top.name,
                    self.ns.owner_name(top.uid), top.retry_delay, message)
