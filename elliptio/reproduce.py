"""``eio reproduce``: rebuild an artifact's environment and code state in a directory.

:func:`plan` reads the artifact's provenance and decides every step; :func:`execute` runs
exactly those steps, in order, and nothing else (``--dry-run`` prints the plan and stops).
A step that fails or cannot be done is reported with its reason and the steps that do not
depend on it still run, so a partial reproduce says which part is missing. Only git,
``python -m venv`` and pip run; nothing of the user's own code does (no ``setup.py`` of
theirs is run unless a requirement is a local source tree, which the plan names).

The directory gets ``requirements.txt`` (entries that cannot be installed here are left in
as comments and listed), ``.venv`` (made with the recorded Python minor version when an
interpreter for it is found, see :func:`find_python`), ``src`` (the recorded commit and
diff), ``untracked.txt`` (untracked files at save time that the artifact does not hold) and
``pip-install.log``. An existing target is never replaced or deleted.

The pip-freeze reading here (:func:`requirement_lines`) is private to this module for now;
it accepts the plain ``name==version`` lines of older artifacts (``  # editable`` marks an
editable install whose source was not recorded) and the ``name @ url`` / ``-e url`` lines
that keep where a path or VCS install came from.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .artifact import Artifact
from .errors import UsageError
from .reproduce_run import StepFailed, apply_diff, clone_at, pip_install

__all__ = ["Plan", "Step", "StepFailed", "plan", "execute", "find_python",
           "requirement_lines"]

VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
#: a log larger than this is not read (capture bounds a diff to 1 MiB; a freeze is small)
MAX_LOG_BYTES = 64 << 20


@dataclass
class Step:
    """One part of a reproduce: what it does (the plan's line), and either why it cannot
    be done (``blocked``) or the function that does it, returning a one-line result."""

    part: str
    doing: str
    run: Callable[[Callable[[str], None]], str] | None = None  # called with execute's say
    blocked: str | None = None
    needs: str | None = None  # the part whose failure makes this one impossible
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    artifact_id: str
    dest: Path
    steps: list[Step]
    command: str | None  # the recorded command line, shell-quoted
    cwd: str | None  # the recorded working directory
    cwd_here: str | None  # the same directory inside dest/src, when it lies in the repo

    def describe(self) -> list[str]:
        lines = [f"reproduce {self.artifact_id} into {self.dest}:"]
        for s in self.steps:
            lines.append(f"  {s.part}: {s.doing}" if not s.blocked
                         else f"  {s.part}: NOT DONE: {s.blocked}")
            lines += [f"    {n}" for n in s.notes]
        return lines

    def footer(self) -> list[str]:
        lines = [f"then, by hand: . {self.dest / '.venv/bin/activate'}"]
        if self.cwd_here:
            lines.append(f"  cd {self.cwd_here}")
        lines.append(f"recorded command line: {self.command or '(not recorded)'}")
        lines.append(f"recorded working directory: {self.cwd or '(not recorded)'}")
        return lines


@dataclass
class Outcome:
    done: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (part, why)

    @property
    def complete(self) -> bool:
        return not self.missing


# -- requirements ------------------------------------------------------------------------
def _local_path(url: str) -> str | None:
    """The filesystem path of a ``file:`` URL (a VCS one too), else None."""
    vcs = url.startswith(VCS_PREFIXES)
    if vcs:
        url = url.split("+", 1)[1]
    if not url.startswith("file:"):
        return None
    path = unquote(urlparse(url).path)
    if vcs and "@" in path.rsplit("/", 1)[-1]:  # git+file:///repo@<commit>
        path = path.rsplit("@", 1)[0]
    return path or None


def requirement_lines(freeze: str) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(lines for requirements.txt, [(entry, why it cannot be installed here)], the kept
    entries that install from a local path: what is there now, not what was there)."""
    keep: list[str] = []
    excluded: list[tuple[str, str]] = []
    local: list[str] = []
    for raw in freeze.splitlines():
        entry, _, comment = raw.partition(" #")
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith(("-e ", "--editable ")):
            target: str | None = entry.split(None, 1)[1].strip()
        elif " @ " in entry:
            target = entry.split(" @ ", 1)[1].strip()
        elif "editable" in comment:
            excluded.append((entry, "installed editable from a local source tree that was "
                                    "not recorded: install it from its source by hand"))
            continue
        else:
            target = None  # name==version, from an index or --find-links
        if target is not None and "://***@" in target:
            # a token redacted at save time: without it, a public host may still serve it
            entry = entry.replace("://***@", "://")
            target = target.replace("://***@", "://")
        if target is not None:
            path = (_local_path(target) if "://" in target or target.startswith(VCS_PREFIXES)
                    else target)
            if path is not None:
                if not (os.path.isabs(path) and os.path.exists(path)):
                    pin = re.search(r"([^\s=]+==\S+)\s*$", comment)
                    excluded.append((entry, f"installed from {path}, which is not on "
                                            "this machine" + (f"; {pin.group(1)} may be "
                                                              "on an index" if pin else "")))
                    continue
                local.append(entry)
        keep.append(entry)
    return keep, excluded, local


# -- interpreters ------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)  # a pyenv shim takes ~0.4 s to start: ask each one once
def _version_of(python: str) -> str | None:
    try:
        res = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % "
                              "sys.version_info[:3])"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def find_python(minor: str) -> str | None:
    """An interpreter of Python *minor* (``"3.11"``) that really runs, searched as
    scripts/python.sh does: ``pythonX.Y`` on PATH (a pyenv shim of a version that is not
    active does not run, so it does not count), else pyenv's own copies of it."""
    found = shutil.which(f"python{minor}")
    if found and (_version_of(found) or "").startswith(minor + "."):
        return found
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
        for c in sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}"),
                        reverse=True) if root else []:
            if (_version_of(c) or "").startswith(minor + "."):
                return c
    return None


