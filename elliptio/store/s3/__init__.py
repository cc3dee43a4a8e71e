"""The S3 store: artifacts as locked objects in a bucket (AWS, SeaweedFS, Ceph RGW, MinIO).

``s3://bucket[/prefix]``; credentials, region and endpoint come from boto3's standard chain
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles, instance roles…), never from
ElliptIO's configuration, and never land in metadata or logs.

One module per job; :class:`S3Store` (``store``) holds what they share and gives each
operation to its module:

- ``keys``: the store URL, and store keys ↔ S3 keys;
- ``client``: the botocore client from the AWS environment (botocore's retries off);
- ``errors``: what a failure means (worth repeating or not, which ElliptIO error it
  becomes) and :func:`~.errors.call`, the one path every request takes;
- ``bucket``: Object Lock (what the bucket has, the retention each write carries) and
  ``eio init``;
- ``upload``: staging (hashing), one PUT, multipart uploads and their abort;
- ``reads``: sizes, ranged GETs, whole small objects, a seekable reader;
- ``fastpath``: ranged GETs signed and sent without botocore's per-request cost;
- ``download``: an object into a local file in parallel ranges, hashed on the way;
- ``listing``: keys, incomplete uploads, artifact directories, page by page;
- ``orphans``: removal of what an interrupted save left (``eio fsck``);
- ``pool``: the transfer threads, and a bounded window of jobs over them.

Retries: botocore's own are switched off; every botocore request goes through
:func:`.errors.call`, that is through the one retry helper
(:func:`elliptio.store.retry.retry`), which lists the few places allowed a second attempt
of their own (the fast path's are two of them).
"""

from __future__ import annotations

from .client import make_client
from .errors import is_transient
from .store import S3Store

__all__ = ["S3Store", "is_transient", "make_client"]
