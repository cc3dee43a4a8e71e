"""What differs between two artifacts (``Artifact.diff(other)``, ``eio diff A B``): files
(by path, compared by sha256, with sizes), ``info`` (by dotted key), tags, ``based_on`` and
the environment (:mod:`elliptio.envdiff` between the two recorded environments).

Everything runs from *a* to *b*: "added" is in *b* only, "removed" in *a* only. ``info``
is flattened to dotted keys (``model.layers``); a list is one value. Values are kept as
they are (JSON-ready: what ``metadata.yaml`` holds). Like :mod:`elliptio.envdiff` this
module reads artifacts by duck typing and imports nothing of :mod:`elliptio.artifact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .envdiff import EnvDiff, compare, env_diff, recorded_environment
from .query.values import info_leaves

__all__ = ["ArtifactDiff", "Comparisons", "FileChange", "FileEntry", "InfoChange", "diff_artifacts",
           "flatten_info"]


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FileChange:
    """A path in both artifacts whose bytes differ: each side's entry."""

    path: str
    a: FileEntry
    b: FileEntry


@dataclass(frozen=True)
class InfoChange:
    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class ArtifactDiff:
    """From artifact ``a`` to artifact ``b`` (their ids). ``info_added``/``info_removed``
    hold ``(dotted key, value)``; every list is sorted."""

    a: str
    b: str
    files_added: list[FileEntry] = field(default_factory=list)
    files_removed: list[FileEntry] = field(default_factory=list)
    files_changed: list[FileChange] = field(default_factory=list)
    info_added: list[tuple[str, Any]] = field(default_factory=list)
    info_removed: list[tuple[str, Any]] = field(default_factory=list)
    info_changed: list[InfoChange] = field(default_factory=list)
    tags_added: list[str] = field(default_factory=list)
    tags_removed: list[str] = field(default_factory=list)
    based_on_added: list[str] = field(default_factory=list)
    based_on_removed: list[str] = field(default_factory=list)
    environment: EnvDiff = field(default_factory=lambda: EnvDiff(("a", "b")))

    @property
    def differs(self) -> bool:
        """A difference was found (the environment's included)."""
        return bool(self.files_added or self.files_removed or self.files_changed
                    or self.info_added or self.info_removed or self.info_changed
                    or self.tags_added or self.tags_removed or self.based_on_added
                    or self.based_on_removed or self.environment.differs)

    @property
    def same(self) -> bool:
        """Everything was compared (the environment too) and nothing differs."""
        return not self.differs and self.environment.same

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"a", "b", "same", "differs", "files": {"added": [{path, size,
        sha256}], "removed": [...], "changed": [{path, "a": {size, sha256}, "b": {...}}]},
        "info": {"added": [{key, value}], "removed": [{key, value}], "changed": [{key, a,
        b}]}, "tags": {"added", "removed"}, "based_on": {"added", "removed"},
        "environment": EnvDiff.as_dict()}``."""

        def entry(f: FileEntry) -> dict[str, Any]:
            return {"path": f.path, "size": f.size, "sha256": f.sha256}

        def side(f: FileEntry) -> dict[str, Any]:
            return {"size": f.size, "sha256": f.sha256}

        return {
            "a": self.a, "b": self.b, "same": self.same, "differs": self.differs,
            "files": {"added": [entry(f) for f in self.files_added],
                      "removed": [entry(f) for f in self.files_removed],
                      "changed": [{"path": c.path, "a": side(c.a), "b": side(c.b)}
                                  for c in self.files_changed]},
            "info": {"added": [{"key": k, "value": v} for k, v in self.info_added],
                     "removed": [{"key": k, "value": v} for k, v in self.info_removed],
                     "changed": [{"key": c.key, "a": c.a, "b": c.b}
                                 for c in self.info_changed]},
            "tags": {"added": list(self.tags_added), "removed": list(self.tags_removed)},
            "based_on": {"added": list(self.based_on_added),
                         "removed": list(self.based_on_removed)},
            "environment": self.environment.as_dict(),
        }


def flatten_info(info: Any) -> dict[str, Any]:
    """``{"model": {"layers": 3}}`` -> ``{"model.layers": 3}``; an empty mapping stays a
    value (``{}``), so that adding one shows. The leaves a query's ``info.<key>`` names
    (:func:`elliptio.query.values.info_leaves`)."""
    return dict(info_leaves(info))


def _files(md: Mapping[str, Any]) -> dict[str, FileEntry]:
    out = {}
    for f in md.get("files") or []:
        if isinstance(f, Mapping) and "path" in f:
            try:
                size = int(f.get("size") or 0)
            except (TypeError, ValueError):
                size = 0
            out[str(f["path"])] = FileEntry(str(f["path"]), size, str(f.get("sha256", "")))
    return out


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def diff_artifacts(a: Any, b: Any) -> ArtifactDiff:
    """What differs from artifact *a* to artifact *b* (``Artifact`` objects). Reads both
    pip freeze logs (verified); a side without one makes the packages unknown
    (``environment.unknown``), the rest is compared all the same."""
    fa, fb = _files(a.metadata), _files(b.metadata)
    ia, ib = flatten_info(a.metadata.get("info") or {}), flatten_info(b.metadata.get("info") or {})
    ta, tb = _strings(a.metadata.get("tags")), _strings(b.metadata.get("tags"))
    pa, pb = _strings(a.metadata.get("based_on")), _strings(b.metadata.get("based_on"))
    return ArtifactDiff(
        a=str(a.metadata.get("id")), b=str(b.metadata.get("id")),
        files_added=[fb[p] for p in sorted(fb.keys() - fa.keys())],
        files_removed=[fa[p] for p in sorted(fa.keys() - fb.keys())],
        files_changed=[FileChange(p, fa[p], fb[p]) for p in sorted(fa.keys() & fb.keys())
                       if (fa[p].sha256, fa[p].size) != (fb[p].sha256, fb[p].size)],
        info_added=[(k, ib[k]) for k in sorted(ib.keys() - ia.keys())],
        info_removed=[(k, ia[k]) for k in sorted(ia.keys() - ib.keys())],
        info_changed=[InfoChange(k, ia[k], ib[k]) for k in sorted(ia.keys() & ib.keys())
                      if ia[k] != ib[k] or type(ia[k]) is not type(ib[k])],
        tags_added=sorted(set(tb) - set(ta)), tags_removed=sorted(set(ta) - set(tb)),
        based_on_added=sorted(set(pb) - set(pa)), based_on_removed=sorted(set(pa) - set(pb)),
        environment=compare(recorded_environment(a), recorded_environment(b), ("a", "b")),
    )


class Comparisons:
    """The comparisons of :class:`~elliptio.artifact.Artifact` (a base class of it)."""

    metadata: dict[str, Any]

    def env_diff(self) -> EnvDiff:
        """What differs from this artifact's recorded environment (pip freeze, Python,
        platform) to the running interpreter's: :func:`elliptio.envdiff.env_diff`."""
        return env_diff(self)

    def diff(self, other: Any) -> ArtifactDiff:
        """What differs from this artifact to *other*: :func:`diff_artifacts`."""
        return diff_artifacts(self, other)
