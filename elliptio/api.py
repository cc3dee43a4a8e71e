"""The public surface: save, load, search, create_artifact (re-exported by ``elliptio``).

The module-level functions use a default lake built from the environment (rebuilt when the
configuration changes); a :class:`~elliptio.lake.Lake` made from explicit
:class:`~elliptio.config.Settings` offers the same methods.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .artifact import Artifact
from .config import Settings
from .errors import Immutable
from .inputs import SourceSpec
from .lake import Lake
from .query import Query
from .validate import check_tags

__all__ = ["ArtifactBuilder", "close_default_lake", "create_artifact", "default_lake", "load",
           "save", "search"]


# -- the default lake and the module-level functions ------------------------------------
_default: tuple[Settings, Lake] | None = None
_default_lock = threading.Lock()


@atexit.register
def close_default_lake() -> None:
    """Close the default lake (at exit, so that its connections are closed, not dropped;
    a later call of the module functions opens it again)."""
    global _default
    with _default_lock:
        if _default is not None:
            _default[1].close()
            _default = None


def default_lake() -> Lake:
    """The lake of the current configuration (re-opened when the configuration changes)."""
    global _default
    settings = Settings.load()
    with _default_lock:
        if _default is None or _default[0] != settings:
            if _default is not None:
                _default[1].close()
            _default = (settings, Lake(settings))
        return _default[1]


def save(files: SourceSpec, info: Mapping[str, Any] | None = None, *,
         tags: Iterable[str] | str | None = None, based_on: Iterable[Any] | None = None,
         progress: Callable[[int], None] | None = None, **kwinfo: Any) -> Artifact:
    """Save *files* as one new immutable, locked artifact and return it.

    *files*: a path, a list of paths (directories recursively, keeping their name), or a
    mapping ``{name in artifact: local path}``. *info*: metadata (keyword arguments are
    merged into it, so ``type="model"`` lands in ``info["type"]``). *tags*: strings.
    *based_on*: ids or artifacts; by default every artifact this process loaded. Provenance
    is captured automatically. Nothing is written if an input is invalid.
    """
    return default_lake().save(files, info, tags=tags, based_on=based_on, progress=progress,
                               **kwinfo)


def load(artifact_id: str | Artifact) -> Artifact:
    """The artifact with this id (or unique id prefix); recorded as used by this process."""
    return default_lake().load(artifact_id)


def search(query: Query | str | None = None, **fields: Any) -> list[Artifact]:
    """Artifacts matching the query, newest first (default limit 100; ``limit=0`` or
    ``None``: all).

    Fields: user, since, until, files (file), tags (tag), type, info={...}, based_on,
    ancestor_of, transitive, depth, text, limit, order, after. Or a text query like
    ``"user=andy,since=10d,file=*.txt,tag=*dataset*"``.
    """
    return default_lake().search(query, **fields)


class ArtifactBuilder:
    """The builder form: ``create_artifact(tags=[...]).save_files(["x"], type="model")``."""

    def __init__(self, lake: Lake | None, info: Mapping[str, Any] | None, tags: Any,
                 based_on: Any) -> None:
        self._lake, self._info, self._tags, self._based_on = lake, dict(info or {}), tags, \
            based_on
        self.artifact: Artifact | None = None

    def save_files(self, files: SourceSpec, *, tags: Any = None, based_on: Any = None,
                   progress: Callable[[int], None] | None = None, **kwinfo: Any) -> Artifact:
        if self.artifact is not None:
            raise Immutable(f"this builder already saved artifact {self.artifact.id}; "
                            "artifacts are immutable: create a new one")
        info = {**self._info, **kwinfo}
        all_tags = list(check_tags(self._tags)) + [t for t in check_tags(tags)
                                                   if t not in check_tags(self._tags)]
        lake = self._lake or default_lake()
        self.artifact = lake.save(files, info, tags=all_tags,
                                  based_on=based_on if based_on is not None else self._based_on,
                                  progress=progress)
        return self.artifact


def create_artifact(info: Mapping[str, Any] | None = None, *, tags: Any = None,
                    based_on: Any = None, **kwinfo: Any) -> ArtifactBuilder:
    """Start an artifact; ``.save_files(files, **info)`` saves it (once)."""
    return ArtifactBuilder(None, {**(info or {}), **kwinfo}, tags, based_on)
