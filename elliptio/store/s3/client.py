"""The botocore client of an S3 store, from the standard AWS environment."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from . import pool


def make_client() -> Any:
    """A boto3 S3 client from the standard AWS environment (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, profiles, instance roles…), ElliptIO's transfer settings, and
    botocore's retries off: every request is repeated in one place,
    :func:`elliptio.store.s3.errors.call`."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigError("the S3 store needs boto3: pip install boto3") from exc
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool.TRANSFER_THREADS + 20,
        connect_timeout=10, read_timeout=60,
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", config=config)
