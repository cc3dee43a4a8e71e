"""ElliptIO: immutable, locked artifacts with provenance, a rebuildable catalogue and
automatic lineage.

    import elliptio as eio
    a = eio.save(["train.txt", "test.txt"], info={"type": "dataset_list"})
    b = eio.load(a.id)
    eio.search(user="andy", since="10d", files="*.txt", tags="*dataset*")
"""

from .api import create_artifact, load, save, search
from .artifact import Artifact, ArtifactFile
from .config import Settings
from .errors import (
    CatalogueError,
    ConfigError,
    ElliptioError,
    Immutable,
    IntegrityError,
    NotFound,
    QueryError,
    StorageError,
    TransientStorageError,
    UsageError,
)
from .lake import Lake
from .query import Query
from .version import __version__

__all__ = [
    "Artifact",
    "ArtifactFile",
    "CatalogueError",
    "ConfigError",
    "ElliptioError",
    "Immutable",
    "IntegrityError",
    "Lake",
    "NotFound",
    "Query",
    "QueryError",
    "Settings",
    "StorageError",
    "TransientStorageError",
    "UsageError",
    "__version__",
    "create_artifact",
    "load",
    "save",
    "search",
]
