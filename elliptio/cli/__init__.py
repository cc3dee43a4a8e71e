"""The ``eio`` command.

Every command prints a human-readable result by default and JSON with ``--json``. User
mistakes and operational failures (:class:`~elliptio.errors.ElliptioError`) print one line
``eio: error: ...`` and exit with the error's code (2 usage/query/config, 3 not found,
4 immutable, 5 integrity, 6 store, 7 catalogue); ``--debug`` shows the traceback. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import io
import sys

import click

from ..errors import ElliptioError
from ..text import visible
from .artifacts import get_cmd, lineage, log_cmd, save, search, show
from .compare import diff, env
from .group import cli
from .reproduce import reproduce
from .upkeep import config, fsck, init, reindex, web

# registered in the order the single module defined them (click lists them sorted)
for _command in (save, search, show, get_cmd):
    cli.add_command(_command)
cli.add_command(get_cmd, name="download")
cli.add_command(log_cmd)
cli.add_command(log_cmd, name="log")
for _command in (lineage, reindex, fsck, init, web, config, env, diff):
    cli.add_command(_command)
cli.add_command(reproduce)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="eio", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        shown = io.StringIO()  # click's message quotes the arguments: shown escaped too
        exc.show(file=shown)
        click.echo(visible(shown.getvalue(), keep="\n"), err=True, nl=False)
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
        # one line, whatever the message quotes (a name, a key, a value from the store)
        click.echo(f"eio: error: {visible(msg)}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
