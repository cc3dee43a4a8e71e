"""Claiming accepted metadata in a catalogue: dedup references checked, then the first
claim of each id kept (see :mod:`elliptio.trust` and
:meth:`elliptio.catalogue.Catalogue.claim_many`). The one step every indexer path ends
in: :func:`~elliptio.indexer.reindex`, :func:`~elliptio.indexer.lambda_handler`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalogue import Catalogue, Conflict
from ..trust import dedup_references, reference_problems

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class Claimed:
    indexed: list[str] = field(default_factory=list)  # ids written
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    conflicts: list[Conflict] = field(default_factory=list)
    #: (key, metadata) whose dedup references name an artifact not catalogued yet
    waiting: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def claim(catalogue: Catalogue, store: Store,
          batch: Sequence[tuple[str, dict[str, Any]]]) -> Claimed:
    """Check the dedup references of the accepted metadata in *batch* ((key, metadata)
    pairs) against *catalogue* and the batch itself, and claim what passes."""
    out = Claimed()
    pending: dict[str, dict[str, Any]] = {}
    for _key, md in batch:
        pending.setdefault(md["id"], md)
    ready: list[dict[str, Any]] = []
    for key, md in batch:
        problems = (reference_problems(md, catalogue, store, pending)
                    if dedup_references(md) else [])
        if problems is None:
            out.waiting.append((key, md))
        elif problems:
            out.quarantined.append((key, "; ".join(problems)))
        else:
            ready.append(md)
    if ready:
        _written, out.conflicts = catalogue.claim_many(ready)
        refused = {id(md) for md in ready for c in out.conflicts
                   if md["id"] == c.id and md["prefix"] == c.refused}
        out.indexed = [md["id"] for md in ready if id(md) not in refused]
    return out


def unresolved(md: dict[str, Any]) -> str:
    """Why *md*, still waiting when nothing more can be claimed, is quarantined."""
    objects = sorted({r["object"] for r in dedup_references(md)})
    return ("a deduplicated file refers to an artifact that is not catalogued "
            f"({', '.join(objects)}): reindex again once it is")
