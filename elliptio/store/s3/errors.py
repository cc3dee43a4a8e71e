"""What an S3 failure means, and the one path every request of the S3 store takes.

:func:`call` runs one request — a function making a botocore call and reading what it
answers, the body included — through the store layer's one retry helper
(:func:`elliptio.store.retry.retry`), with :func:`is_transient` deciding what is worth
repeating (503 SlowDown, 500, throttling, resets, timeouts, a body cut short), and turns
what still fails into one :mod:`elliptio.errors` exception (:func:`translate`, most
specific first). botocore's exceptions never leave the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...errors import (
    Immutable,
    IntegrityError,
    NotFound,
    StorageError,
    TransientStorageError,
)
from ..retry import retry

T = TypeVar("T")

_TRANSIENT_CODES = {
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestTimeTooSkewed", "OperationAborted", "500", "502", "503",
    "504", "RequestTimeoutException", "TooManyRequests", "429",
}


class ShortRead(Exception):
    """A GET body ended before the bytes its headers promised (or ran past them)."""


def call(what: str, fn: Callable[[], T]) -> T:
    """``fn()``, repeated while it fails transiently; what still fails, translated.
    *what* names the object or the operation in messages."""
    try:
        return retry(fn, is_temp_failure=is_transient, what=what)
    except Exception as exc:
        raise translate(exc, what) from exc


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_transient(exc: BaseException) -> bool:
    """True for S3 failures that may succeed when repeated."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, ClientError):
        return error_code(exc) in _TRANSIENT_CODES or _status(exc) >= 500 \
            or _status(exc) == 429
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True  # endpoint connection errors, resets, read/connect timeouts
    if isinstance(exc, ShortRead | ConnectionError | TimeoutError):
        return True
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, Urllib3Error)


def translate(exc: BaseException, what: str) -> Exception:
    """One S3 failure → one :mod:`elliptio.errors` exception (after retries)."""
    code, status = error_code(exc), _status(exc)
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion") or status == 404:
        if code == "NoSuchBucket":
            return StorageError(f"{what}: the bucket does not exist (run `eio init`)")
        return NotFound(f"{what}: no such object")
    if code == "NoSuchBucket":
        return StorageError(f"{what}: the bucket does not exist (run `eio init`)")
    if code == "PreconditionFailed" or status == 412:
        return Immutable(f"{what}: already exists and is locked")
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
        return IntegrityError(f"{what}: the server received bytes that do not match their "
                              "checksum (corrupted in transit); nothing was committed")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") \
            or status == 403:
        return StorageError(f"{what}: access denied by the S3 server ({code or status}); "
                            "check the AWS credentials in the environment")
    if is_transient(exc):
        return TransientStorageError(f"{what}: S3 still failing after retries "
                                     f"({type(exc).__name__}: {short(exc)})")
    return StorageError(f"{what}: {type(exc).__name__}: {short(exc)}")


def short(exc: BaseException) -> str:
    """The first line of *exc*'s message, at most 300 characters (for messages and logs)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
