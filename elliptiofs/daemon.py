"""Into the background: fork, and tell the caller whether the mount came up.

The parent waits on a pipe until the child says ``OK`` (the mount is up: exit 0) or
sends its one-line error and exit code; the child starts a new session, leaves the
terminal and serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable

from elliptio.text import visible

from .start import StartError

log = logging.getLogger("elliptiofs")


def daemonise(serve_in_child: Callable[[Callable[[], None]], int]) -> int:
    """Fork; the child runs *serve_in_child* (given the ``ready`` to call once the mount
    is up; it sets up logging, mounts and serves), the parent waits until the mount is up
    (exit 0) or reports the child's one-line error and its exit code."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            answer = r.read().decode(errors="replace")
        if answer.startswith("OK"):
            return 0
        status_text, _, message = answer.partition(" ")
        if not status_text.isdigit():
            _, status = os.waitpid(pid, 0)
            print("elliptiofs: the daemon exited before mounting (see its log)",
                  file=sys.stderr)
            return 1
        print(f"elliptiofs: {visible(message.strip())}", file=sys.stderr)
        os.waitpid(pid, 0)
        return int(status_text)
    # the child: a new session, no terminal, the log file for messages
    os.close(rfd)
    os.setsid()
    os.chdir("/")
    code = 1
    try:

        def ready() -> None:
            os.write(wfd, b"OK\n")
            os.close(wfd)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)

        code = serve_in_child(ready)
    except StartError as exc:
        with contextlib.suppress(OSError):
            os.write(wfd, f"{exc.code} {exc}\n".encode())
        code = exc.code
    except BaseException:
        log.exception("the daemon failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)
