"""ElliptIO: immutable, locked artifacts with provenance, a rebuildable catalogue and
automatic lineage.

    import elliptio as eio
    a = eio.save(["train.txt", "test.txt"], info={"type": "dataset_list"})
    b = eio.load(a.id)
    eio.search(user="andy", since="10d", files="*.txt", tags="*dataset*")

Beside the names below (``__all__``), these modules are public for programs built on the
library, the ``elliptiofs`` daemon among them (tests/test_t1_structure.py holds it to
them); what each defines is for use as its docstring says. The other modules (the lake's,
the catalogues, the store implementations, the indexer, the CLI, the web page) are the
library's own: such programs reach them through these names only.

    elliptio.artifact    the metadata.yaml format (load_metadata, stored_dirs)
    elliptio.config      the settings and the config file (valid_user, read_config)
    elliptio.connections SQLite connections per thread, all closed (PerThread)
    elliptio.errors      the exception tree
    elliptio.ids         artifact ids
    elliptio.inputs      files to save as checked entries (Entry, resolve_inputs)
    elliptio.layout      the store layout (parse_key) and the rules for names in it
    elliptio.mountreads  where mounts answer what a process read (socket_path, answer)
    elliptio.provenance  what a save records of its program (redact_argv)
    elliptio.query       the query model, its text form, its compilers
    elliptio.redact      secrets out of captured text and messages (redact, redact_url)
    elliptio.store       the Store interface and open_store
    elliptio.text        strings from the lake shown on a terminal (visible, json_visible)
    elliptio.trust       what is accepted of metadata read back (accept_metadata)
    elliptio.urlfs       eio:// URLs for fsspec, pandas, pyarrow, DuckDB, polars
    elliptio.validate    the checks of info, tags and based_on ids
    elliptio.verified    a file object checked against its sha256 (verified_open)
    elliptio.yamlsafe    the one parser of YAML others wrote (load_bounded)
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
