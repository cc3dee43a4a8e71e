"""The Starlette application: routes, pages and error pages, behind the access guard and
its security headers (:mod:`.guard`); templates are rendered by :mod:`.rendering`.

Every page has a JSON twin under ``/api/`` built from the same data (:mod:`.data`).
Only GET (and HEAD) exist: the page never writes to the lake, so anything else is 405.
Endpoints are plain functions, run in Starlette's thread pool, because the catalogue and
the store are blocking libraries (the SQLite catalogue keeps one connection per thread).

Errors: an unknown id is a 404 page, a malformed query shows the search form with the
message, a catalogue or store failure is a 503 page that names which one failed, a file or
log the lake's rules refuse or whose bytes do not match is a 502 page "Refused" with the
reason (:mod:`.files`); anything else is logged with its traceback and shown as a plain
500 page, never a stack trace.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..errors import (
    CatalogueError,
    ElliptioError,
    IntegrityError,
    NotFound,
    QueryError,
    StorageError,
    UsageError,
)
from ..lake import Lake
from . import data, files, search
from .graph import layout
from .guard import Guard
from .rendering import HERE, error_response, render, wants_json

log = logging.getLogger(__name__)


# -- pages --------------------------------------------------------------------------------
def _lake(request: Request) -> Lake:
    return request.app.state.lake


def _search(request: Request) -> tuple[search.SearchForm, search.SearchResult | None, str | None]:
    form = search.SearchForm.from_params(request.query_params)
    try:
        return form, search.search(_lake(request), form), None
    except QueryError as exc:
        return form, None, str(exc)


def search_page(request: Request) -> Response:
    form, result, error = _search(request)
    return render(request, "search.html", {"form": form, "result": result, "error": error,
                                           "page_size": search.PAGE_SIZE},
                  status_code=400 if error else 200)


def search_api(request: Request) -> Response:
    _, result, error = _search(request)
    if error or result is None:
        return JSONResponse({"error": error, "status": 400}, status_code=400)
    return JSONResponse(result.as_json())


def _artifact(request: Request, suffix: str = "") -> Any:
    """The artifact of the URL, or a redirect to its full id when a prefix was given."""
    given = request.path_params["aid"]
    a = data.find_artifact(_lake(request), given)
    if a.id != given:
        root = request.scope.get("root_path", "")
        api = "/api" if wants_json(request) else ""
        query = ("?" + request.url.query) if request.url.query else ""
        return RedirectResponse(f"{root}{api}/artifacts/{a.id}{suffix}{query}",
                                status_code=307)
    return a


def artifact_page(request: Request) -> Response:
    a = _artifact(request)
    if isinstance(a, Response):
        return a
    info = data.artifact(_lake(request), a)
    return render(request, "artifact.html", {"a": info, "yaml": data.metadata_yaml(a)})


def artifact_api(request: Request) -> Response:
    a = _artifact(request)
    if isinstance(a, Response):
        return a
    info = data.artifact(_lake(request), a)
    return JSONResponse(_jsonable(info))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def metadata_download(request: Request) -> Response:
    a = _artifact(request, "/metadata.yaml")
    if isinstance(a, Response):
        return a
    return Response(data.metadata_yaml(a).encode(), media_type="text/plain; charset=utf-8",
                    headers={"content-disposition": files.disposition(
                        f"{a.id}-metadata.yaml")})


def file_download(request: Request) -> Response:
    path = request.path_params["path"]
    a = _artifact(request, "/files/" + quote(path, safe="/"))
    if isinstance(a, Response):
        return a
    return files.file_download(_lake(request), a, path)


def log_download(request: Request) -> Response:
    name = request.path_params["name"]
    a = _artifact(request, f"/logs/{quote(name)}/download")
    if isinstance(a, Response):
        return a
    return files.log_download(_lake(request), a, name)


def log_page(request: Request) -> Response:
    name = request.path_params["name"]
    a = _artifact(request, f"/logs/{quote(name)}")
    if isinstance(a, Response):
        return a
    return files.log_page(request, _lake(request), a, name)


def _lineage_args(request: Request) -> tuple[int, str]:
    raw = request.query_params.get("depth", "2")
    try:
        depth = int(raw)
    except ValueError:
        raise UsageError(f"depth must be a number from 1 to {data.MAX_DEPTH}, got {raw!r}") \
            from None
    direction = request.query_params.get("direction", "both")
    return depth, direction


def lineage_page(request: Request) -> Response:
    a = _artifact(request, "/lineage")
    if isinstance(a, Response):
        return a
    depth, direction = _lineage_args(request)
    g = data.lineage(_lake(request), a, depth, direction)
    by_layer: dict[int, list[data.Node]] = {}
    for n in g.nodes.values():
        by_layer.setdefault(n.layer, []).append(n)
    parents_in_graph: dict[str, list[str]] = {}  # the list's "compare with parent" links
    for parent, child in g.edges:
        if g.nodes[parent].md is not None:
            parents_in_graph.setdefault(child, []).append(parent)
    return render(request, "lineage.html", {
        "a": search.summary(a.metadata), "g": g, "drawing": layout(g), "depth": depth,
        "direction": direction, "max_depth": data.MAX_DEPTH,
        "layers": sorted(by_layer.items()), "summary": search.summary,
        "parents_in_graph": parents_in_graph})


def lineage_api(request: Request) -> Response:
    a = _artifact(request, "/lineage")
    if isinstance(a, Response):
        return a
    depth, direction = _lineage_args(request)
    return JSONResponse(data.lineage(_lake(request), a, depth, direction).as_json())


def _pair(request: Request) -> Any:
    """The two artifacts of a compare URL, or a redirect to their full ids."""
    given = request.path_params["a"], request.path_params["b"]
    a, b = (data.find_artifact(_lake(request), g) for g in given)
    if (a.id, b.id) != given:
        root = request.scope.get("root_path", "")
        api = "/api" if wants_json(request) else ""
        return RedirectResponse(f"{root}{api}/compare/{a.id}/{b.id}", status_code=307)
    return a, b


def compare_page(request: Request) -> Response:
    pair = _pair(request)
    if isinstance(pair, Response):
        return pair
    return render(request, "compare.html", {"c": data.compare(*pair)})


def compare_api(request: Request) -> Response:
    pair = _pair(request)
    if isinstance(pair, Response):
        return pair
    return JSONResponse(_jsonable(data.compare(*pair)))


def health(request: Request) -> Response:
    """200 when the catalogue and the store answer (for a reverse proxy's health check)."""
    lake = _lake(request)
    result: dict[str, Any] = {}
    ok = True
    for name, check in (("catalogue", lambda: lake.catalogue.check()),
                        ("store", lambda: lake.store.check())):
        try:
            result[name] = {"ok": True, "detail": check()}
        except ElliptioError as exc:
            ok = False
            result[name] = {"ok": False, "detail": str(exc)}
    return JSONResponse(result, status_code=200 if ok else 503)


# -- errors -------------------------------------------------------------------------------
def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(request, 404, "Not found", str(exc))


def _usage(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, "Bad request", str(exc))


def _catalogue_down(request: Request, exc: Exception) -> Response:
    log.warning("catalogue error on %s: %s", request.url.path, exc)
    return error_response(request, 503, "The catalogue is not available",
                          f"The catalogue could not answer: {exc}. Try again later; if it "
                          "persists, the catalogue's administrator must look at it.")


def _store_down(request: Request, exc: Exception) -> Response:
    log.warning("store error on %s: %s", request.url.path, exc)
    return error_response(request, 503, "The store is not available",
                          f"The store could not be read: {exc}. Try again later; if it "
                          "persists, the store's administrator must look at it.")


def _refused(request: Request, exc: Exception) -> Response:
    log.warning("refused on %s: %s", request.url.path, exc)
    return error_response(request, 502, "Refused: the lake's record or bytes do not check "
                          "out", str(exc))


def _elliptio_error(request: Request, exc: Exception) -> Response:
    log.warning("error on %s: %s", request.url.path, exc)
    return error_response(request, 500, "Error", str(exc))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    message = {404: f"Nothing here: {request.url.path}",
               405: "This catalogue is read-only: only GET requests exist."}.get(
                   exc.status_code, str(exc.detail))
    response = error_response(request, exc.status_code,
                              titles.get(exc.status_code, "Error"), message)
    for k, v in (exc.headers or {}).items():
        response.headers[k] = v
    return response


def _bug(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "Internal error",
                          "Something went wrong inside the catalogue page; the details "
                          "are in the server's log.")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.lake.close()  # the server's worker threads opened its connections


def create_app(lake: Lake, token: str | None = None, root_path: str = "") -> ASGIApp:
    """The ASGI application serving *lake* (see :mod:`elliptio.web`); it closes the lake
    when the server shuts down (ASGI lifespan; a later use of the lake opens it again)."""
    get = ["GET"]
    routes = [
        Route("/", search_page, methods=get),
        Route("/artifacts/{aid}", artifact_page, methods=get),
        Route("/artifacts/{aid}/metadata.yaml", metadata_download, methods=get),
        Route("/artifacts/{aid}/files/{path:path}", file_download, methods=get),
        Route("/artifacts/{aid}/logs/{name}", log_page, methods=get),
        Route("/artifacts/{aid}/logs/{name}/download", log_download, methods=get),
        Route("/artifacts/{aid}/lineage", lineage_page, methods=get),
        Route("/compare/{a}/{b}", compare_page, methods=get),
        Route("/api/search", search_api, methods=get),
        Route("/api/compare/{a}/{b}", compare_api, methods=get),
        Route("/api/artifacts/{aid}", artifact_api, methods=get),
        Route("/api/artifacts/{aid}/lineage", lineage_api, methods=get),
        Route("/api/health", health, methods=get),
        Route("/robots.txt", lambda r: PlainTextResponse("User-agent: *\nDisallow: /\n"),
              methods=get),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Any] = {
        NotFound: _not_found,
        UsageError: _usage,
        CatalogueError: _catalogue_down,
        StorageError: _store_down,
        IntegrityError: _refused,
        ElliptioError: _elliptio_error,
        HTTPException: _http_error,
        Exception: _bug,
    }
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=_lifespan)
    app.state.lake = lake
    return Guard(app, token, root_path)
