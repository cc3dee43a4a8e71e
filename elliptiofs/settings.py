"""The daemon's own settings: what only ``elliptiofs`` reads.

The library's :class:`elliptio.Settings` holds what every program of the lake needs
(store, catalogue, user, …); these are the daemon's alone, read from the same places with
the same precedence (keyword arguments > ``ELLIPTIO_*`` variables > the config file >
defaults) by :func:`elliptio.config.read_config`. The config file may hold them because the
library knows their names (:data:`elliptio.config.DAEMON_KEYS`), not their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from elliptio.config import DAEMON_KEYS, default_data_dir, read_config
from elliptio.errors import ConfigError

#: the largest quiet time or retry delay, in seconds
MAX_SECONDS = 86400


@dataclass(frozen=True)
class DaemonSettings:
    """Field comments name the environment variable."""

    #: where the daemon records which process read which artifact (ELLIPTIO_READLOG):
    #: lineage from reads; default ``readlog.sqlite`` beside the default catalogue
    readlog: str = ""
    #: the outbox's spool directory (ELLIPTIO_SPOOL): staged bytes and the outbox
    #: journal; default the user cache directory's ``spool``
    spool: str = ""
    #: seconds an outbox entry must be closed and unchanged before it commits
    #: (ELLIPTIO_OUTBOX_QUIET)
    outbox_quiet: float = 2.0
    #: seconds before a failed outbox commit is retried, doubling up to 10 minutes
    #: (ELLIPTIO_OUTBOX_RETRY)
    outbox_retry: float = 10.0
    source: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, **overrides: Any) -> DaemonSettings:
        values, source = read_config(DAEMON_KEYS, overrides)
        for key in ("outbox_quiet", "outbox_retry"):
            if key in values:
                values[key] = _seconds(key, values[key])
        readlog = values.pop("readlog", "") or str(default_data_dir() / "readlog.sqlite")
        spool = values.pop("spool", "") or str(
            Path(user_cache_dir("elliptio", appauthor=False)) / "spool")
        return cls(readlog=str(readlog), spool=str(spool), **values, source=source)


def _seconds(key: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds < MAX_SECONDS:
        raise ConfigError(f"{key} must be between 0 and {MAX_SECONDS} seconds")
    return seconds
