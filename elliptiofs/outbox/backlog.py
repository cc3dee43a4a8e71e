"""Artifacts an outbox commit saved while the catalogue could not take them: written to the
catalogue again, with backoff, until it does.

A save whose own catalogue write fails still succeeds (``catalogued=False``: the artifact
is in the store, its metadata locked). The entry cannot stay pending — saving it again
would make a second artifact — so it becomes its link ``../artifacts/<id>`` as usual; but
the mount's artifacts/ and query directories answer from the catalogue, so the link would
dangle until someone ran ``eio reindex``. With a network catalogue (PostgreSQL, MongoDB) an
outage is the common case, so the outbox claims the metadata again itself: the first try
after *retry* seconds, the delay doubling up to *retry_max*; once it lands, the kernel is
told (the same hook as a commit), and the link resolves.

The claim is the catalogue's own (:meth:`elliptio.catalogue.Catalogue.claim_many`):
idempotent, first claim wins — a conflict, impossible for a fresh id unless someone planted
one, ends the retries with a WARNING. The backlog is in memory only: a daemon stopped with
one leaves it to ``eio reindex``, as the save's own warning says. Runs on the trio thread;
each claim in a worker thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from elliptio.errors import CatalogueError

log = logging.getLogger(__name__)

#: how often the backlog looks for a claim that is due (seconds)
TICK = 0.2


@dataclass
class _Waiting:
    artifact: Any  # elliptio.Artifact
    delay: float
    due: float


class Backlog:
    """Claims the metadata of uncatalogued artifacts in ``lake.catalogue`` until it takes
    them; *on_catalogued(artifact)* runs on the trio thread after each success."""

    def __init__(self, lake: Any, *, retry: float, retry_max: float,
                 on_catalogued: Callable[[Any], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lake = lake
        self.retry, self.retry_max = max(retry, TICK), retry_max
        self.on_catalogued = on_catalogued
        self.clock = clock
        self._waiting: dict[str, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, artifact: Any) -> None:
        """*artifact* was saved but not catalogued: claim it again later."""
        self._waiting[artifact.id] = _Waiting(artifact, self.retry, self.clock() + self.retry)
        log.info("outbox: %s is saved but not catalogued (the catalogue failed); the "
                 "outbox claims it again in %.0f s", artifact.id, self.retry)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(TICK)
            now = self.clock()
            for aid, w in list(self._waiting.items()):
                if w.due <= now:
                    await self._claim(aid, w)

    async def _claim(self, aid: str, w: _Waiting) -> None:
        w.due = math.inf  # in flight
        catalogue = self.lake.catalogue
        try:
            # abandoned on cancel: a catalogue that hangs never holds the unmount back
            _written, conflicts = await trio.to_thread.run_sync(
                catalogue.claim_many, [w.artifact.metadata], abandon_on_cancel=True)
        except CatalogueError as exc:
            w.delay = min(self.retry_max, w.delay * 2)
            w.due = self.clock() + w.delay
            log.info("outbox: %s is still not catalogued, retrying in %.0f s: %s", aid,
                     w.delay, exc)
            return
        del self._waiting[aid]
        if conflicts:
            log.warning("outbox: %s is not catalogued: %s", aid, conflicts[0])
            return
        log.info("outbox: %s is catalogued now", aid)
        self.on_catalogued(w.artifact)
