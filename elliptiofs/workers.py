"""The daemon's worker threads: a fixed pool per kind of blocking call, answering on the
trio thread.

pyfuse3 runs every handler on one trio thread, which must never wait for the network or
the disk. Calls made per request go to a :class:`Workers` pool: store reads (the
reader's, :mod:`.reader`; also ``metadata.yaml``) and catalogue calls that are not inline
(searches, a network catalogue, scan planning; :mod:`.ops`, :mod:`.scan`).
``trio.to_thread`` stays for the rare one-off calls where its cost does not matter
(startup checks, an outbox commit and its fsyncs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import trio

log = logging.getLogger(__name__)

Done = Callable[[Any, "BaseException | None"], None]


class Workers:
    """A fixed pool of worker threads for blocking calls, answering on the trio thread.

    ``trio.to_thread.run_sync`` costs the trio thread a task, a capacity limiter and a
    hand-off to a cached thread per call; for the small GETs of a scan that was ~0.1 ms of
    the trio thread's time and as much again of the worker's, per file (measured: a scan
    of 1,000 small files 15-20 % faster without it). Here a call is put on the pool's
    queue, and its outcome comes back as one callback through the trio token. At most
    *workers* calls run at once; the rest wait in order.

    Create and use it on the trio thread. A caller that is cancelled stops waiting; the
    call itself still finishes in its thread and its outcome is dropped."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._token = trio.lowlevel.current_trio_token()
        self._closed = False

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
        """Run ``fn(*args)`` in a worker; then ``done(result, None)`` or ``done(None,
        exception)`` on the trio thread. Once closed, the call is dropped (as queued calls
        are): a late answer arriving while the daemon stops (a scan's plan prefetching)
        has nothing left to do.

        *done* runs among trio's own callbacks, where an exception would end the whole
        daemon (and the mount): one it raises is logged as the bug it is instead."""
        if self._closed:
            return
        token = self._token

        def work() -> None:
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                result, error = None, exc
            try:
                token.run_sync_soon(_answer, done, result, error)
            except trio.RunFinishedError:
                pass  # the daemon is gone: nobody waits for it

        self._pool.submit(work)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker: its result, or its exception raised here
        (:class:`trio.ClosedResourceError` once closed)."""
        if self._closed:
            raise trio.ClosedResourceError("the worker threads are stopped")
        finished = trio.Event()
        outcome: list[Any] = []

        def done(result: Any, error: BaseException | None) -> None:
            outcome[:] = [result, error]
            finished.set()

        self.submit(fn, args, done)
        await finished.wait()
        result, error = outcome
        if error is not None:
            raise error
        return result

    def close(self) -> None:
        """Stop taking calls. Queued calls are dropped without an answer, so close it only
        once nothing waits on it (after the nursery whose tasks call it); the threads end
        once the calls under way return."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _answer(done: Done, result: Any, error: BaseException | None) -> None:
    try:
        done(result, error)
    except Exception:
        log.exception("answering a worker's call failed (a bug; the call is dropped)")
