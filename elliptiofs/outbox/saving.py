"""What a commit does: save a staged entry through the library's one save path
(:meth:`elliptio.Lake.save_entries`, in a worker thread), with the metadata, lineage
and provenance it gets, then replace it in the namespace and the journal by a link to the
new artifact, in one journal transaction, and drop its staged bytes.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from elliptio import Lake
from elliptio.errors import ElliptioError, UsageError

from ..readlog import ReadLog, ReadLogError
from .committer import Failed, Refused
from .journal import Journal
from .metadata import ignored, parse_sidecars, plan, sidecar_sources, writer_provenance
from .namespace import Item, Namespace

log = logging.getLogger(__name__)

#: commits saving at the same time
CONCURRENT_SAVES = 2


class Saver:
    """Saves the entries of *ns* staged in *journal*'s spool into *lake*, their lineage
    from *readlog* (None: no lineage from reads)."""

    def __init__(self, lake: Lake, readlog: ReadLog | None, ns: Namespace,
                 journal: Journal) -> None:
        self.lake, self.readlog, self.ns, self.journal = lake, readlog, ns, journal
        self._saving = trio.CapacityLimiter(CONCURRENT_SAVES)

    def lineage(self, top: Item) -> list[str]:
        """Every artifact read in the scopes of *top*'s writers, in first-read order."""
        scopes: list[str] = []
        for item in top.with_below():
            scopes += [s for s in item.scopes if s not in scopes]
        out: list[str] = []
        if self.readlog is None:
            return out
        for s in scopes:
            out += [a for a in self.readlog.artifacts_for(s) if a not in out]
        return out

    async def save(self, top: Item) -> tuple[Any, list[str]]:
        """Save *top* and replace it by its link; return the artifact and the names in
        *top*'s directory that changed (its own, its sidecar's). Raises
        :class:`~.committer.Refused` or :class:`~.committer.Failed`."""
        user = self.ns.owner_name(top.uid)
        others = ignored(top, self.ns)
        if others:
            log.warning("outbox: %s of %s: ignoring what another user wrote for it: %s",
                        top.name, user, "; ".join(others))
        try:
            sources = sidecar_sources(top, self.ns, self.journal.data_path)
            # parsed in a worker thread: a large sidecar never stalls the mount (the
            # entry is committing meanwhile, so nothing in it changes)
            sidecars = await trio.to_thread.run_sync(parse_sidecars, sources)
            entries, meta = plan(top, self.ns, self.journal.data_path, sidecars)
        except (UsageError, OSError) as exc:
            raise Refused(str(exc)) from None
        provenance, writer = writer_provenance(top, user, meta["based_on"] is not None)

        def save() -> Any:
            based_on = meta["based_on"]
            if based_on is None:
                based_on = self.lineage(top)
            return self.lake.save_entries(entries, info=meta["info"], tags=meta["tags"],
                                          based_on=based_on, user=user,
                                          extra_provenance=provenance, writer=writer)

        async with self._saving:
            try:
                artifact = await trio.to_thread.run_sync(save)
            except UsageError as exc:
                raise Refused(str(exc)) from None
            except (ElliptioError, ReadLogError) as exc:
                raise Failed(str(exc)) from None
            except Exception as exc:  # a bug: keep everything, say so, retry later
                log.exception("outbox: committing %s failed", top.name)
                raise Failed(f"internal error: {exc!r}") from None
        return artifact, self._committed(top, artifact)

    def _committed(self, top: Item, artifact: Any) -> list[str]:
        # one transaction: the journal never holds both the staged entry and its link
        with self.journal.transaction():
            link, consumed, dropped = self.ns.replace_by_link(top, artifact.id)
            files = self.journal.delete(dropped, data=False)
            self.journal.persist(link)
        for f in files:  # after the journal: a crash in between leaves only orphans
            f.unlink(missing_ok=True)
        log.info("outbox: %s of %s committed as %s", top.name, artifact.user, artifact.id)
        return [top.name, *(side.name for side in consumed)]
