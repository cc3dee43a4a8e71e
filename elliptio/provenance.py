"""Capture of what is needed to reproduce a save: packages, git state, interpreter, host,
command line, environment (by allow-list), with secrets redacted.

:func:`capture` never raises: anything that cannot be read is recorded as absent with the
reason. Every captured text passes through :func:`elliptio.redact.redact` (re-exported
here with :func:`~elliptio.redact.redact_argv`) before it is stored: argv, environment
values, every git summary field, the diff, the untracked names and pip freeze.
What pip freeze and conda record is :mod:`elliptio.environment`'s; the git diff is
``git diff HEAD``, staged and unstaged changes of tracked files together.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .environment import conda_env, pip_freeze
from .redact import redact, redact_argv

#: bound of each git text log (diff, untracked list); longer ones are cut with a marker
GIT_LOG_LIMIT = 1 << 20
GIT_TIMEOUT = 10.0
CUT_MARKER = "\n[elliptio: cut at {limit} bytes of {total}]\n"

ENV_ALLOW = {
    "PATH", "SHELL", "LANG", "LANGUAGE", "TZ", "HOSTNAME", "VIRTUAL_ENV", "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONOPTIMIZE",
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
    "SLURM_CLUSTER_NAME", "ELLIPTIO_STORE", "ELLIPTIO_CATALOGUE", "ELLIPTIO_USER",
    "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "CI",
    "GITHUB_SHA", "GITHUB_REF", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "CI_COMMIT_SHA",
    "CI_PIPELINE_ID", "JOB_ID",
}
ENV_ALLOW_PREFIXES = ("LC_",)

def capture_env() -> dict[str, str]:
    return {
        k: redact(v)
        for k, v in sorted(os.environ.items())
        if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)
    }


_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}


def _git(args: list[str], cwd: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT,
                         check=True, env={**os.environ, **_GIT_ENV})
    return res.stdout.decode("utf-8", "replace")


def _git_head(args: list[str], cwd: str) -> tuple[str, bool]:
    """(output, whether there was more): git's output read only up to the end of the
    line where :data:`GIT_LOG_LIMIT` falls, then git is stopped. What is cut is never
    stored, and reading 10 MB of diff through a pipe costs more than the rest of a save's
    capture."""
    proc = subprocess.Popen(["git", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, **_GIT_ENV})
    timer = threading.Timer(GIT_TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        chunks: list[bytes] = []
        size, more = 0, False
        while chunk := proc.stdout.read1(1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > GIT_LOG_LIMIT and b"\n" in b"".join(chunks)[GIT_LOG_LIMIT:]:
                more = True
                proc.kill()
                break
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    if code != 0 and not more:
        raise subprocess.CalledProcessError(code, ["git", *args])
    return b"".join(chunks).decode("utf-8", "replace"), more


def _bounded(text: str, more: bool = False) -> tuple[str, bool]:
    """*text* redacted and cut at :data:`GIT_LOG_LIMIT` bytes with the marker (*more*:
    *text* is already the head of a longer output).

    Only the part kept is redacted (a 10 MB diff would cost seconds): the text up to the
    end of the line where the limit falls. Every rule of :func:`redact` but the key
    block works within a line, so the kept lines are redacted as in the whole text; a
    key block cut there loses its END and is hidden as a block without one."""
    data = text.encode()
    if len(data) <= GIT_LOG_LIMIT and not more:
        return redact(text), False
    eol = data.find(b"\n", GIT_LOG_LIMIT)
    window = redact(data[: len(data) if eol < 0 else eol + 1].decode("utf-8", "ignore"))
    cut = window.encode()[:GIT_LOG_LIMIT].decode("utf-8", "ignore")
    total = f"more than {len(data)}" if more else len(data)
    return cut + CUT_MARKER.format(limit=GIT_LOG_LIMIT, total=total), True


def capture_git(start: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Summary and logs (``git_diff.patch``, ``git_untracked.txt``) of the repo at *start*."""
    try:
        root = _git(["rev-parse", "--show-toplevel"], start).strip()
    except FileNotFoundError:
        return {"present": False, "reason": "git is not installed"}, {}
    except subprocess.CalledProcessError:
        return {"present": False, "reason": "not inside a git repository"}, {}
    except Exception as exc:
        return {"present": False, "reason": redact(f"git failed: {exc}")}, {}
    summary: dict[str, Any] = {"present": True, "root": redact(root)}
    logs: dict[str, str] = {}
    for key, args in (("commit", ["rev-parse", "HEAD"]),
                      ("branch", ["rev-parse", "--abbrev-ref", "HEAD"]),
                      ("remote_url", ["remote", "get-url", "origin"])):
        try:
            summary[key] = redact(_git(args, root).strip()) or None
        except Exception:
            summary[key] = None
    try:
        status = _git(["status", "--porcelain", "--untracked-files=no"], root)
        summary["dirty"] = bool(status.strip())
    except Exception:
        summary["dirty"] = None
    more = False
    try:  # HEAD against the working tree: staged and unstaged changes together
        diff, more = _git_head(["diff", "HEAD", "--no-color", "--no-ext-diff"], root)
    except Exception:
        try:  # a repository without commits yet
            diff, more = _git_head(["diff", "--cached", "--no-color", "--no-ext-diff"], root)
        except Exception as exc:
            diff = f"[elliptio: git diff failed: {exc}]\n"
    diff, cut = _bounded(diff, more)
    summary["diff_cut"] = cut
    if diff:
        logs["git_diff"] = diff
    try:
        untracked = _git(["ls-files", "--others", "--exclude-standard"], root)
    except Exception:
        untracked = ""
    summary["untracked_files"] = len(untracked.splitlines())
    untracked, cut = _bounded(untracked)
    summary["untracked_cut"] = cut
    if untracked:
        logs["git_untracked"] = untracked
    return summary, logs


