"""The catalogue web page and its JSON API (``eio web``).

Pages: ``/`` search (form fields and a query box in the CLI's language; the query lives in
the URL), ``/artifacts/<id>`` one artifact (metadata, raw YAML, files with downloads,
logs, parents and children, a Reproduce section), ``/artifacts/<id>/lineage`` the lineage
graph (SVG, with a list fallback), ``/compare/<a>/<b>`` two artifacts side by side
(``Artifact.diff``). JSON twins: ``/api/search``, ``/api/artifacts/<id>``,
``/api/artifacts/<id>/lineage``, ``/api/compare/<a>/<b>``, and ``/api/health``.
Read-only: only GET exists.

Security: every metadata value is untrusted and escaped by autoescaped Jinja2 templates;
all JavaScript is in ``static/`` so the Content-Security-Policy can say
``script-src 'self'``; downloads are ``Content-Disposition: attachment`` with
``nosniff``, and serve only the files listed in that artifact's metadata. Loopback by
default; for a shared host put it behind a reverse proxy with ``--root-path`` and an
access token (docs/web.md).
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

from .app import create_app

if TYPE_CHECKING:
    from ..lake import Lake

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)


def serve(lake: Lake, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          root_path: str = "") -> None:
    """Serve the page with uvicorn until interrupted (Ctrl-C / SIGTERM stop it cleanly).

    uvicorn's own access log is off: it would print a ``?token=`` a user opened the page
    with. ``elliptio.web.access`` logs each request instead, with the token masked.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["elliptio"] = {"handlers": ["default"], "level": "INFO",
                                     "propagate": False}
    app = create_app(lake, token=token, root_path=root_path)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}{root_path.rstrip('/')}/"
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        log.warning("serving on %s without an access token: anyone who can reach it can "
                    "read the lake (see docs/web.md)", host)
    print(f"eio web: serving the catalogue on {where}", flush=True)
    uvicorn.run(app, host=host, port=port, log_config=config, access_log=False,
                proxy_headers=True, server_header=False)
