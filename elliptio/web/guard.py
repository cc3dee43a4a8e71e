"""The guard in front of the web page: the access token, security headers on every
response, and an access log that never holds the token (see :class:`Guard`)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .rendering import render

access_log = logging.getLogger("elliptio.web.access")

COOKIE = "eio_token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Guard:
    """ASGI middleware in front of everything.

    - sets ``root_path`` (``--root-path``) so links work behind a reverse proxy that
      strips the prefix, and accepts requests that still carry it;
    - adds the security headers (CSP ``script-src 'self'``, nosniff, no framing) to every
      response, error pages and downloads included;
    - with a token: requires it as ``Authorization: Bearer``, the ``eio_token`` cookie
      or a ``token=`` URL parameter; a page opened with ``?token=`` sets the cookie
      (HttpOnly, SameSite=Lax) and redirects to the same URL without it, so the token
      does not stay in the address bar, history or Referer. Static files (CSS, JS) need
      no token, so the "token required" page is styled.
    """

    def __init__(self, app: ASGIApp, token: str | None, root_path: str) -> None:
        self.app = app
        self.token = token or None
        root_path = root_path.strip().rstrip("/")
        self.root_path = "/" + root_path.lstrip("/") if root_path else ""
        # the cookie holds a digest of the token, not the token itself
        self.cookie_value = (hmac.new(self.token.encode(), b"elliptio-web-cookie",
                                      hashlib.sha256).hexdigest() if self.token else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        root = self.root_path
        if root:
            path = scope["path"]
            if path == root:
                path = root + "/"
            elif not path.startswith(root + "/"):
                path = root + path
            scope["path"] = path
        scope["root_path"] = root
        started = time.perf_counter()
        status = {"code": 0}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {h for h, _ in SECURITY_HEADERS}]
                message = dict(message, headers=headers + SECURITY_HEADERS)
            await send(message)

        try:
            if self.token and not await self._admit(scope, receive, send_with_headers):
                return
            await self.app(scope, receive, send_with_headers)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            if query:
                query = "?" + urlencode([(k, "***" if k == "token" else v)
                                         for k, v in parse_qsl(query, keep_blank_values=True)])
            access_log.info("%s %s%s %s %.0fms", scope["method"], scope["path"], query,
                            status["code"], (time.perf_counter() - started) * 1000)

    def _presented(self, scope: Scope) -> tuple[str | None, bool]:
        """(the credential presented, whether it came in the URL)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        for item in headers.get("cookie", "").split(";"):
            name, _, value = item.strip().partition("=")
            if name == COOKIE:
                return ("cookie:" + value), False
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if k == "token":
                return v, True
        return None, False

    def _valid(self, presented: str | None) -> bool:
        if presented is None or self.token is None:
            return False
        if presented.startswith("cookie:"):
            return hmac.compare_digest(presented[7:].encode(), self.cookie_value.encode())
        return hmac.compare_digest(presented.encode(), self.token.encode())

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> bool:
        root = scope["root_path"]
        path = scope["path"]
        if path.startswith(root + "/static/"):
            return True
        presented, in_url = self._presented(scope)
        if self._valid(presented):
            if in_url and not path.startswith(root + "/api/"):
                rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"")
                                                     .decode("latin-1"),
                                                     keep_blank_values=True) if k != "token"]
                # "//host/..." would be a redirect to another site: keep it on this one
                target = "/" + quote(path).lstrip("/") + ("?" + urlencode(rest) if rest else "")
                secure = "; Secure" if scope.get("scheme") == "https" else ""
                redirect = RedirectResponse(target, status_code=303)
                redirect.headers.append(
                    "set-cookie", f"{COOKIE}={self.cookie_value}; Path={root or '/'}; "
                    f"HttpOnly; SameSite=Lax{secure}")
                await redirect(scope, receive, send)
                return False
            return True
        msg = ("this catalogue needs an access token" if presented is None
               else "the access token is not valid")
        if path.startswith(root + "/api/"):
            response: Response = JSONResponse({"error": msg, "status": 401}, status_code=401,
                                              headers={"www-authenticate": "Bearer"})
        else:
            request = Request(scope, receive)
            response = render(request, "error.html",
                              {"title": "Access token required", "message": msg,
                               "status": 401, "token_form": True}, status_code=401)
            response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)
        return False
