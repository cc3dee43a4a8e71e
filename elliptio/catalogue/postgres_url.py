"""The PostgreSQL catalogue's URL: what libpq is asked to connect with, and which texts are
secrets to keep out of every message (:mod:`.postgres`)."""

from __future__ import annotations

import os
from urllib.parse import quote

from ..errors import ConfigError
from .postgres_errors import scrub

#: seconds libpq waits for a server to answer a connection (libpq's minimum is 2)
CONNECT_TIMEOUT = 5
#: seconds a call waits for a pooled connection before it fails
POOL_TIMEOUT = 5.0
#: libpq's TCP keepalive settings unless the URL sets them
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}
#: seconds a statement may run (or wait for a lock) before the server cancels it: a server
#: that accepts connections but stops answering (a lock held, a stuck disk) fails a call
#: with a CatalogueError instead of hanging a search, a save or the mount; the URL's own
#: ``options=-c statement_timeout=…`` wins
STATEMENT_TIMEOUT = 30.0


def connection_info(url: str, shown: str, connect_timeout: int = CONNECT_TIMEOUT,
                    statement_timeout: float = STATEMENT_TIMEOUT) -> tuple[str, list[str]]:
    """``(conninfo, secrets)`` for *url* (*shown*: its redacted form, for messages): the
    URL's own parameters, then ours where it sets none — the connect timeout, the
    statement timeout, TCP keepalives, ``application_name``. *secrets*: the password as
    the URL or ``PGPASSWORD`` gives it, and as a URL spells it, longest first."""
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(f"bad PostgreSQL URL {shown}: {scrub(str(exc), [url])}") from exc
    port = str(params.get("port", ""))
    if port and not all(p.strip().isdigit() for p in port.split(",")):
        raise ConfigError(f"bad PostgreSQL URL {shown}: the port must be a number")
    # a driver message may quote the password, as given or as the URL spells it
    secrets = sorted({form for s in (params.get("password"), os.environ.get("PGPASSWORD"))
                      if s for form in (s, quote(s, safe=""), quote(s))},
                     key=len, reverse=True)
    params.setdefault("connect_timeout", connect_timeout)
    params.setdefault("application_name", "elliptio")
    options = str(params.get("options") or "")
    if "statement_timeout" not in options:
        params["options"] = (f"{options} -c statement_timeout="
                             f"{int(statement_timeout * 1000)}").strip()
    # a server that vanishes without closing the socket (a host gone, a partition)
    # fails the call in about a minute instead of never
    for key, value in KEEPALIVES.items():
        params.setdefault(key, value)
    return psycopg.conninfo.make_conninfo(**params), secrets  # type: ignore[arg-type]
