"""Commands that compare: ``eio env diff ID`` and ``eio diff A B``.

Both print only differences, and nothing when there are none. Their exit status answers
"do they differ?" as diff(1) does: 0 no, 1 yes (a difference was found), 2 cannot say
(nothing differs of what could be compared, but part could not be: an artifact saved
without pip freeze, e.g. by the mount's outbox, whose packages are unknown; what could not
be compared is named on stderr) and, as for every command, 2 for usage errors, 3 for an
unknown id. A terminal gets colours (green: only in the second, red: only in the first,
yellow: changed); a pipe gets plain text; ``--color/--no-color`` decides instead.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..artifact import Artifact
from ..artifactdiff import ArtifactDiff, FileEntry
from ..envdiff import EnvDiff
from ..errors import NotFound
from ..lake import Lake
from ..text import visible
from .output import echo_json, human, json_option, lake_of, table

#: the style of a row by its mark: only in the second side, only in the first, changed;
#: "h" a heading
STYLES: dict[str, dict[str, Any]] = {"+": {"fg": "green"}, "-": {"fg": "red"},
                                     "~": {"fg": "yellow"}, "h": {"bold": True}}

color_option = click.option("--color/--no-color", default=None,
                            help="Colour the output (default: only on a terminal).")


def _artifact(lake: Lake, text: str) -> Artifact:
    a = lake.get(lake.resolve_id(text))
    if a is None:
        raise NotFound(f"no artifact {text}")
    return a


def _status(differs: bool, unknown: dict[str, str]) -> int:
    return 1 if differs else 2 if unknown else 0


def _unknown(unknown: dict[str, str]) -> None:
    for part, why in unknown.items():
        click.echo(f"eio: {part} not compared: {visible(why)}", err=True)


def _echo(line: str, mark: str, color: bool | None) -> None:
    """A line already shown with :func:`visible`, coloured by *mark* where colour is on
    (click drops the colour when *color* is None and stdout is no terminal)."""
    style = STYLES.get(mark)
    click.echo(click.style(line, **style) if style else line, color=color)


@click.group()
def env() -> None:
    """The environments artifacts were saved in."""


@env.command("diff")
@click.argument("artifact_id")
@json_option
@color_option
@click.pass_context
def env_diff(ctx: click.Context, artifact_id: str, as_json: bool, color: bool | None) -> None:
    """What differs between an artifact's environment and this one: packages added,
    removed and changed (both versions), Python, platform. Prints nothing and exits 0 when
    they match, 1 when they differ, 2 when they could not be compared completely."""
    a = _artifact(lake_of(ctx), artifact_id)
    d = a.env_diff()
    if as_json:
        echo_json({"artifact": a.id, **d.as_dict()})
    else:
        marks = ["~"] * len(d.changed) + ["+"] * len(d.added) + ["-"] * len(d.removed)
        for line, mark in zip(d.lines(), marks + ["~", "~"], strict=False):
            _echo(visible(line), mark, color)
    _unknown(d.unknown)
    ctx.exit(_status(d.differs, d.unknown))


def _value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str, sort_keys=True)


def _file(f: FileEntry) -> str:
    return f"{human(f.size)}  {f.sha256[:12]}"


def rows(d: ArtifactDiff) -> list[list[str]]:
    """``[mark, what, name, a, b]`` of every difference, raw (``table`` shows them)."""
    out = [["+", "file", f.path, "", _file(f)] for f in d.files_added]
    out += [["-", "file", f.path, _file(f), ""] for f in d.files_removed]
    out += [["~", "file", c.path, _file(c.a), _file(c.b)] for c in d.files_changed]
    out += [["+", "info", k, "", _value(v)] for k, v in d.info_added]
    out += [["-", "info", k, _value(v), ""] for k, v in d.info_removed]
    out += [["~", "info", c.key, _value(c.a), _value(c.b)] for c in d.info_changed]
    out += [["+", "tag", t, "", ""] for t in d.tags_added]
    out += [["-", "tag", t, "", ""] for t in d.tags_removed]
    out += [["+", "based_on", i, "", ""] for i in d.based_on_added]
    out += [["-", "based_on", i, "", ""] for i in d.based_on_removed]
    e: EnvDiff = d.environment
    out += [["+", "package", n, "", v] for n, v in e.added]
    out += [["-", "package", n, v, ""] for n, v in e.removed]
    out += [["~", "package", n, va, vb] for n, va, vb in e.changed]
    for what, pair in (("python", e.python), ("platform", e.platform)):
        if pair:
            out.append(["~", what, "", pair[0], pair[1]])
    return out


@click.command()
@click.argument("a_id", metavar="A")
@click.argument("b_id", metavar="B")
@json_option
@color_option
@click.pass_context
def diff(ctx: click.Context, a_id: str, b_id: str, as_json: bool, color: bool | None) -> None:
    """What differs from artifact A to B: files (by sha256, with sizes), info, tags,
    based_on, and their environments as in `eio env diff`. "+" is in B only, "-" in A
    only, "~" changed. Exits 0 when nothing differs, 1 when something does, 2 when the
    environments could not be compared completely and nothing else differs."""
    lake = lake_of(ctx)
    a, b = _artifact(lake, a_id), _artifact(lake, b_id)
    d = a.diff(b)
    if as_json:
        echo_json(d.as_dict())
    elif d.differs:
        for label, x in (("a", a), ("b", b)):
            _echo(visible(f"{label}  {x.id}  {x.user}  {x.metadata.get('created')}"), "",
                  color)
        click.echo()
        found = rows(d)
        lines = table([[f"{r[0]} {r[1]}", *r[2:]] for r in found],
                      ["change", "name", "a", "b"]).split("\n")
        _echo(lines[0], "h", color)
        _echo(lines[1], "", color)
        for line, row in zip(lines[2:], found, strict=True):
            _echo(line, row[0], color)
    _unknown(d.environment.unknown)
    ctx.exit(_status(d.differs, d.environment.unknown))
