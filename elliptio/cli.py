"""The ``eio`` command.

Every command prints a human-readable result by default and JSON with ``--json``. User
mistakes and operational failures (:class:`~elliptio.errors.ElliptioError`) print one line
``eio: error: ...`` and exit with the error's code (2 usage/query/config, 3 not found,
4 immutable, 5 integrity, 6 store, 7 catalogue); ``--debug`` shows the traceback. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click
import yaml

from . import indexer
from .artifact import Artifact
from .config import DAEMON_KEYS, Settings, read_config
from .errors import ElliptioError, NotFound, UsageError
from .inputs import resolve_inputs
from .lake import Lake
from .query import Query
from .version import __version__

log = logging.getLogger("elliptio.cli")


# -- output helpers ---------------------------------------------------------------------
class Progress:
    """A one-line byte progress bar on stderr, shown only on a terminal and for big jobs."""

    def __init__(self, total: int, label: str, min_total: int = 32 << 20) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = sys.stderr.isatty() and total >= min_total
        self._last = 0.0
        self._start = time.monotonic()
        self._lock = threading.Lock()  # transfers report from several threads

    def __call__(self, n: int) -> None:
        with self._lock:
            self._report(n)

    def _report(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(1.0, self.done / self.total) if self.total else 1.0
            width = 30
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            rate = self.done / max(now - self._start, 1e-6) / 1e6
            sys.stderr.write(f"\r{self.label} [{bar}] {frac:6.1%} {rate:7.1f} MB/s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    width = shutil.get_terminal_size((120, 20)).columns
    cols = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(headers)]
    # on a terminal, the last column takes what is left of its width; pipes get it all
    if sys.stdout.isatty():
        used = sum(cols[:-1]) + 2 * (len(cols) - 1)
        cols[-1] = max(10, min(cols[-1], width - used))

    def fmt(r: list[str]) -> str:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, cols, strict=True)]
        return "  ".join(c.ljust(w) for c, w in zip(cells, cols, strict=True)).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in cols])] + [fmt(r) for r in rows])


def _summary(a: Artifact) -> dict[str, Any]:
    return {"id": a.id, "user": a.user, "created": a.metadata["created"], "type": a.type,
            "tags": a.tags, "files": [f["path"] for f in a.metadata["files"]],
            "info": a.info, "based_on": a.based_on}


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _lake(ctx: click.Context) -> Lake:
    obj = ctx.find_root().obj
    if "lake" not in obj:
        obj["lake"] = Lake(Settings.load())
    return obj["lake"]


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# -- the command group ------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Log debug messages and show tracebacks.")
@click.version_option(__version__, prog_name="eio")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ElliptIO: immutable artifacts with provenance, search and lineage.

    Configuration comes from ELLIPTIO_STORE, ELLIPTIO_CATALOGUE, ELLIPTIO_USER and
    ELLIPTIO_CONFIG (see the README).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="eio: %(levelname)s: %(message)s")


@cli.command()
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
    lake = _lake(ctx)
    info: dict[str, Any] = {}
    if info_file:
        try:
            loaded = yaml.safe_load(open(info_file, encoding="utf-8"))
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
        _echo_json({**_summary(a), "dirs": a.dirs, "prefix": a.prefix,
                    "catalogued": a.catalogued})
        return
    dedup = sum(1 for f in a.files.values() if f.deduplicated)
    click.echo(f"saved {a.id}: {files} file(s), {_human(total)}"
               + (f" ({dedup} deduplicated)" if dedup else "")
               + (f", {len(a.dirs)} empty dir(s)" if a.dirs else "")
               + (f", based on {', '.join(a.based_on)}" if a.based_on else ""))
    click.echo(f"  store: {lake.store.url_for(a.prefix)}")
    if not a.catalogued:
        click.echo("  warning: the catalogue was not updated; run `eio reindex`", err=True)


@cli.command()
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
    lake = _lake(ctx)
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
        _echo_json([_summary(a) for a in found])
        return
    if not found:
        click.echo("no artifacts match", err=True)
        return
    rows = []
    for a in found:
        names = [f["path"] for f in a.metadata["files"]]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        info = ", ".join(f"{k}={v}" for k, v in a.info.items() if k != "type")
        rows.append([a.id, a.user, a.metadata["created"][:19].replace("T", " "),
                     a.type or "", ",".join(a.tags), shown, info])
    click.echo(_table(rows, ["ID", "USER", "CREATED (UTC)", "TYPE", "TAGS", "FILES", "INFO"]))
    if limit and len(found) == limit:
        click.echo(f"(first {limit}; use --limit 0 for all)", err=True)


@cli.command()
@click.argument("artifact_id")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print metadata.yaml as stored.")
@json_option
@click.pass_context
def show(ctx: click.Context, artifact_id: str, as_yaml: bool, as_json: bool) -> None:
    """Show an artifact: metadata, files, logs and lineage."""
    lake = _lake(ctx)
    a = lake.get(lake.resolve_id(artifact_id))
    if a is None:
        raise NotFound(f"no artifact {artifact_id}")
    if as_json:
        _echo_json(a.metadata)
        return
    if as_yaml:
        click.echo(yaml.safe_dump(a.metadata, sort_keys=False, allow_unicode=True), nl=False)
        return
    md = a.metadata
    click.echo(f"artifact  {a.id}")
    click.echo(f"user      {a.user}")
    click.echo(f"created   {md['created']}")
    if a.type:
        click.echo(f"type      {a.type}")
    if a.tags:
        click.echo(f"tags      {', '.join(a.tags)}")
    click.echo(f"store     {lake.store.url_for(a.prefix)}")
    info = {k: v for k, v in a.info.items() if k != "type"}
    if info:
        click.echo("info:")
        click.echo("  " + yaml.safe_dump(info, sort_keys=False, allow_unicode=True)
                   .rstrip().replace("\n", "\n  "))
    click.echo(f"files ({len(md['files'])}):")
    rows = [[f.path, _human(f.size), f.sha256[:16] + ("  (dedup)" if f.deduplicated else "")]
            for f in a.files.values()]
    click.echo("  " + _table(rows, ["PATH", "SIZE", "SHA256"]).replace("\n", "\n  "))
    if a.dirs:
        click.echo(f"empty directories ({len(a.dirs)}):")
        click.echo("".join(f"  {d}/\n" for d in a.dirs), nl=False)
    click.echo(f"logs: {', '.join(a.logs) or 'none'}")
    prov = a.provenance
    git = prov.get("git") or {}
    if git.get("present"):
        click.echo(f"git: {git.get('commit', '')[:12]} on {git.get('branch')}"
                   + (" (dirty)" if git.get("dirty") else "") + f" in {git.get('root')}")
    if prov.get("argv"):
        click.echo(f"command: {' '.join(prov['argv'])}  (host {prov.get('host')})")
    click.echo(f"based on: {', '.join(a.based_on) or 'nothing'}")
    children = lake.search(based_on=a.id, limit=20)
    click.echo(f"used by: {', '.join(c.id for c in children) or 'nothing yet'}")


@cli.command(name="get")
@click.argument("artifact_id")
@click.argument("paths", nargs=-1)
@click.option("-o", "--dest", default=".", show_default=True, help="Directory to write into.")
@json_option
@click.pass_context
def get_cmd(ctx: click.Context, artifact_id: str, paths: tuple[str, ...], dest: str,
            as_json: bool) -> None:
    """Download an artifact's files (all, or PATHS) into DEST/<id>/, verified by sha256;
    without PATHS its empty directories too."""
    lake = _lake(ctx)
    a = lake.load(artifact_id)
    dirs = [] if paths else a.dirs  # checked before anything is written
    chosen = [a.files[p] for p in paths] if paths else list(a.files.values())
    total = sum(f.size for f in chosen)
    bar = Progress(total, f"downloading {len(chosen)} file(s)")
    written = []
    try:
        root = os.path.join(dest, a.id)
        for f in chosen:
            target = os.path.join(root, *f.path.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            written.append(str(f.download(target, progress=bar)))
    finally:
        bar.close()
    made = []
    for d in dirs:
        target = os.path.join(root, *d.split("/"))
        try:
            os.makedirs(target, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {target}: {exc.strerror}") from exc
        made.append(target)
    if as_json:
        _echo_json({"id": a.id, "files": written, "dirs": made})
    else:
        click.echo(f"downloaded {len(written)} file(s), {_human(total)}, to {root}"
                   + (f" (and {len(made)} empty dir(s))" if made else ""))


cli.add_command(get_cmd, name="download")


@cli.command()
@click.argument("artifact_id")
@click.argument("name", required=False)
@click.pass_context
def log_cmd(ctx: click.Context, artifact_id: str, name: str | None) -> None:
    """Print a captured log (pip_freeze, git_diff, git_untracked); list them without NAME."""
    lake = _lake(ctx)
    a = lake.get(lake.resolve_id(artifact_id))
    if a is None:
        raise NotFound(f"no artifact {artifact_id}")
    if name is None:
        for n in a.logs:
            f = a.logs[n]
            click.echo(f"{n:16} {_human(f.size):>10}  {f.path}")
        return
    click.echo(a.logs[name.removesuffix(".txt").removesuffix(".patch")].read_text(), nl=False)


cli.add_command(log_cmd, name="log")


@cli.command()
@click.argument("artifact_id")
@click.option("--parents", "direction", flag_value="parents", help="Only what it is based on.")
@click.option("--children", "direction", flag_value="children", help="Only what is based on it.")
@click.option("-d", "--depth", type=click.IntRange(1, 1000), default=3, show_default=True)
@json_option
@click.pass_context
def lineage(ctx: click.Context, artifact_id: str, direction: str | None, depth: int,
            as_json: bool) -> None:
    """Show what an artifact is based on and what is based on it, as trees."""
    lake = _lake(ctx)
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
        _echo_json(result)
        return

    def label(n: dict[str, Any]) -> str:
        return f"{n['id']}  {n['user']}  {n['created'][:19].replace('T', ' ')}" + \
            (f"  {n['type']}" if n["type"] else "")

    def draw(items: list[dict[str, Any]], indent: str) -> None:
        for i, n in enumerate(items):
            last = i == len(items) - 1
            click.echo(indent + ("└── " if last else "├── ") + label(n))
            draw(n.get("items", []), indent + ("    " if last else "│   "))

    click.echo(f"{root.id}  {root.user}  {root.metadata['created'][:19].replace('T', ' ')}")
    if "parents" in result:
        click.echo("based on:" if result["parents"] else "based on: nothing")
        draw(result["parents"], "")
    if "children" in result:
        click.echo("used by:" if result["children"] else "used by: nothing yet")
        draw(result["children"], "")


@cli.command()
@click.option("--since", help="Only artifacts created on or after this day (or 10d, ...).")
@click.option("--to", "to_url", metavar="URL",
              help="Fill this catalogue instead (e.g. mongodb://host/: the move to MongoDB).")
@click.option("--full", is_flag=True,
              help="Re-read and re-upsert artifacts already catalogued too.")
@json_option
@click.pass_context
def reindex(ctx: click.Context, since: str | None, to_url: str | None, full: bool,
            as_json: bool) -> None:
    """Rebuild or refresh the catalogue from the store (idempotent, resumable)."""
    lake = _lake(ctx)
    count = [0]
    tty = sys.stderr.isatty()

    def progress(n: int) -> None:
        count[0] += n
        if tty and count[0] % 100 == 0:
            sys.stderr.write(f"\rreindexed {count[0]} artifact(s)")
            sys.stderr.flush()

    if to_url:
        report = indexer.migrate(lake, to_url, since=since, progress=progress, full=full)
    else:
        report = indexer.reindex(lake, since=since, progress=progress, full=full)
    if tty and count[0] >= 100:
        sys.stderr.write("\n")
    if as_json:
        _echo_json(dataclasses.asdict(report))
        return
    click.echo(f"reindexed {report.indexed} of {report.scanned} artifact(s) from "
               f"{lake.store.url} into {report.catalogue}"
               + (f" ({report.skipped} already there)" if report.skipped else ""))
    for key, why in report.malformed:
        click.echo(f"  skipped {key}: {why}", err=True)
    if report.malformed:
        ctx.exit(1)


@cli.command()
@click.option("--verify", is_flag=True, help="Re-read every object and check its sha256.")
@click.option("--remove-orphans", is_flag=True,
              help="Remove what interrupted saves left (never a committed artifact).")
@click.option("--orphan-min-age", type=click.FloatRange(0), default=0.0, show_default=True,
              metavar="SECONDS", help="Only treat artifact directories older than this as "
              "orphans (a save in progress looks like one until it commits).")
@json_option
@click.pass_context
def fsck(ctx: click.Context, verify: bool, remove_orphans: bool, orphan_min_age: float,
         as_json: bool) -> None:
    """Compare store and catalogue: orphans, missing rows, size/sha256 mismatches."""
    lake = _lake(ctx)
    report = indexer.fsck(lake, verify=verify, remove_orphans=remove_orphans,
                          orphan_min_age=orphan_min_age)
    data = dataclasses.asdict(report)
    if as_json:
        _echo_json({**data, "clean": report.clean})
    else:
        click.echo(f"checked {report.checked} artifact(s)")
        for field, values in data.items():
            if isinstance(values, list) and values:
                click.echo(f"{field.replace('_', ' ')} ({len(values)}):")
                for v in values[:50]:
                    click.echo(f"  {v}")
                if len(values) > 50:
                    click.echo(f"  ... and {len(values) - 50} more")
        click.echo("clean" if report.clean else "problems found")
    if not report.clean:
        ctx.exit(1)


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create (or check) the configured store and catalogue."""
    lake = _lake(ctx)
    click.echo(f"store: {lake.store.init()}")
    click.echo(f"catalogue: {lake.catalogue.check()}")
    click.echo(f"user: {lake.settings.user}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default; see docs/web.md for a shared host).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--token", envvar="ELLIPTIO_WEB_TOKEN", help="Require this access token.")
