"""The one retry helper of the store layer.

Only store implementations retry, and only through :func:`retry`; callers never loop.
Every request of the S3 store goes through it (:func:`elliptio.store.s3.errors.call`,
with :func:`elliptio.store.s3.errors.is_transient` deciding what is worth repeating);
a request there includes reading its body, so a body cut short by a reset mid-transfer
is fetched again whole (``reads.get``, ``download._fetch_into``), and a stream
(``reads._Stream``, what a reader reads in order) is opened again where it broke: each
of its reads is one request. The local and
in-memory stores do not retry: a local filesystem's errors do not pass by themselves.

The places allowed a second attempt of their own, and why:

- ``elliptio/store/s3/reads.py``, ``read_range``: a ranged GET the fast path
  (``fastpath.py``) did not answer with the bytes asked for (``Fallback``) is
  repeated once through botocore, which goes through :func:`retry`. The fast path knows
  only the happy path; the repeat gives botocore's errors, retries and messages, and a
  range past the end its meaning (the bytes that exist).
- ``elliptio/store/s3/fastpath.py``, ``SignedGetter._get_range``: a request that fails on
  a kept-alive connection is sent once more on a new connection. A server may close an
  idle connection at any time, which says nothing about the request; a failure on the new
  connection is a ``Fallback``.
- ``elliptiofs/reader.py``, ``Reader._read_parts``: a part the scan read-ahead fetched
  (``prefetch``) that failed is asked for again, once, by the read that wants it
  (``_fetch_exact``, with the store's retries). The prefetch was speculative, maybe long
  before the read, and its failure belongs to a moment nobody waited on.
- ``elliptiofs/outbox/committer.py``, ``Committer._failed`` (the delay) and
  ``Committer.ready`` (called by the scheduler ``Committer.run``): a commit that failed
  with a store or catalogue error (after these retries) stays ``pending`` and the whole
  save is tried again after ``ELLIPTIO_OUTBOX_RETRY`` seconds, the delay doubling up to
  ``RETRY_MAX`` — or at once when its user triggers it (``Committer.trigger``) or changes
  the entry. Its bytes are staged on local disk and its writer is gone: nobody else will
  try again, and minutes apart, not a request's backoff.
- ``elliptio/indexer/events.py``, ``lambda_handler``: a read or catalogue write that still fails
  is raised after the rest of the batch is indexed, so that Lambda invokes the handler
  again (upserts are idempotent). The second attempt is Lambda's, not a loop here.
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
