"""The one exception tree of ElliptIO.

Every error ElliptIO raises on purpose is an :class:`ElliptioError`; errors of the
libraries underneath (botocore, pymongo, sqlite3, OSError of the store) are translated at
the edge of ``store/`` and ``catalogue/`` and chained (``raise ... from exc``)::

    ElliptioError                 anything ElliptIO reports on purpose
    ├── UsageError                the caller asked for something invalid (bad input to save, ...)
    │   ├── QueryError            a malformed query, date or glob
    │   └── ConfigError           a bad or unusable configuration value
    ├── NotFound                  no artifact / file / log with that id or name
    ├── Immutable                 an operation would overwrite or delete a locked artifact
    ├── IntegrityError            bytes do not match the recorded sha256 / size
    ├── StorageError              the store failed (after retries, if the error was transient)
    │   └── TransientStorageError a failure that may go away if repeated (503, reset, timeout)
    └── CatalogueError            the catalogue failed (locked, corrupt, unreachable)

The CLI prints one line for every ``ElliptioError`` and exits with :attr:`exit_code`;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ElliptioError",
    "UsageError",
    "QueryError",
    "ConfigError",
    "NotFound",
    "Immutable",
    "IntegrityError",
    "StorageError",
    "TransientStorageError",
    "CatalogueError",
]


class ElliptioError(Exception):
    """Base of every error ElliptIO raises on purpose."""

    exit_code = 1


class UsageError(ElliptioError):
    """The caller asked for something invalid; nothing was written."""

    exit_code = 2


class QueryError(UsageError):
    """A malformed query string, time, glob or query field."""


class ConfigError(UsageError):
    """A configuration value is malformed or unusable."""


class NotFound(ElliptioError):
    """No artifact, file or log with that id or name."""

    exit_code = 3


class Immutable(ElliptioError):
    """The operation would overwrite or delete bytes of a committed artifact."""

    exit_code = 4


class IntegrityError(ElliptioError):
    """Bytes read or written do not match the recorded sha256 or size."""

    exit_code = 5


class StorageError(ElliptioError):
    """The store failed; transient failures were retried before this was raised."""

    exit_code = 6


class TransientStorageError(StorageError):
    """A store failure that may succeed when repeated (throttling, reset, timeout)."""


class CatalogueError(ElliptioError):
    """The catalogue is locked, corrupt, unreachable or refused the operation."""

    exit_code = 7
