"""Names: an ``s3://bucket[/prefix]`` store URL, and how store keys map to S3 keys.

A store key (``YYYY/MM/DD/<user>/<id>/...``, :func:`elliptio.store.base.check_key`) is the
S3 key below the store's prefix; the URL holds no credentials, ports or options, which come
from the AWS environment.
"""

from __future__ import annotations

from urllib.parse import urlparse

from ...errors import ConfigError
from ...redact import redact_url
from ..base import check_key


def parse_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of an ``s3://bucket[/prefix]`` URL; ``ConfigError`` if it is
    not one."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an S3 store URL (want s3://bucket[/prefix]): {redact_url(url)}")
    if parsed.query or parsed.fragment or "@" in parsed.netloc or ":" in parsed.netloc:
        raise ConfigError(f"an S3 store URL is s3://bucket[/prefix], without credentials, "
                          f"ports or options (those come from the AWS environment): "
                          f"{redact_url(url)}")
    prefix = parsed.path.strip("/")
    if any(p in (".", "..") for p in prefix.split("/")) or "//" in parsed.path.strip("/"):
        raise ConfigError(f"invalid prefix in S3 store URL: {redact_url(url)}")
    return parsed.netloc, prefix


def s3_key(prefix: str, key: str) -> str:
    """The S3 key of the store key *key* (``StorageError`` if *key* is invalid)."""
    check_key(key)
    return f"{prefix}/{key}" if prefix else key


def store_key(prefix: str, s3key: str) -> str:
    """The store key of the S3 key *s3key*, which lies under *prefix*."""
    return s3key[len(prefix) + 1:] if prefix else s3key


def list_prefix(prefix: str, under: str) -> str:
    """The S3 ``Prefix`` that lists the store prefix *under* (``""``: the whole store)."""
    if under.strip("/"):
        return s3_key(prefix, under.strip("/")) + "/"
    return prefix + "/" if prefix else ""