def _choose_python(recorded: str | None, given: str | None) -> tuple[str, list[str]]:
    if given:
        have = _version_of(given)
        if have is None:
            raise UsageError(f"--python {given}: does not run")
        notes = [] if recorded and have.startswith(_minor(recorded) + ".") else [
            f"the artifact was saved with Python {recorded or '(not recorded)'}; "
            f"--python {given} is {have}"]
        return given, notes
    if not recorded:
        return sys.executable, [f"no Python version recorded: using {sys.executable}"]
    found = find_python(_minor(recorded))
    if found:
        return found, [f"Python {recorded} recorded: using {found} ({_version_of(found)})"]
    here = ".".join(map(str, sys.version_info[:3]))
    return sys.executable, [f"Python {_minor(recorded)} (recorded {recorded}) is not on "
                            f"this machine (PATH, pyenv): using {sys.executable} ({here})"]


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# -- the plan ----------------------------------------------------------------------------
def _log_text(a: Artifact, name: str) -> str | None:
    if name not in a.logs:
        return None
    log = a.logs[name]
    if log.size > MAX_LOG_BYTES:
        raise UsageError(f"log {name} of {a.id} is {log.size} bytes, more than reproduce "
                         f"reads ({MAX_LOG_BYTES})")
    return log.read_text()


def _clean_remote(url: str | None) -> str | None:
    # redaction leaves "https://***@host/..."; without the credentials it may still clone
    return re.sub(r"^(\w[\w+.-]*://)\*\*\*@", r"\1", url) if url else url


def _command(prov: dict[str, Any]) -> str | None:
    argv = prov.get("argv")
    if not argv:
        return None
    argv = [str(x) for x in argv]
    if argv[0].endswith(".py") or argv[0] in ("-c", "-m"):
        return "python " + shlex.join(argv)
    return shlex.join(argv)


