"""The bytes the page serves: an artifact's file downloads, its log downloads and log pages.

Readers re-check (docs/web.md, "Security notes"): before any byte of a file or log is
read, its entry in the metadata is held to :func:`elliptio.layout.entry_problem`, the rule
every reader applies even to a row an older catalogue holds (a path such as ``../x`` or
``/abs``, an object that is another artifact's ``.eio/metadata.yaml`` or a newer
artifact's file, a size or digest that is none). A refused entry is an ``IntegrityError``:
the error page (502, "Refused") with the reason, never bytes.

The bytes themselves are read through :func:`elliptio.verified.verified_open`, the one
way to verify a stream: the read that would complete a file whose bytes do not match its
recorded sha256 raises instead. A download's first chunk is read before the response
starts, so a file of one chunk (1 MiB) that does not match is the error page too; a
longer one stops short of its Content-Length, and the client sees a broken download, not
a complete-looking file. A log page shows a log only when all its bytes match.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..artifact import Artifact
from ..errors import IntegrityError, NotFound
from ..lake import Lake
from ..layout import entry_problem
from ..verified import verified_open
from .data import MAX_LOG_VIEW, human_size
from .rendering import render

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    base = name.rsplit("/", 1)[-1] or "download"
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in base)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


def _open_checked(lake: Lake, a: Artifact, entry: Any, kind: str, what: str) -> BinaryIO:
    """The verified reader of *entry*'s bytes, or ``IntegrityError`` if the rule refuses
    it (nothing is read from the store then)."""
    problem = entry_problem(a.metadata, entry, kind)
    if problem is not None:  # logged by the page's error handler
        raise IntegrityError(f"{what}: refused: {problem}. It is not served; someone with "
                             "access to the store must look at it (eio fsck).")
    return verified_open(lake.store.open(entry["object"]), what, entry["sha256"],
                         entry["size"])


def _chunks(fh: BinaryIO, first: bytes, what: str) -> Iterator[bytes]:
    try:
        chunk = first
        while chunk:
            yield chunk
            chunk = fh.read(CHUNK)
    except IntegrityError:
        log.error("%s: bytes in the store do not match the recorded sha256/size; "
                  "download cut short", what)
        raise
    finally:
        fh.close()


def _download(lake: Lake, a: Artifact, entry: Any, kind: str, filename: str) -> Response:
    what = f"{a.id}/{entry.get('path') if isinstance(entry, Mapping) else '?'}"
    fh = _open_checked(lake, a, entry, kind, what)
    try:
        first = fh.read(CHUNK)  # a one-chunk file is checked whole here: an error page
    except BaseException:
        fh.close()
        raise
    return StreamingResponse(
        _chunks(fh, first, what), media_type="application/octet-stream",
        headers={"content-disposition": disposition(filename),
                 "content-length": str(entry["size"]),
                 "cache-control": "private, max-age=86400, immutable"},
        background=BackgroundTask(fh.close))


def file_download(lake: Lake, a: Artifact, path: str) -> Response:
    # only a name listed in this artifact's metadata is served: the URL is looked up,
    # never joined onto a store path
    for entry in a.metadata.get("files") or []:
        if isinstance(entry, Mapping) and entry.get("path") == path:
            return _download(lake, a, entry, "file", path)
    raise NotFound(f"artifact {a.id} has no file {path!r}")


def log_entry(a: Artifact, name: str) -> Any:
    """The metadata's entry of log *name*; ``NotFound`` naming the logs it has."""
    logs = a.metadata.get("logs")
    logs = logs if isinstance(logs, Mapping) else {}
    if not isinstance(logs.get(name), Mapping):
        raise NotFound(f"artifact {a.id} has no log {name!r} (it has: "
                       f"{', '.join(map(str, logs)) or 'none'})")
    return logs[name]


def log_download(lake: Lake, a: Artifact, name: str) -> Response:
    entry = log_entry(a, name)
    return _download(lake, a, entry, "log", str(entry.get("path", "log.txt")))


def log_page(request: Request, lake: Lake, a: Artifact, name: str) -> Response:
    entry = log_entry(a, name)
    what = f"{a.id}: log {name!r}"
    with _open_checked(lake, a, entry, "log", what) as fh:
        try:
            raw = fh.read(MAX_LOG_VIEW)
            while fh.read(CHUNK):  # the rest is checked too, not shown
                pass
        except IntegrityError as exc:
            raise IntegrityError(f"{what}: its bytes do not match the recorded sha256 "
                                 "(or size); it is not shown. Someone with access to the "
                                 "store must look at it (eio fsck).") from exc
    size = entry["size"]
    path = entry["path"]
    is_diff = path.endswith((".patch", ".diff")) or "diff" in name
    text = raw.decode("utf-8", errors="replace")
    lines = [(_diff_class(line) if is_diff else "", line) for line in text.splitlines()]
    return render(request, "log.html", {
        "a": {"id": a.id, "user": a.user, "created": a.metadata.get("created")},
        "name": name, "path": path, "size": size, "size_h": human_size(size),
        "lines": lines, "cut": size > MAX_LOG_VIEW, "is_diff": is_diff})


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---", "diff ", "index ")):
        return "d-file"
    if line.startswith("@@"):
        return "d-hunk"
    if line.startswith("+"):
        return "d-add"
    if line.startswith("-"):
        return "d-del"
    return ""
