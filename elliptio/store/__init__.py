"""Blob stores, chosen by URL scheme: ``file://`` (local directory), ``s3://`` and
``memory://`` (in the process's memory, for tests)."""

from __future__ import annotations

from ..errors import ConfigError
from ..redact import redact_url
from .base import Digest, Staged, Store

__all__ = ["Digest", "Staged", "Store", "open_store"]


def open_store(url: str, **options: object) -> Store:
    """Open the store named by *url*; options come from :class:`elliptio.config.Settings`."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "file":
        from .local import LocalStore

        return LocalStore(url)
    if scheme == "s3":
        from .s3 import S3Store

        return S3Store(url, **options)  # type: ignore[arg-type]
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(url)
    raise ConfigError(f"unknown store URL {redact_url(url)!r}: use file:///path or "
                      "s3://bucket[/prefix]")