@click.option("--root-path", default="", help="Path prefix when behind a reverse proxy.")
@click.pass_context
def web(ctx: click.Context, host: str, port: int, token: str | None, root_path: str) -> None:
    """Serve the catalogue web page and its JSON API."""
    try:
        from . import web as web_mod
    except ImportError as exc:
        raise UsageError(f"the web page needs the 'web' extra: pip install 'elliptio[web]' "
                         f"({exc})") from None
    web_mod.serve(_lake(ctx), host=host, port=port, token=token, root_path=root_path)


@cli.command()
@json_option
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration and where each value came from; the mount
    daemon's own settings as given (unset: the daemon's default)."""
    s = Settings.load()
    data = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "source"}
    daemon, daemon_source = read_config(DAEMON_KEYS)
    if as_json:
        _echo_json({**data, **{k: daemon.get(k) for k in DAEMON_KEYS}})
        return
    for k, v in data.items():
        click.echo(f"{k:16} {v}   ({s.source.get(k, 'default')})")
    for k in DAEMON_KEYS:
        if k in daemon:
            click.echo(f"{k:16} {daemon[k]}   ({daemon_source[k]}; read by elliptiofs)")
        else:
            click.echo(f"{k:16} -   (elliptiofs' default)")


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="eio", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("eio: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("eio: interrupted", err=True)
        sys.exit(130)
    except ElliptioError as exc:
        if debug:
            raise
        msg = str(exc)
        if isinstance(exc, KeyError) and msg.startswith("'"):
            msg = msg.strip("'")
        click.echo(f"eio: error: {msg}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
