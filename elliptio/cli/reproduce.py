"""``eio reproduce``: an artifact's environment and code state rebuilt in a directory."""

from __future__ import annotations

import click

from .. import reproduce as repro
from ..errors import NotFound
from ..text import visible
from .output import lake_of, say


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("artifact_id", metavar="ID")
@click.argument("dest", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--repo", metavar="PATH", help="A local clone to take the commit from "
              "instead of the recorded remote.")
@click.option("--python", "python", metavar="PATH",
              help="The interpreter to make the venv with (default: the recorded Python "
                   "minor version, found on PATH or in pyenv).")
@click.option("--force", is_flag=True, help="Work in a DIR that is not empty; nothing "
              "there is replaced or deleted (a part whose target exists is left out).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--find-links", "find_links", multiple=True, metavar="URL|DIR",
              help="Passed to pip (repeatable).")
@click.option("--index-url", metavar="URL", help="Passed to pip.")
@click.option("--extra-index-url", "extra_index_urls", multiple=True, metavar="URL",
              help="Passed to pip (repeatable).")
@click.option("--no-index", is_flag=True, help="Passed to pip.")
@click.option("--pip", "pip_more", multiple=True, metavar="ARG",
              help="Any other pip install argument (repeatable), e.g. --pip=--only-binary=:all:")
@click.pass_context
def reproduce(ctx: click.Context, artifact_id: str, dest: str, repo: str | None,
              python: str | None, force: bool, dry_run: bool, find_links: tuple[str, ...],
              index_url: str | None, extra_index_urls: tuple[str, ...], no_index: bool,
              pip_more: tuple[str, ...]) -> int:
    """Rebuild in DIR what artifact ID was made with: DIR/requirements.txt from its pip
    freeze, DIR/.venv with its Python version and those requirements, DIR/src with its git
    commit and diff, DIR/untracked.txt; then print the recorded command line and working
    directory, to run by hand. Runs nothing of the artifact's own code.

    Exit 0 when every part was reproduced, 1 when some part could not be (each is named).
    """
    lake = lake_of(ctx)
    aid = lake.resolve_id(artifact_id)
    a = lake.get(aid)
    if a is None:
        raise NotFound(f"no artifact {aid}")
    pip_args = [f"--find-links={f}" for f in find_links]
    pip_args += [f"--index-url={index_url}"] if index_url else []
    pip_args += [f"--extra-index-url={u}" for u in extra_index_urls]
    pip_args += ["--no-index"] if no_index else []
    pip_args += list(pip_more)
    plan = repro.plan(a, dest, repo=repo, pip_args=pip_args, python=python, force=force)
    if dry_run:
        for line in plan.describe() + plan.footer():
            say(line)
        say("(dry run: nothing was changed)")
        return 0
    outcome = repro.execute(plan, say=lambda line: say(line, err=True))
    say(f"reproduced {a.id} into {visible(str(plan.dest))}"
        + ("" if outcome.complete else " -- INCOMPLETE"))
    for part, result in outcome.done:
        say(f"  done    {part}: {visible(result)}")
    for part, why in outcome.missing:
        say(f"  MISSING {part}: {visible(why)}")
    for line in plan.footer():
        say(line)
    return 0 if outcome.complete else 1
