"""What the commands print: tables, JSON, progress bars; and the lake they work on.

Every line for people goes out through :func:`say`, which shows control characters escaped
(:func:`elliptio.text.visible`) except the line breaks the command itself put in; a string
from the lake that is interpolated into a line is passed through ``visible`` first, so that
its own line breaks are shown too. JSON goes out through :func:`echo_json`
(:func:`elliptio.text.json_visible`): the same value, nothing a terminal acts on.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from typing import Any

import click

from ..artifact import Artifact
from ..config import Settings
from ..lake import Lake
from ..text import json_visible, visible


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


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def say(text: object = "", err: bool = False, nl: bool = True) -> None:
    """Print *text* for people: every control character escaped but the line breaks."""
    click.echo(visible(text, keep="\n"), err=err, nl=nl)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Rows under headers, aligned; every cell shown with its control characters escaped
    (a newline in a cell included), so the columns are what a terminal shows."""
    rows = [[visible(c) for c in r] for r in rows]
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


def summary(a: Artifact) -> dict[str, Any]:
    return {"id": a.id, "user": a.user, "created": a.metadata["created"], "type": a.type,
            "tags": a.tags, "files": [f["path"] for f in a.metadata["files"]],
            "info": a.info, "based_on": a.based_on}


def echo_json(data: Any) -> None:
    click.echo(json_visible(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


def lake_of(ctx: click.Context) -> Lake:
    root = ctx.find_root()
    if "lake" not in root.obj:
        root.obj["lake"] = lake = Lake(Settings.load())
        root.call_on_close(lake.close)  # when the command ends, however it ends
    return root.obj["lake"]


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