def plan(a: Artifact, dest: str | os.PathLike[str], *, repo: str | None = None,
         pip_args: tuple[str, ...] | list[str] = (), python: str | None = None,
         force: bool = False) -> Plan:
    """Every step of reproducing *a* into *dest*, decided before anything is written.
    ``UsageError`` when *dest* holds anything and *force* is not given."""
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UsageError(f"{dest} is not empty: choose an empty directory, or --force to "
                         "add what is missing (nothing there is replaced or deleted)")
    prov = a.provenance
    steps: list[Step] = []

    def existing(name: str) -> str | None:
        p = dest / name
        return f"{p} exists: kept as it is" if p.exists() or p.is_symlink() else None

    # requirements.txt
    freeze = _log_text(a, "pip_freeze")
    pf = prov.get("pip_freeze") or {}
    if freeze is None:
        why = pf.get("reason") or "no pip freeze log"
        steps.append(Step("requirements", "write requirements.txt",
                          blocked=f"the artifact was saved without pip freeze ({why})"))
        keep: list[str] = []
    else:
        keep, excluded, local = requirement_lines(freeze)
        text = "".join(f"{line}\n" for line in keep) + "".join(
            f"# not reproducible here: {e}  ({why})\n" for e, why in excluded)
        req = dest / "requirements.txt"

        def write_requirements(say: Callable[[str], None]) -> str:
            req.write_text(text)
            return f"{req}: {len(keep)} requirement(s)"
        steps.append(Step("requirements", f"write {req} ({len(keep)} requirement(s))",
                          write_requirements, existing("requirements.txt"),
                          notes=[f"not reproducible: {e}: {why}" for e, why in excluded]
                          + [f"from a local path (as it is now, not as it was): {e}"
                             for e in local]))
    # .venv
    recorded = (prov.get("python") or {}).get("version")
    interp, py_notes = _choose_python(recorded, python)
    venv = dest / ".venv"

    def make_venv(say: Callable[[str], None]) -> str:
        _run_one([interp, "-m", "venv", str(venv)], "python -m venv", timeout=600)
        return f"{venv}: Python {_version_of(str(venv / 'bin/python'))}"
    steps.append(Step("venv", f"create {venv} with {interp} -m venv", make_venv,
                      existing(".venv"), notes=py_notes))
    # pip install
    install_blocked = ("no requirements to install" if not keep
                       else "requirements.txt is not written here" if steps[0].blocked
                       else "the venv is not made here" if steps[1].blocked else None)
    steps.append(Step(
        "install", "pip install -r requirements.txt" + (f" {shlex.join(pip_args)}"
                                                         if pip_args else ""),
        lambda say: pip_install(venv / "bin/python", dest / "requirements.txt",
                                list(pip_args), dest / "pip-install.log", say),
        install_blocked, needs="venv"))
    # src
    git = prov.get("git") or {}
    commit = git.get("commit")
    source = repo or _clean_remote(git.get("remote_url"))
    src = dest / "src"
    src_blocked = existing("src")
    if not git.get("present"):
        src_blocked = f"the artifact was saved without git ({git.get('reason', 'unknown')})"
    elif not commit:
        src_blocked = "no commit was recorded (a repository without commits)"
    elif not source:
        src_blocked = "no remote was recorded: pass --repo PATH (a clone that has the commit)"
    steps.append(Step("src", f"clone {source} into {src}, check out {commit}",
                      lambda say: clone_at(str(source), str(commit), src), src_blocked))
    diff = _log_text(a, "git_diff")
    if git.get("present") and not src_blocked:
        if diff:
            diff_blocked = ("the diff was cut at save time (too large): not applied"
                            if git.get("diff_cut") else None)
            steps.append(Step("diff", f"apply the recorded diff ({len(diff.splitlines())} "
                                      "lines) with git apply --reject",
                              lambda say: apply_diff(src, diff), diff_blocked,
                              needs="src"))
        elif git.get("dirty"):
            steps.append(Step("diff", "apply the recorded diff",
                              blocked="the working tree was dirty but no diff was recorded"))
    # untracked
    if git.get("present"):
        names = (_log_text(a, "git_untracked") or "").splitlines()
        held = set(a.files)
        missing = [n for n in names if n and not any(
            n == h or n.endswith("/" + h) for h in held)]
        out = dest / "untracked.txt"

        def write_untracked(say: Callable[[str], None]) -> str:
            out.write_text("".join(f"{n}\n" for n in missing))
            return f"{out}: {len(missing)} file(s) not in the artifact"
        steps.append(Step("untracked", f"list in {out} the {len(missing)} untracked "
                          "file(s) present at save time and not in the artifact",
                          write_untracked, existing("untracked.txt"),
                          notes=[f"untracked at save time: {n}" for n in missing[:10]]
                          + ([f"... and {len(missing) - 10} more"] if len(missing) > 10
                             else [])))
    cwd, root = prov.get("cwd"), git.get("root")
    cwd_here = None
    if cwd and root and (cwd == root or cwd.startswith(root.rstrip("/") + "/")):
        cwd_here = str(src / os.path.relpath(cwd, root)) if cwd != root else str(src)
    return Plan(a.id, dest, steps, _command(prov), cwd, cwd_here)


def _run_one(cmd: list[str], what: str, timeout: float) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StepFailed(f"{what}: {exc}") from None
    if res.returncode:
        last = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
        raise StepFailed(f"{what} failed: {last[-1] if last else f'exit {res.returncode}'}")
    return res.stdout


def execute(p: Plan, say: Callable[[str], None] = print) -> Outcome:
    """Run the plan's steps in order; a failed step is reported and the steps that do not
    need it run all the same."""
    p.dest.mkdir(parents=True, exist_ok=True)
    out = Outcome()
    failed: set[str] = set()
    for s in p.steps:
        if s.blocked:
            out.missing.append((s.part, s.blocked))
            failed.add(s.part)
            continue
        if s.needs in failed:
            out.missing.append((s.part, f"not done: {s.needs} failed"))
            failed.add(s.part)
            continue
        say(f"eio reproduce: {s.doing} ...")
        for n in s.notes:
            say(f"  {n}")
        try:
            assert s.run is not None
            out.done.append((s.part, s.run(say)))
        except StepFailed as exc:
            out.missing.append((s.part, str(exc)))
            failed.add(s.part)
            if exc.partial:  # a diff partly applied: the checkout is kept, and counts
                out.done.append((s.part, exc.partial))
    return out
