"""metadata.yaml -> catalogue: rebuild (reindex), compare (fsck), and the S3-event handler.

The store is the source of truth; these functions bring a catalogue in line with it. Every
write here is an idempotent upsert of metadata that never changes once written (the
metadata.yaml of an artifact is its commit point and is locked), so any of them may be
interrupted and run again.

- :func:`reindex` — ``eio reindex``: list the store's ``metadata.yaml`` keys, read the
  ones the catalogue lacks (concurrently: reads are latency-bound on S3) and upsert them in
  batches. An interrupted run resumes by running it again: what is catalogued is skipped
  without being read (``full=True`` re-reads and re-upserts everything, e.g. after an
  upgrade changed what is indexed). ``since`` limits it to recent days.
- :func:`migrate` — the move from the embedded default to a team catalogue: reindex the
  store into another catalogue URL (``eio reindex --to mongodb://…``).
- :func:`copy_catalogue` — export/import between two catalogues without reading the store.
- :func:`fsck` — ``eio fsck``: artifacts missing from the catalogue, catalogue rows
  without metadata, orphans of interrupted saves (optionally removed), malformed metadata,
  and files whose size (or, with ``verify``, sha256) does not match.
- :func:`lambda_handler` — AWS Lambda entry point for S3 ``ObjectCreated`` notifications
  on ``.eio/metadata.yaml`` (see docs/indexer.md).

They live in :mod:`.rebuild` (reindex, migrate, copy_catalogue), :mod:`.compare` (fsck,
with its orphans in :mod:`.orphans`: removed only when certainly abandoned) and
:mod:`.events` (the Lambda handler), over :mod:`.reading` (the store's metadata keys,
read and checked).
"""

from .compare import FsckReport, fsck
from .events import lambda_handler, s3_records, store_key_of
from .reading import (
    BATCH,
    MAX_DAY_LISTINGS,
    READERS,
    id_of_metadata_key,
    metadata_keys,
    read_metadata,
)
from .rebuild import ReindexReport, copy_catalogue, migrate, reindex

__all__ = [
    "BATCH",
    "MAX_DAY_LISTINGS",
    "READERS",
    "FsckReport",
    "ReindexReport",
    "copy_catalogue",
    "fsck",
    "id_of_metadata_key",
    "lambda_handler",
    "metadata_keys",
    "migrate",
    "read_metadata",
    "reindex",
    "s3_records",
    "store_key_of",
]
