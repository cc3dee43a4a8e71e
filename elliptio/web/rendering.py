"""Pages from templates: every template autoescaped (metadata is untrusted), the error
page, and whether a request wants the JSON twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent

# autoescape for every template, whatever its extension: metadata is untrusted
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True))


def _qs(pairs: Any) -> str:
    """``?a=1&b=2`` from pairs or a mapping (empty values dropped); '' if nothing."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    kept = [(k, v) for k, v in items if v not in (None, "")]
    return "?" + urlencode(kept) if kept else ""


templates.env.globals["qs"] = _qs
templates.env.filters["path"] = lambda s: quote(str(s), safe="/")


def render(request: Request, name: str, context: dict[str, Any],
           status_code: int = 200) -> Response:
    ctx = {"root": request.scope.get("root_path", ""), **context}
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    response.headers["cache-control"] = "private, no-cache"
    return response


def wants_json(request: Request) -> bool:
    root = request.scope.get("root_path", "")
    return request.url.path.startswith(f"{root}/api/")


def error_response(request: Request, status: int, title: str, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return render(request, "error.html", {"title": title, "message": message,
                                          "status": status}, status_code=status)