LOG_FILE_NAMES = {"pip_freeze": "pip_freeze.txt", "git_diff": "git_diff.patch",
                  "git_untracked": "git_untracked.txt"}


def _process_start() -> str | None:
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        started = btime + ticks / os.sysconf("SC_CLK_TCK")
        return datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
    except Exception:
        return None


WRITER_UNKNOWN = ("the files were written by another program than the one that saved "
                  "them: only its command line and user are known")


def capture(user: str, version: str, *, writer: Mapping[str, Any] | None = None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """(summary for metadata, {log name: text}). Never raises.

    *writer* describes the program the files come from when it is not this process:
    ``argv``, ``uid`` and ``login`` of that program, and ``via``, what this process is
    (the writer has usually exited by the time its files are saved). Then the summary
    describes the writer, not this process: its command line and user; its packages, git
    state, environment and Python are not known and said so (no ``pip_freeze`` or git
    logs). This process is named under ``via``."""
    if writer is not None:
        return _capture_writer(user, version, writer), {}
    summary: dict[str, Any] = {}
    logs: dict[str, str] = {}
    try:
        logs["pip_freeze"] = pip_freeze()
        summary["pip_freeze"] = {"present": True, "packages": logs["pip_freeze"].count("\n")}
    except Exception as exc:
        summary["pip_freeze"] = {"present": False, "reason": redact(str(exc))}
    try:
        summary["conda"] = conda_env()
    except Exception as exc:
        summary["conda"] = {"present": False, "reason": redact(str(exc))}
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    try:
        gsum, glogs = capture_git(cwd or "/")
        # A script run from outside its repository (python ~/src/proj/train.py): the
        # script's own repository is the one that matters. Console-script launchers are
        # not user code, so only a .py file counts.
        # Installed modules run with -m (pytest, ...) are not user code either.
        if not gsum.get("present") and sys.argv and sys.argv[0].endswith(".py"):
            script_dir = os.path.dirname(os.path.abspath(sys.argv[0]))
            installed = tuple(os.path.realpath(p) + os.sep for p in
                              {sys.prefix, sys.base_prefix, sys.exec_prefix})
            if (script_dir != cwd and os.path.isdir(script_dir)
                    and not (os.path.realpath(script_dir) + os.sep).startswith(installed)):
                s2, l2 = capture_git(script_dir)
                if s2.get("present"):
                    gsum, glogs = s2, l2
        summary["git"] = gsum
        logs.update(glogs)
    except Exception as exc:
        summary["git"] = {"present": False, "reason": redact(str(exc))}
    try:
        login = getpass.getuser()
    except Exception:
        login = None
    summary.update(
        python={"version": platform.python_version(), "implementation":
                platform.python_implementation(), "executable": sys.executable},
        platform=_platform(),
        host=socket.gethostname(),
        user=user,
        login=login,
        uid=os.getuid(),
        pid=os.getpid(),
        argv=redact_argv(list(sys.argv)),
        cwd=redact(cwd) if cwd else cwd,
        process_started=_process_start(),
        elliptio_version=version,
        env=capture_env(),
    )
    return summary, logs


def _platform() -> dict[str, str]:
    return {"system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "description": platform.platform()}


def _capture_writer(user: str, version: str, writer: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pip_freeze": {"present": False, "reason": WRITER_UNKNOWN},
        "git": {"present": False, "reason": WRITER_UNKNOWN},
        "platform": _platform(),
        "host": socket.gethostname(),
        "user": user,
        "login": writer.get("login"),
        "uid": writer.get("uid"),
        "argv": redact_argv([str(a) for a in writer.get("argv") or []]),
        "elliptio_version": version,
        "via": {"program": writer.get("via"), "pid": os.getpid(),
                "argv": redact_argv(list(sys.argv)), "process_started": _process_start(),
                "python": platform.python_version()},
    }
