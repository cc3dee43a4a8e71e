"""What the pages show, as plain data: one builder per page, shared by the HTML page and
its JSON twin under ``/api/`` (the datasette habit: a page is a template over the data).
The search page's is :mod:`.search`.

Nothing here knows about HTTP. Every value taken from metadata is untrusted: it is passed
on as data and escaped by the templates (or JSON-encoded), never formatted into markup.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..artifact import Artifact, dump_metadata
from ..catalogue import query_tags
from ..errors import IntegrityError, NotFound, UsageError
from ..ids import ID_RE
from ..lake import Lake
from ..layout import entry_problem
from ..query import Query
from ..redact import redact_url
from .search import summary

#: children listed on an artifact page (the rest are a search away)
MAX_CHILDREN = 200
#: the lineage graph stops growing here (a note says so and suggests a smaller depth)
MAX_NODES = 500
MAX_DEPTH = 20
#: the most of a log shown on its page (logs are bounded to 1 MiB at capture)
MAX_LOG_VIEW = 2 << 20
#: ``eio diff <parent> <id>`` commands offered on an artifact page
MAX_DIFF_COMMANDS = 5
#: files the "Load it" snippet prefers (else the first file)
TABULAR = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".json", ".jsonl", ".feather", ".xlsx")
#: the pandas reader the "Load it" snippet names, by file extension (else read_csv)
PANDAS_READERS = {".parquet": "read_parquet", ".pq": "read_parquet", ".json": "read_json",
                  ".jsonl": "read_json", ".feather": "read_feather", ".xlsx": "read_excel",
                  ".pkl": "read_pickle", ".pickle": "read_pickle"}


# -- one artifact -------------------------------------------------------------------------
def find_artifact(lake: Lake, text: str) -> Artifact:
    """The artifact with this id (or unique prefix); ``NotFound`` for anything else, a
    malformed id included (it is a URL that does not exist)."""
    try:
        aid = lake.resolve_id(text)
    except NotFound:
        raise
    except UsageError as exc:
        raise NotFound(f"no artifact {text!r} ({exc})") from None
    a = lake.get(aid)
    if a is None:
        raise NotFound(f"no artifact {aid}")
    return a


def _size(entry: Any) -> int:
    """The recorded size of a file or log entry, 0 where it records none."""
    size = entry.get("size") if isinstance(entry, Mapping) else None
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def artifact(lake: Lake, a: Artifact) -> dict[str, Any]:
    """Everything the artifact page shows; ``/api/artifacts/<id>`` returns it as JSON."""
    md = a.metadata
    store = lake.store
    files = []
    for f in md.get("files") or []:
        # the rule every reader re-checks (layout.entry_problem): a refused file is listed
        # with the reason, without a download link or a URL of its object
        refused = entry_problem(md, f)
        f = f if isinstance(f, Mapping) else {}
        obj = str(f.get("object", ""))
        files.append({
            "path": str(f.get("path", "")),
            "size": _size(f),
            "size_h": human_size(_size(f)),
            "sha256": str(f.get("sha256", "")),
            "url": store.url_for(obj) if refused is None else None,
            "s3_url": store.s3_url(obj) if refused is None else None,
            "deduplicated": not obj.startswith(a.prefix + "/"),
            "refused": refused,
        })
    try:
        dirs = a.dirs
    except IntegrityError:
        dirs = []  # names save would not write are not listed (the raw YAML shows them)
    logs = []
    md_logs = md.get("logs")
    for name, entry in (md_logs.items() if isinstance(md_logs, Mapping) else ()):
        e = entry if isinstance(entry, Mapping) else {}
        logs.append({"name": str(name), "path": str(e.get("path", "")), "size": _size(e),
                     "size_h": human_size(_size(e)),
                     "refused": entry_problem(md, entry, "log")})
    parents = []
    for pid in a.based_on:
        p = lake.catalogue.get(pid) if ID_RE.fullmatch(str(pid)) else None
        parents.append(summary(p) if p else {"id": str(pid), "missing": True})
    kids = lake.catalogue.find(Query(based_on=a.id, limit=MAX_CHILDREN + 1))
    served = [f["path"] for f in files if f["refused"] is None]
    tabular = [p for p in served if p.lower().endswith(TABULAR)]  # the snippet's file
    served = tabular + served
    return {
        "id": a.id,
        "user": a.user,
        "created": md.get("created"),
        "type": a.type,
        "tags": [str(t) for t in a.tags],
        "query_tags": query_tags(md),  # the tags and the type, as the search page shows
        "prefix": md.get("prefix"),
        "info": a.info,
        "provenance": a.provenance,
        "files": files,
        "dirs": dirs,
        "total_size": sum(f["size"] for f in files),
        "logs": logs,
        "parents": parents,
        "children": [summary(c) for c in kids[:MAX_CHILDREN]],
        "more_children": len(kids) > MAX_CHILDREN,
        "snippet": f'import elliptio as eio\na = eio.load("{a.id}")',
        "url_snippet": _url_snippet(a.id, served[0]) if served else None,
        "reproduce": reproduce(a),
        "metadata": md,
    }


def _url_snippet(aid: str, path: str) -> str:
    """Reading a file by its ``eio://`` URL with pandas (a JSON string is a Python
    literal: quotes, backslashes and control characters in the path are escaped)."""
    dot = path.rfind(".")
    reader = PANDAS_READERS.get(path[dot:].lower() if dot > 0 else "", "read_csv")
    return f"import pandas\ndf = pandas.{reader}({json.dumps(f'eio://{aid}/{path}')})"


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, (dict, list)) else str(value)


def reproduce(a: Artifact) -> dict[str, Any]:
    """The artifact page's Reproduce section: what was recorded of the code state and the
    environment, and the commands that use it (``eio reproduce``, ``eio env diff``,
    ``eio diff <parent> <id>``), ready to copy. Ids in commands are ids (ID_RE), so they
    need no shell quoting; the recorded command line is quoted with shlex."""
    prov = a.provenance

    def part(name: str) -> Mapping[str, Any]:
        value = prov.get(name)
        return value if isinstance(value, Mapping) else {}

    git, py, plat, conda = part("git"), part("python"), part("platform"), part("conda")
    remote = _text(git.get("remote_url"))
    argv = prov.get("argv")
    version = _text(py.get("version"))
    parents = [str(p) for p in a.based_on if ID_RE.fullmatch(str(p))][:MAX_DIFF_COMMANDS]
    commands = [
        {"label": "rebuild its environment and code state in DIR",
         "text": f"eio reproduce {a.id} DIR"},
        {"label": "what differs from the environment you run",
         "text": f"eio env diff {a.id}"},
        *({"label": "what changed from its parent", "text": f"eio diff {p} {a.id}"}
          for p in parents),
    ]
    return {
        "git": {"present": git.get("present") is True,
                "reason": _text(git.get("reason")),
                "commit": _text(git.get("commit")), "branch": _text(git.get("branch")),
                # captured without credentials; redacted again, as the metadata is untrusted
                "remote": redact_url(remote) if remote else None,
                "dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None},
        "python": " ".join(x for x in (_text(py.get("implementation")), version) if x)
                  or None,
        "platform": _text(plat.get("description")) or " ".join(
            x for x in (_text(plat.get("system")), _text(plat.get("machine"))) if x) or None,
        "host": _text(prov.get("host")),
        "conda": _text(conda.get("name")) if conda.get("present") is True else None,
        "command": shlex.join(str(x) for x in argv) if isinstance(argv, list) else None,
        "cwd": _text(prov.get("cwd")),
        "commands": commands,
    }


def compare(a: Artifact, b: Artifact) -> dict[str, Any]:
    """The page comparing two artifacts; ``/api/compare/<a>/<b>`` returns it as JSON.

    ``diff`` is :meth:`Artifact.diff` as a dict (files, info, tags, based_on, the
    environment), from *a* to *b*; ``facts`` puts what each records side by side."""
    ra, rb = reproduce(a), reproduce(b)
    facts = []
    for label, va, vb in (
            ("user", a.user, b.user), ("created", a.metadata.get("created"),
                                       b.metadata.get("created")),
            ("type", a.type, b.type), ("python", ra["python"], rb["python"]),
            ("platform", ra["platform"], rb["platform"]), ("host", ra["host"], rb["host"]),
            ("git commit", ra["git"]["commit"], rb["git"]["commit"]),
            ("git branch", ra["git"]["branch"], rb["git"]["branch"]),
            ("uncommitted changes", ra["git"]["dirty"], rb["git"]["dirty"]),
            ("command line", ra["command"], rb["command"])):
        def shown(v: Any) -> str | None:
            return {True: "yes", False: "no"}.get(v) if isinstance(v, bool) else _text(v)

        facts.append({"label": label, "a": shown(va), "b": shown(vb), "differs": va != vb})
    return {"a": summary(a.metadata), "b": summary(b.metadata), "facts": facts,
            "diff": a.diff(b).as_dict()}


def metadata_yaml(a: Artifact) -> str:
    return dump_metadata(a.metadata).decode()


# -- lineage ------------------------------------------------------------------------------
@dataclass
class Node:
    id: str
    layer: int  # hops from the centre: negative = ancestors, positive = descendants
    md: dict[str, Any] | None  # None: named in a based_on but not in the catalogue

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "layer": self.layer}
        if self.md is None:
            out["missing"] = True
        else:
            out.update(summary(self.md))
        return out


@dataclass
class Lineage:
    centre: str
    depth: int
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]  # (parent, child)
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {"id": self.centre, "depth": self.depth, "truncated": self.truncated,
                "nodes": [n.as_json() for n in self.nodes.values()],
                "edges": [{"parent": p, "child": c} for p, c in self.edges]}


def lineage(lake: Lake, a: Artifact, depth: int, direction: str = "both") -> Lineage:
    """Ancestors and descendants of *a* up to *depth* hops, as nodes and edges.

    Two catalogue queries (the transitive ``ancestor_of`` / ``based_on`` searches, the
    same walks as ``eio search``); edges come from the ``based_on`` lists of the metadata
    those queries return, so there is no query per node. Layers are hop distances from
    *a*, found breadth first over those edges.
    """
    if direction not in ("both", "parents", "children"):
        raise UsageError(f"direction must be both, parents or children, got {direction!r}")
    if not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"depth must be from 1 to {MAX_DEPTH}, got {depth!r}")
    cat = lake.catalogue
    up: list[dict[str, Any]] = []
    down: list[dict[str, Any]] = []
    if direction in ("both", "parents"):
        up = cat.find(Query(ancestor_of=a.id, transitive=True, depth=depth,
                            limit=MAX_NODES + 1))
    if direction in ("both", "children"):
        down = cat.find(Query(based_on=a.id, transitive=True, depth=depth,
                              limit=MAX_NODES + 1))
    truncated = len(up) > MAX_NODES or len(down) > MAX_NODES
    up, down = up[:MAX_NODES], down[:MAX_NODES]
    known: dict[str, dict[str, Any]] = {a.id: a.metadata}
    for md in up + down:
        known.setdefault(md["id"], md)

    def parents_of(md: Mapping[str, Any]) -> list[str]:
        return [str(p) for p in md.get("based_on") or [] if isinstance(p, str)]

    nodes: dict[str, Node] = {a.id: Node(a.id, 0, a.metadata)}
    edges: set[tuple[str, str]] = set()
    # ancestors: walk parent links from the centre through what the query returned;
    # a parent missing from the catalogue is shown (greyed) one hop further up
    up_ids = {md["id"] for md in up}
    frontier = [a.id]
    for hop in range(1, depth + 1):
        nxt: list[str] = []
        for cid in frontier:
            for pid in parents_of(known[cid]):
                edges.add((pid, cid))
                if pid not in nodes:
                    nodes[pid] = Node(pid, -hop, known.get(pid))
                    if pid in up_ids:
                        nxt.append(pid)
        frontier = nxt
    # descendants: children link to parents already placed
    children: dict[str, list[str]] = {}
    for md in down:
        for pid in parents_of(md):
            children.setdefault(pid, []).append(md["id"])
    down_ids = {md["id"] for md in down}
    frontier = [a.id]
    for hop in range(1, depth + 1):
        nxt = []
        for pid in frontier:
            for cid in children.get(pid, []):
                edges.add((pid, cid))
                if cid not in nodes:
                    nodes[cid] = Node(cid, hop, known[cid])
                    nxt.append(cid)
        frontier = nxt
    # a descendant with several parents inside the graph: draw every such edge
    for cid in down_ids:
        for pid in parents_of(known[cid]):
            if pid in nodes and cid in nodes:
                edges.add((pid, cid))
    kept = [(p, c) for p, c in sorted(edges) if p in nodes and c in nodes]
    return Lineage(a.id, depth, nodes, kept, truncated)
