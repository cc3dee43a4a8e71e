"""The ``eio`` command group: options every command shares."""

from __future__ import annotations

import logging

import click

from ..text import visible
from ..version import __version__


class _VisibleFormatter(logging.Formatter):
    """Log lines on the terminal with their control characters shown, not obeyed (a
    message may quote a key or a value from the store); a traceback keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep="\n")


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
    handler = logging.StreamHandler()
    handler.setFormatter(_VisibleFormatter("eio: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
