"""How the PostgreSQL catalogue reports a failure of the driver: one
:class:`~elliptio.errors.CatalogueError` line that says what went wrong (unreachable,
wrong credentials, no such database, the connection lost during a call), the catalogue
named by its redacted URL, and the driver's own words quoted without the password (libpq
can echo connection parameters; ``PGPASSWORD`` counts too)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from ..errors import CatalogueError
from ..redact import redact


def scrub(message: str, secrets: Iterable[str]) -> str:
    """*message* in one line, every one of *secrets* (longest first) and anything
    :func:`~elliptio.redact.redact` knows as a secret replaced."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        # as a whole word where its ends are word characters: a short password ("x")
        # must not turn "expired" into "e***pired"; where a driver quotes one, it stands
        # after "=", ":" or a quote and before "@", a quote or a space
        pattern = re.escape(secret)
        if secret[0].isalnum():
            pattern = r"(?<![0-9A-Za-z])" + pattern
        if secret[-1].isalnum():
            pattern += r"(?![0-9A-Za-z])"
        message = re.sub(pattern, "***", message)
    return " ".join(redact(message).split())


def quiet_pool_log() -> None:
    """psycopg_pool logs a warning, two lines, for every failed reconnection attempt: a
    flood in the mount daemon's and web server's logs during an outage that the
    catalogue reports anyway (each call fails with a CatalogueError that says why). Its
    logger is set to errors only, unless the application configured it."""
    log = logging.getLogger("psycopg.pool")
    if log.level == logging.NOTSET:
        log.setLevel(logging.ERROR)


def reason(exc: Exception, secrets: Iterable[str]) -> str:
    """The driver's message in one line, without the password or libpq's preamble."""
    msg = scrub(str(exc), secrets)
    for noise in ("connection failed: ", "FATAL: "):
        msg = msg.replace(noise, "")
    return msg.strip() or type(exc).__name__


def translate(exc: Exception, what: str, url: str, secrets: Iterable[str]) -> CatalogueError:
    """The error for *exc*, raised by psycopg during *what* (``open`` when connecting)."""
    import psycopg

    why = reason(exc, secrets)
    low = why.lower()
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return CatalogueError(f"PostgreSQL catalogue {url}: {what} took too long and was "
                              f"cancelled ({why}): the server is overloaded or a lock is "
                              "held (the limit: statement_timeout, in the URL's options)")
    if isinstance(exc, psycopg.OperationalError):
        if "password authentication failed" in low or "no password supplied" in low:
            return CatalogueError(
                f"PostgreSQL catalogue {url} refused the credentials ({why}): check the "
                "user and password (URL, PGPASSWORD or ~/.pgpass)")
        if "database" in low and "does not exist" in low:
            return CatalogueError(f"PostgreSQL catalogue {url}: {why} (create it first: "
                                  "createdb, or CREATE DATABASE)")
        if what == "open" or "connection refused" in low or "timeout expired" in low:
            return CatalogueError(f"cannot reach the PostgreSQL catalogue {url}: {why}")
        return CatalogueError(f"PostgreSQL catalogue {url}: the connection failed during "
                              f"{what}: {why}")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return CatalogueError(f"PostgreSQL catalogue {url} refused {what}: {why}")
    return CatalogueError(f"PostgreSQL catalogue {url}: {what} failed: {why}")
