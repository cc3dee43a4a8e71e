"""One :class:`Settings` object, from environment variables and an optional YAML file.

Precedence: explicit keyword arguments > environment variables > the config file
(``ELLIPTIO_CONFIG``, default ``~/.config/elliptio/config.yaml``) > defaults. The file
takes the same names as the environment, with or without the ``ELLIPTIO_`` prefix and in
any case (``store:`` or ``ELLIPTIO_STORE:``).

The file is shared with the mount daemon: the keys only the daemon reads
(:data:`DAEMON_KEYS`) may stand in it too, and the daemon reads them with the same rules
through :func:`read_config` (``elliptiofs.settings``). A key neither knows is an error.

Credentials are never part of the settings: S3 uses boto3's own chain.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from platformdirs import user_data_dir

from .errors import ConfigError

#: one safe path segment, the whole string (``\A``/``\Z``: ``$`` would let a trailing
#: newline through); use ``USER_RE.fullmatch``
USER_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}\Z")
#: keys of the config file (and ``ELLIPTIO_*`` variables) that only the mount daemon reads
#: (``elliptiofs.settings.DaemonSettings``): the file may hold them beside the library's
#: own, and ``eio config`` shows them as given
DAEMON_KEYS = ("readlog", "spool", "outbox_quiet", "outbox_retry")


def default_data_dir() -> Path:
    return Path(user_data_dir("elliptio", appauthor=False))


def valid_user(name: str) -> str:
    """A user name must be one safe path segment (it is part of the store layout)."""
    if not USER_RE.fullmatch(name or ""):
        raise ConfigError(
            f"invalid user name {name!r}: use letters, digits, '.', '_', '-', '@' "
            "(at most 64, not starting with '.' or '-')"
        )
    return name


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid{os.getuid()}"


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Field comments name the environment variable."""

    store: str = ""  # ELLIPTIO_STORE: file:///path or s3://bucket[/prefix]
    catalogue: str = ""  # ELLIPTIO_CATALOGUE: sqlite:///path, mongodb://..., mongodb+srv://...
    user: str = ""  # ELLIPTIO_USER: user recorded on library saves
    # S3 Object Lock (ELLIPTIO_LOCK_MODE / _LOCK_DAYS / _ALLOW_UNLOCKED)
    lock_mode: str = "GOVERNANCE"
    lock_days: int = 3650
    allow_unlocked: bool = False
    # MongoDB names (ELLIPTIO_MONGO_DATABASE / _MONGO_COLLECTION)
    mongo_database: str = "elliptio"
    mongo_collection: str = "artifacts"
    #: SQLite page cache per connection, MiB (ELLIPTIO_SQLITE_CACHE_MB): large for bulk
    #: reindex; the mount daemon uses 16 unless this is set
    sqlite_cache_mb: int = 256
    #: largest accepted serialised ``info`` (ELLIPTIO_MAX_INFO_BYTES)
    max_info_bytes: int = 1 << 20
    source: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        names = [f.name for f in fields(cls) if f.name != "source"]
        values, source = read_config(names, overrides)
        return cls(**cls._coerce(values), source=source).with_defaults()

    @staticmethod
    def _coerce(values: dict[str, Any]) -> dict[str, Any]:
        out = dict(values)
        for key in ("lock_days", "max_info_bytes", "sqlite_cache_mb"):
            if key in out:
                try:
                    out[key] = int(out[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"{key} must be an integer, got {out[key]!r}") from None
        if "allow_unlocked" in out and isinstance(out["allow_unlocked"], str):
            out["allow_unlocked"] = out["allow_unlocked"].lower() in ("1", "true", "yes", "on")
        if "lock_mode" in out:
            out["lock_mode"] = str(out["lock_mode"]).upper()
            if out["lock_mode"] not in ("GOVERNANCE", "COMPLIANCE"):
                raise ConfigError("lock_mode must be GOVERNANCE or COMPLIANCE")
        return out

    def with_defaults(self) -> Settings:
        data = default_data_dir()
        store = self.store or "file://" + str(data / "store")
        if store.startswith("/"):
            store = "file://" + store
        catalogue = self.catalogue or "sqlite:///" + str(data / "catalogue.sqlite")
        if catalogue.startswith("/"):
            catalogue = "sqlite:///" + catalogue
        user = valid_user(self.user or _login_name())
        return replace(self, store=store, catalogue=catalogue, user=user)


def config_path() -> Path:
    """The config file: ``ELLIPTIO_CONFIG``, or ``~/.config/elliptio/config.yaml``."""
    return Path(os.environ.get("ELLIPTIO_CONFIG") or Path.home() / ".config/elliptio/config.yaml")


def read_config(names: Iterable[str], overrides: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """The values given for *names* and where each came from (the config file's path,
    ``ELLIPTIO_<NAME>``, or ``"argument"`` for *overrides*, whose None values are no value),
    later sources winning; uncoerced, defaults not applied. ``ConfigError`` for a config
    file that cannot be read, is not a mapping, or holds a key that neither
    :class:`Settings` nor the daemon (:data:`DAEMON_KEYS`) knows."""
    wanted = list(names)
    known = {f.name for f in fields(Settings)} - {"source"} | set(DAEMON_KEYS)
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    cfg_path = config_path()
    if cfg_path.is_file():
        try:
            data = yaml.safe_load(cfg_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {cfg_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {cfg_path} must be a mapping")
        for k, v in data.items():
            name = str(k).lower().removeprefix("elliptio_")
            if name not in known:
                raise ConfigError(f"unknown key {k!r} in config file {cfg_path}")
            if name in wanted:
                values[name] = v
                source[name] = str(cfg_path)
    for name in wanted:
        env = os.environ.get("ELLIPTIO_" + name.upper())
        if env not in (None, ""):
            values[name] = env
            source[name] = "ELLIPTIO_" + name.upper()
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
            source[k] = "argument"
    return values, source
