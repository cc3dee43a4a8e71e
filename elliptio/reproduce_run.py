"""The subprocess steps of ``eio reproduce`` (:mod:`elliptio.reproduce`): git clone and
checkout, ``git apply --reject``, pip install. Each returns a one-line result or raises
:class:`StepFailed` with one line that says what failed; none deletes anything."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_OPTIONAL_LOCKS": "0"}
#: pip output that means the index could not be reached at all
NO_NETWORK = ("NewConnectionError", "Failed to establish a new connection",
              "Temporary failure in name resolution", "Network is unreachable",
              "No route to host", "ProxyError")
#: at most this many requirements are dropped one by one before the install gives up
MAX_DROPPED = 20


class StepFailed(Exception):
    """A step of a reproduce did not complete; *partial* says what it did all the same."""

    def __init__(self, message: str, partial: str | None = None) -> None:
        super().__init__(message)
        self.partial = partial


def _git(args: list[str], cwd: Path | None = None, stdin: str | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **GIT_ENV})
    except FileNotFoundError:
        raise StepFailed("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"git {args[0]} took longer than {timeout:.0f} s") from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("fatal:", "error:", "ERROR:"))]
    return (errors or lines or ["(no message)"])[-1]


def clone_at(source: str, commit: str, src: Path) -> str:
    """Clone *source* into *src* and check out *commit* detached. A clone without the
    commit is kept (it is where the user would fetch it into)."""
    res = _git(["clone", "--quiet", "--no-checkout", source, str(src)])
    if res.returncode:
        raise StepFailed(f"git clone {source} failed: {_last_line(res.stderr)}")
    res = _git(["checkout", "--quiet", "--detach", commit], cwd=src)
    if res.returncode:
        # not on any branch of the clone: servers that allow it give it by its id
        _git(["fetch", "--quiet", "origin", commit], cwd=src)
        res = _git(["checkout", "--quiet", "--detach", commit], cwd=src)
    if res.returncode:
        raise StepFailed(f"commit {commit} is not in {source} (was it pushed?); the clone "
                         f"is kept in {src}: {_last_line(res.stderr)}")
    return f"{src}: commit {commit[:12]} of {source}"


def apply_diff(src: Path, diff: str) -> str:
    """Apply the recorded diff in *src* with ``git apply --reject``: the hunks that apply
    are applied, the others are written beside their files as ``.rej``."""
    res = _git(["apply", "--reject", "--whitespace=nowarn", "-"], cwd=src, stdin=diff)
    if res.returncode == 0:
        return f"{src}: recorded diff applied"
    rejected = re.findall(r"^Applying patch (.+?) with (\d+) reject", res.stderr, re.M)
    missing = re.findall(r"^error: (.+?): (?:No such file or directory|does not exist in "
                         r"index|already exists in working directory)", res.stderr, re.M)
    if not rejected and not missing:
        raise StepFailed(f"git apply failed, nothing applied: {_last_line(res.stderr)}")
    parts = [f"{path} ({n} hunk(s), see {path}.rej)" for path, n in rejected]
    parts += [f"{path} (its file is not as the diff expects)" for path in missing]
    raise StepFailed("the recorded diff does not apply in full: rejected " + ", ".join(parts)
                     + f"; the checkout is kept in {src}",
                     partial=f"{src}: the hunks that apply are applied")


def _failed_requirement(output: str) -> str | None:
    m = re.search(r"No matching distribution found for (\S+)", output)
    return m.group(1) if m else None


def _name(requirement: str) -> str:
    return re.split(r"[\s=<>!~;@\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pip_install(python: Path, requirements: Path, pip_args: list[str], log: Path,
                say: Callable[[str], None]) -> str:
    """``pip install -r`` into the venv of *python*, pip's output appended to *log*. A
    requirement pip finds no distribution for is dropped and the rest installed (up to
    :data:`MAX_DROPPED` of them); no network stops at once with pip's own error line."""
    lines = [ln for ln in requirements.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    dropped: list[str] = []
    while True:
        todo = requirements if not dropped else log.with_name("requirements-installable.txt")
        if dropped:
            todo.write_text("".join(f"{ln}\n" for ln in lines))
        say(f"  pip: installing {len(lines)} requirement(s) (output in {log})")
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--progress-bar", "off", "-r", str(todo), *pip_args]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            raise StepFailed(f"pip did not start: {exc}") from None
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
        if res.returncode == 0:
            break
        output = res.stdout + res.stderr
        if any(s in output for s in NO_NETWORK):
            raise StepFailed(f"pip could not reach the package index (no network?): "
                             f"{_last_line(res.stderr)}")
        bad = _failed_requirement(output)
        match = [ln for ln in lines if bad and _name(ln) == _name(bad)]
        if not match or len(dropped) >= MAX_DROPPED:
            raise StepFailed(f"pip install failed, nothing installed: "
                             f"{_last_line(res.stderr)}")
        say(f"  pip: {match[0]} cannot be installed; installing the rest")
        dropped += match
        lines = [ln for ln in lines if ln not in match]
        if not lines:
            break
    if dropped:
        raise StepFailed(f"not installed (pip found no distribution): {', '.join(dropped)}; "
                         f"see {log}", partial=f"{len(lines)} requirement(s) installed")
    return f"{len(lines)} requirement(s) installed"
