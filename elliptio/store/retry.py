"""The one retry helper of the store layer.

Only store implementations retry, and only through :func:`retry`; callers never loop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry(
    fn: Callable[[], T],
    *,
    is_temp_failure: Callable[[BaseException], bool],
    what: str,
    attempts: int = 6,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """Call *fn* until it succeeds, retrying failures that *is_temp_failure* accepts.

    Backoff is exponential with full jitter. The last exception is re-raised unchanged,
    so the caller translates it once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_temp_failure(exc):
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.debug("%s: transient failure (%s), retry %d in %.2fs", what, exc, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
