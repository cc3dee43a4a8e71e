"""The transfer threads of an S3 store: how many run at once, in what chunks bytes move,
and :func:`run_bounded`, how a multipart upload or a parallel download keeps a bounded
number of requests in flight and takes their results in order."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: concurrent part uploads / range downloads per store
TRANSFER_THREADS = 10
#: bytes read from a response body, or hashed from a file, at a time (×4 for hashing)
CHUNK = 1 << 20


def make_pool() -> ThreadPoolExecutor:
    """A store's transfer threads (made on first use)."""
    return ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="eio-s3")


def run_bounded(pool: ThreadPoolExecutor, jobs: list[Callable[[], T]],
                consume: Callable[[T], None] | None = None,
                window: int = 2 * TRANSFER_THREADS) -> list[T]:
    """Run *jobs* on *pool*, at most *window* in flight, results in order.

    With *consume*, each result is handed over in order as soon as it and all before it are
    done (and not kept). The first failure cancels what has not started and is re-raised.
    """
    pending: list[Future[T]] = []
    results: list[T] = []
    it = iter(jobs)
    try:
        for job in it:
            pending.append(pool.submit(job))
            if len(pending) >= window:
                _take(pending.pop(0), results, consume)
        while pending:
            _take(pending.pop(0), results, consume)
    except BaseException:
        for f in pending:
            f.cancel()
        for f in pending:
            if not f.cancelled():
                try:
                    f.result()
                except BaseException:  # noqa: S110 - the first failure is what we report
                    pass
        raise
    return results


def _take(fut: Future[T], results: list[T], consume: Callable[[T], None] | None) -> None:
    value = fut.result()
    if consume is None:
        results.append(value)
    else:
        consume(value)
