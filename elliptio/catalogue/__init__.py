"""Catalogues, chosen by URL scheme: ``sqlite:///path``, ``mongodb://``/``mongodb+srv://``
and ``postgresql://``/``postgres://``."""

from __future__ import annotations

from ..errors import ConfigError
from ..redact import redact_url
from .base import Catalogue, Conflict, IndexFields, Page, index_fields, query_tags

__all__ = ["Catalogue", "Conflict", "IndexFields", "Page", "index_fields", "open_catalogue",
           "query_tags"]


def open_catalogue(url: str, **options: object) -> Catalogue:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteCatalogue

        cache_mb = options.pop("sqlite_cache_mb", None)
        if cache_mb:
            return SQLiteCatalogue(url, cache_kib=int(cache_mb) * 1024)  # type: ignore[call-overload]
        return SQLiteCatalogue(url)
    options.pop("sqlite_cache_mb", None)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresCatalogue

        # database and collection name MongoDB's; a PostgreSQL URL names its database
        options.pop("database", None)
        options.pop("collection", None)
        return PostgresCatalogue(url, **options)  # type: ignore[arg-type]
    if scheme in ("mongodb", "mongodb+srv"):
        from .mongo import MongoCatalogue

        return MongoCatalogue(url, **options)  # type: ignore[arg-type]
    raise ConfigError(
        f"unknown catalogue URL {redact_url(url)!r}: use sqlite:///path, mongodb://host/ "
        "(mongodb+srv://) or postgresql://user@host/database (postgres://)"
    )
