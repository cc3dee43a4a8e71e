"""Commands on artifacts: save, search, show, get, log, lineage."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click
import yaml

from ..artifact import Artifact
from ..errors import NotFound, UsageError
from ..inputs import resolve_inputs
from ..query import Query
from ..text import visible
from .output import Progress, echo_json, human, json_option, lake_of, say, summary, table


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-i", "--info", "info_items", multiple=True, metavar="KEY=VALUE",
              help="Metadata; values are read as YAML scalars. Dotted keys nest.")
@click.option("--info-file", type=click.Path(dir_okay=False), help="Metadata from a YAML file.")
@click.option("-t", "--type", "type_", help="Shorthand for --info type=VALUE.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--based-on", "based_on", multiple=True, metavar="ID",
              help="Parent artifact (repeatable); --no-based-on for none.")
@click.option("--no-based-on", is_flag=True, help="Record no parents.")
@json_option
@click.pass_context
def save(ctx: click.Context, paths: tuple[str, ...], info_items: tuple[str, ...],
         info_file: str | None, type_: str | None, tags: tuple[str, ...],
         based_on: tuple[str, ...], no_based_on: bool, as_json: bool) -> None:
    """Save files and directories as one new locked artifact."""
    lake = lake_of(ctx)
    info: dict[str, Any] = {}
    if info_file:
        try:
            with open(info_file, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read info file {info_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"info file {info_file} must hold a mapping")
        info.update(loaded)
    for item in info_items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--info wants KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and not raw.strip().startswith(("{", "[")):
            value = raw
        target = info
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise UsageError(f"--info {key}: {p} is not a mapping")
        target[last] = value
    if type_:
        info["type"] = type_
    parents_arg: list[str] | None = None
    if no_based_on:
        parents_arg = []
    elif based_on:
        parents_arg = [lake.resolve_id(b) for b in based_on]
    entries = resolve_inputs(list(paths))
    files = sum(1 for e in entries if not e.directory)
    total = sum(e.size for e in entries)
    bar = Progress(total, f"saving {files} file(s)")
    try:
        a = lake.save_entries(entries, info=info, tags=list(tags), based_on=parents_arg,
                              progress=bar)
    finally:
        bar.close()
    if as_json:
        echo_json({**summary(a), "dirs": a.dirs, "prefix": a.prefix,
                    "catalogued": a.catalogued})
        return
    dedup = sum(1 for f in a.files.values() if f.deduplicated)
    say(f"saved {a.id}: {files} file(s), {human(total)}"
        + (f" ({dedup} deduplicated)" if dedup else "")
        + (f", {len(a.dirs)} empty dir(s)" if a.dirs else "")
        + (f", based on {', '.join(a.based_on)}" if a.based_on else ""))
    say(f"  store: {visible(lake.store.url_for(a.prefix))}")
    if not a.catalogued:
        say("  warning: the catalogue was not updated; run `eio reindex`", err=True)


@click.command()
@click.argument("query", required=False, default="")
@click.option("-u", "--user")
@click.option("--since", help="e.g. 10d, 3h, 2026-11-01")
@click.option("--until")
@click.option("-f", "--file", "files", multiple=True, help="File-name glob (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Tag glob (repeatable).")
@click.option("-t", "--type", "type_")
@click.option("-i", "--info", "info_items", multiple=True, metavar="KEY=VALUE")
@click.option("--based-on", help="Children of this artifact.")
@click.option("--transitive", is_flag=True, help="With --based-on: all descendants.")
@click.option("--text", help="Free-text substring.")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="0 = no limit.")
@click.option("--oldest", is_flag=True, help="Oldest first.")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matches.")
@json_option
@click.pass_context
def search(ctx: click.Context, query: str, user: str | None, since: str | None,
           until: str | None, files: tuple[str, ...], tags: tuple[str, ...],
           type_: str | None, info_items: tuple[str, ...], based_on: str | None,
           transitive: bool, text: str | None, limit: int, oldest: bool, count_only: bool,
           as_json: bool) -> None:
    """Find artifacts. QUERY uses the mount's language, e.g.

    eio search 'user=andy,since=10d,file=*.txt,tag=*dataset*'
    """
    lake = lake_of(ctx)
    parent = based_on and lake.resolve_id(based_on)
    conditions: list[tuple[str, str]] = []
    for item in info_items:
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"--info wants KEY=VALUE, got {item!r}")
        conditions.append((k, v))
    q = Query.from_fields(query, user=user, since=since, until=until, files=files, tags=tags,
                          type=type_, info=conditions, text=text, based_on=parent,
                          transitive=transitive, limit=limit or None,
                          order="oldest" if oldest else "newest")
    if count_only:
        n = lake.catalogue.count(q)
        click.echo(json.dumps({"count": n}) if as_json else str(n))
        return
    found = lake.search(q)
    if as_json:
        echo_json([summary(a) for a in found])
        return
    if not found:
        say("no artifacts match", err=True)
        return
    rows = []
    for a in found:
        names = [f["path"] for f in a.metadata["files"]]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        info = ", ".join(f"{k}={v}" for k, v in a.info.items() if k != "type")
        rows.append([a.id, a.user, a.metadata["created"][:19].replace("T", " "),
                     a.type or "", ",".join(a.tags), shown, info])
    say(table(rows, ["ID", "USER", "CREATED (UTC)", "TYPE", "TAGS", "FILES", "INFO"]))
    if limit and len(found) == limit:
        say(f"(first {limit}; use --limit 0 for all)", err=True)


@click.command()
@click.argument("artifact_id")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print metadata.yaml as stored.")
@json_option
@click.pass_context
def show(ctx: click.Context, artifact_id: str, as_yaml: bool, as_json: bool) -> None:
    """Show an artifact: metadata, files, logs and lineage."""
    lake = lake_of(ctx)
    a = lake.get(lake.resolve_id(artifact_id))
    if a is None:
        raise NotFound(f"no artifact {artifact_id}")
    if as_json:
        echo_json(a.metadata)
        return
    if as_yaml:
        text = yaml.safe_dump(a.metadata, sort_keys=False, allow_unicode=True)
        if visible(text, keep="\n") != text:
            # PyYAML leaves bidi and zero-width characters raw with allow_unicode: then
            # every non-ASCII character is written as a YAML escape (the same value)
            text = yaml.safe_dump(a.metadata, sort_keys=False, allow_unicode=False)
        say(text, nl=False)
        return
    md = a.metadata
    say(f"artifact  {a.id}")
    say(f"user      {visible(a.user)}")
    say(f"created   {visible(md['created'])}")
    if a.type:
        say(f"type      {visible(a.type)}")
    if a.tags:
        say(f"tags      {', '.join(visible(t) for t in a.tags)}")
    say(f"store     {visible(lake.store.url_for(a.prefix))}")
    info = {k: v for k, v in a.info.items() if k != "type"}
    if info:
        say("info:")
        say("  " + yaml.safe_dump(info, sort_keys=False, allow_unicode=True)
                   .rstrip().replace("\n", "\n  "))
    say(f"files ({len(md['files'])}):")
    rows = [[f.path, human(f.size), f.sha256[:16] + ("  (dedup)" if f.deduplicated else "")]
            for f in a.files.values()]
    say("  " + table(rows, ["PATH", "SIZE", "SHA256"]).replace("\n", "\n  "))
    if a.dirs:
        say(f"empty directories ({len(a.dirs)}):")
        say("".join(f"  {visible(d)}/\n" for d in a.dirs), nl=False)
    say(f"logs: {', '.join(visible(n) for n in a.logs) or 'none'}")
    prov = a.provenance
    git = prov.get("git") or {}
    if git.get("present"):
        say(f"git: {visible(str(git.get('commit', ''))[:12])} on {visible(git.get('branch'))}"
            + (" (dirty)" if git.get("dirty") else "") + f" in {visible(git.get('root'))}")
    if prov.get("argv"):
        say(f"command: {' '.join(visible(x) for x in prov['argv'])}"
            f"  (host {visible(prov.get('host'))})")
    say(f"based on: {', '.join(visible(p) for p in a.based_on) or 'nothing'}")
    children = lake.search(based_on=a.id, limit=20)
    say(f"used by: {', '.join(visible(c.id) for c in children) or 'nothing yet'}")


@click.command(name="get")
@click.argument("artifact_id")
@click.argument("paths", nargs=-1)
@click.option("-o", "--dest", default=".", show_default=True, help="Directory to write into.")
@json_option
@click.pass_context
def get_cmd(ctx: click.Context, artifact_id: str, paths: tuple[str, ...], dest: str,
            as_json: bool) -> None:
    """Download an artifact's files (all, or PATHS) into DEST/<id>/, verified by sha256;
    without PATHS its empty directories too."""
    lake = lake_of(ctx)
    a = lake.load(artifact_id)
    dirs = [] if paths else a.dirs  # checked before anything is written
    chosen = [a.files[p] for p in paths] if paths else list(a.files.values())
    total = sum(f.size for f in chosen)
    bar = Progress(total, f"downloading {len(chosen)} file(s)")
    try:  # the one download path: every entry re-checked before anything is written
        root_path = a.download(dest, progress=bar, paths=list(paths) if paths else None)
    finally:
        bar.close()
    root = str(root_path)
    written = [str(root_path / f.path) for f in chosen]
    made = [os.path.join(root, *d.split("/")) for d in dirs]
    if as_json:
        echo_json({"id": a.id, "files": written, "dirs": made})
    else:
        say(f"downloaded {len(written)} file(s), {human(total)}, to {visible(root)}"
                   + (f" (and {len(made)} empty dir(s))" if made else ""))



@click.command()
@click.argument("artifact_id")
@click.argument("name", required=False)
@click.pass_context
def log_cmd(ctx: click.Context, artifact_id: str, name: str | None) -> None:
    """Print a captured log (pip_freeze, git_diff, git_untracked); list them without NAME."""
    lake = lake_of(ctx)
    a = lake.get(lake.resolve_id(artifact_id))
    if a is None:
        raise NotFound(f"no artifact {artifact_id}")
    if name is None:
        for n in a.logs:
            f = a.logs[n]
            say(f"{visible(n):16} {human(f.size):>10}  {visible(f.path)}")
        return
    text = a.logs[name.removesuffix(".txt").removesuffix(".patch")].read_text()
    # a log is a file (a diff to apply, a freeze to install): piped, it goes out as stored;
    # on a terminal its controls are shown, its line breaks and tabs kept
    click.echo(visible(text, keep="\n\t") if sys.stdout.isatty() else text, nl=False)



@click.command()
@click.argument("artifact_id")
@click.option("--parents", "direction", flag_value="parents", help="Only what it is based on.")
@click.option("--children", "direction", flag_value="children", help="Only what is based on it.")
@click.option("-d", "--depth", type=click.IntRange(1, 1000), default=3, show_default=True)
@json_option
@click.pass_context
def lineage(ctx: click.Context, artifact_id: str, direction: str | None, depth: int,
            as_json: bool) -> None:
    """Show what an artifact is based on and what is based on it, as trees."""
    lake = lake_of(ctx)
    root = lake.get(lake.resolve_id(artifact_id))
    if root is None:
        raise NotFound(f"no artifact {artifact_id}")

    def walk(a: Artifact, d: int, nxt: Callable[[Artifact], list[Artifact]],
             seen: set[str]) -> dict[str, Any]:
        node: dict[str, Any] = {"id": a.id, "user": a.user, "created": a.metadata["created"],
                                "type": a.type, "files": len(a.metadata["files"])}
        if d < depth and a.id not in seen:
            node["items"] = [walk(c, d + 1, nxt, seen | {a.id}) for c in nxt(a)]
        return node

    def parents(a: Artifact) -> list[Artifact]:
        return a.parents()

    def children(a: Artifact) -> list[Artifact]:
        return lake.search(based_on=a.id, limit=None)

    result: dict[str, Any] = {"id": root.id}
    if direction in (None, "parents"):
        result["parents"] = walk(root, 0, parents, set()).get("items", [])
    if direction in (None, "children"):
        result["children"] = walk(root, 0, children, set()).get("items", [])
    if as_json:
        echo_json(result)
        return

    def label(n: dict[str, Any]) -> str:
        return (f"{visible(n['id'])}  {visible(n['user'])}  "
                f"{visible(str(n['created'])[:19].replace('T', ' '))}"
                + (f"  {visible(n['type'])}" if n["type"] else ""))

    def draw(items: list[dict[str, Any]], indent: str) -> None:
        for i, n in enumerate(items):
            last = i == len(items) - 1
            say(indent + ("└── " if last else "├── ") + label(n))
            draw(n.get("items", []), indent + ("    " if last else "│   "))

    say(f"{root.id}  {visible(root.user)}  "
        f"{visible(root.metadata['created'][:19].replace('T', ' '))}")
    if "parents" in result:
        say("based on:" if result["parents"] else "based on: nothing")
        draw(result["parents"], "")
    if "children" in result:
        say("used by:" if result["children"] else "used by: nothing yet")
        draw(result["children"], "")
