"""Commands on the lake as a whole: reindex, fsck, init, web, config."""

from __future__ import annotations

import dataclasses
import sys

import click

from .. import indexer
from ..config import DAEMON_KEYS, Settings, read_config
from ..errors import UsageError
from ..redact import redact_url
from ..indexer.orphans import ORPHAN_MIN_AGE, ORPHAN_MIN_AGE_FLOOR
from ..text import visible
from .output import echo_json, json_option, lake_of, say


@click.command()
@click.option("--since", help="Only artifacts created on or after this day (or 10d, ...).")
@click.option("--to", "to_url", metavar="URL",
              help="Fill this catalogue instead (e.g. postgresql://host/db or mongodb://host/: "
              "the move to a team catalogue).")
@click.option("--full", is_flag=True,
              help="Re-read and re-upsert artifacts already catalogued too.")
@json_option
@click.pass_context
def reindex(ctx: click.Context, since: str | None, to_url: str | None, full: bool,
            as_json: bool) -> None:
    """Rebuild or refresh the catalogue from the store (idempotent, resumable)."""
    lake = lake_of(ctx)
    count = [0]
    tty = sys.stderr.isatty()

    def progress(n: int) -> None:
        # called once per batch (indexer.BATCH keys): every call is shown, the last one
        # too (a multiple-of-100 rule left out every total that is not one)
        count[0] += n
        if tty:
            sys.stderr.write(f"\rscanned {count[0]} artifact(s)")
            sys.stderr.flush()

    try:
        if to_url:
            report = indexer.migrate(lake, to_url, since=since, progress=progress, full=full)
        else:
            report = indexer.reindex(lake, since=since, progress=progress, full=full)
    finally:
        if tty and count[0]:
            sys.stderr.write("\n")  # an error or the summary starts a line of its own
    if as_json:
        echo_json(dataclasses.asdict(report))
        return
    say(f"reindexed {report.indexed} of {report.scanned} artifact(s) from "
        f"{visible(lake.store.url)} into {visible(report.catalogue)}"
        + (f" ({report.skipped} already there)" if report.skipped else ""))
    for key, why in report.quarantined:
        say(f"  quarantined {visible(key)}: {visible(why)}", err=True)
    for conflict in report.conflicts:
        say(f"  conflict: {visible(str(conflict))}", err=True)
    if report.quarantined or report.conflicts:
        ctx.exit(1)


@click.command()
@click.option("--verify", is_flag=True, help="Re-read every object and check its sha256.")
@click.option("--remove-orphans", is_flag=True,
              help="Remove what interrupted saves left (never a committed artifact, never "
              "a metadata.yaml; what is kept is reported with why).")
@click.option("--orphan-min-age", type=click.FloatRange(ORPHAN_MIN_AGE_FLOOR),
              default=ORPHAN_MIN_AGE, show_default=True, metavar="SECONDS",
              help="Remove an orphan only when nothing under it was written for this long, "
              "measured from its newest object: 86400 (one day) by default, at least 3600 "
              "(a save in progress looks like an orphan until it commits).")
@json_option
@click.pass_context
def fsck(ctx: click.Context, verify: bool, remove_orphans: bool, orphan_min_age: float,
         as_json: bool) -> None:
    """Compare store and catalogue: orphans, missing rows, size/sha256 mismatches."""
    lake = lake_of(ctx)
    report = indexer.fsck(lake, verify=verify, remove_orphans=remove_orphans,
                          orphan_min_age=orphan_min_age)
    data = dataclasses.asdict(report)
    if as_json:
        echo_json({**data, "clean": report.clean})
    else:
        say(f"checked {report.checked} artifact(s)")
        for field, values in data.items():
            if isinstance(values, list) and values:
                say(f"{field.replace('_', ' ')} ({len(values)}):")
                for v in values[:50]:
                    say(f"  {visible(v)}")
                if len(values) > 50:
                    say(f"  ... and {len(values) - 50} more")
        say("clean" if report.clean else "problems found")
    if not report.clean:
        ctx.exit(1)


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create (or check) the configured store and catalogue."""
    lake = lake_of(ctx)
    say(f"store: {visible(lake.store.init())}")
    say(f"catalogue: {visible(lake.catalogue.check())}")
    say(f"user: {visible(lake.settings.user)}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default; see docs/web.md for a shared host).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--token", envvar="ELLIPTIO_WEB_TOKEN", help="Require this access token.")
@click.option("--root-path", default="", help="Path prefix when behind a reverse proxy.")
@click.pass_context
def web(ctx: click.Context, host: str, port: int, token: str | None, root_path: str) -> None:
    """Serve the catalogue web page and its JSON API."""
    try:
        from .. import web as web_mod
    except ImportError as exc:
        raise UsageError(f"the web page needs the 'web' extra: pip install 'elliptio[web]' "
                         f"({exc})") from None
    web_mod.serve(lake_of(ctx), host=host, port=port, token=token, root_path=root_path)


@click.command()
@json_option
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration and where each value came from; the mount
    daemon's own settings as given (unset: the daemon's default)."""
    s = Settings.load()
    data = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "source"}
    data["store"], data["catalogue"] = redact_url(s.store), redact_url(s.catalogue)
    daemon, daemon_source = read_config(DAEMON_KEYS)
    if as_json:
        echo_json({**data, **{k: daemon.get(k) for k in DAEMON_KEYS}})
        return
    for k, v in data.items():
        say(f"{k:16} {visible(v)}   ({visible(s.source.get(k, 'default'))})")
    for k in DAEMON_KEYS:
        if k in daemon:
            say(f"{k:16} {visible(daemon[k])}   ({visible(daemon_source[k])}; read by elliptiofs)")
        else:
            say(f"{k:16} -   (elliptiofs' default)")
