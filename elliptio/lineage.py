"""The per-process record of artifacts used: what a process loaded becomes ``based_on`` of
what it saves next.

Every :func:`elliptio.load` (and every id passed as ``based_on=``) is recorded here, in
order, once. A save without an explicit ``based_on`` takes :func:`current`. The record is
per process (a forked child starts with its parent's record, as it should: it used what
the parent loaded).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_used: dict[str, None] = {}  # insertion-ordered set


def record(artifact_id: str) -> None:
    with _lock:
        _used.setdefault(artifact_id, None)


def current() -> list[str]:
    with _lock:
        return list(_used)


def reset() -> None:
    """Forget what this process used (tests, long-running services between jobs)."""
    with _lock:
        _used.clear()
