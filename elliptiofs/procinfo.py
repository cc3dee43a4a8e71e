"""What the daemon reads about the processes that call it: ``/proc`` and the passwd
database, in one place (the read log's scopes and the outbox's writers both use it).

Every function answers for a process that may already be gone: a missing or unreadable
``/proc/<pid>`` is ``None`` (or a stand-in), never an exception.
"""

from __future__ import annotations

import os
import pwd
import shlex
import time
from functools import lru_cache
from pathlib import Path

from elliptio.config import valid_user
from elliptio.errors import ConfigError
from elliptio.provenance import redact_argv

#: ``PF_EXITING`` of a task's flags (field 9 of /proc/<pid>/stat): it is in do_exit
PF_EXITING = 0x4
#: how long a process's start time is reused without reading /proc again (s): a scan of
#: many files opens one after the other from one session; a pid is not handed out again
#: within a second unless the pid space wraps around that fast
START_TTL = 1.0
#: longest command line kept (it goes into an artifact's provenance)
MAX_COMMAND = 1000

_starts: dict[int, tuple[float, str | None]] = {}


def boot_id() -> str:
    """The first 8 characters of this boot's id (``noboot`` where it cannot be read)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


BOOT = boot_id()


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (so field 3, the state,
    is ``[0]``), or None when the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2:].decode(errors="replace").split()


def read_start_time(pid: int) -> str | None:
    """The start time of *pid* in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def start_time(pid: int) -> str | None:
    """:func:`read_start_time`, remembered for :data:`START_TTL` seconds."""
    now = time.monotonic()
    hit = _starts.get(pid)
    if hit is not None and now - hit[0] < START_TTL:
        return hit[1]
    start = read_start_time(pid)
    if len(_starts) > 4096:
        _starts.clear()
    _starts[pid] = (now, start)
    return start


def sessions() -> set[int] | None:
    """The session ids of every process (field 6 of /proc/<pid>/stat); None when /proc
    cannot be listed."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    out = set()
    for pid in pids:
        fields = stat_fields(int(pid))
        if fields is not None and len(fields) > 3:
            out.add(int(fields[3]))
    return out


def killed_by(pid: int) -> int | None:
    """The signal killing *pid* if it is exiting because of one, else None.

    A close from a dying process arrives while it is in do_exit: PF_EXITING is set and
    its exit code (field 52 of /proc/<pid>/stat) already holds the signal number.
    """
    fields = stat_fields(pid)
    if fields is None or len(fields) < 50:
        return None
    flags, code = int(fields[6]), int(fields[49])
    if flags & PF_EXITING and code & 0x7F:
        return code & 0x7F
    return None


def command_line(pid: int) -> str:
    """The command line of *pid*, secret-looking values redacted (it goes into the
    artifact's provenance), at most :data:`MAX_COMMAND` characters."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return shlex.join(redact_argv(argv))[:MAX_COMMAND]


def split_command(line: str) -> list[str]:
    """A :func:`command_line` back as argv (one cut inside a quote splits on blanks)."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """The artifact user for *uid*: its login name, else ``uid<N>``."""
    try:
        return valid_user(pwd.getpwuid(uid).pw_name)
    except (KeyError, ConfigError):
        return f"uid{uid}"
