"""Ranged GETs of S3 objects without botocore's per-request cost.

A ranged GET through botocore costs about 0.8 ms of CPU on this kind of machine (request
building, event hooks, signing, response parsing), four times what the server needs to
answer a 4 KiB range; reading many small files through the mount is bound by it. This
module signs the one request shape it supports itself — ``GET`` of a byte range, AWS
Signature Version 4 with an unsigned payload — and sends it on pooled keep-alive
``http.client`` connections: 0.16 ms of CPU per request (``bench/bench_s3.py``
has the row).

The same request also opens a stream (:meth:`SignedGetter.open_range`): the answer's
headers checked, its :class:`Body` left for the caller to read as it goes (a reader of
``Store.open`` reading in order, :mod:`.reads`).

It is only the happy path. Everything it learns comes from the botocore client the store
uses, so both agree: the URL layout (scheme, host, path or virtual-host addressing) from
a presigned URL botocore builds once, the region from the client, the credentials (also
refreshed ones) from the client's credential provider. Any answer other than the range
asked for — an error status, a short body, a dropped connection — raises
:class:`Fallback`, and the caller (:func:`.reads.read_range`) repeats the request once
through botocore, whose errors, retries (:func:`.errors.call`) and messages stay the only
ones. The one other second attempt here: a request that fails on a kept-alive connection
is sent once more on a new one (the server may close an idle connection at any time; that
says nothing about the request). A client it cannot
mirror (a proxy configured, another signature version, no credentials) makes
:func:`for_client` return ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import os
import ssl
import threading
import time
from typing import Any
from urllib.parse import quote, urlparse

PROBE = "eio-probe-key"
UNSIGNED = "UNSIGNED-PAYLOAD"
log = logging.getLogger(__name__)
TIMEOUT = 60.0
#: keep-alive connections kept for reuse (more may be open while requests run)
MAX_IDLE = 32
#: fast-path requests failing in a row before it is switched off for the store
MAX_FAILURES = 8


class Fallback(Exception):
    """The fast path did not get the bytes; repeat the request through botocore.
    *ours*: the failure says more about the fast path (a connection or TLS failure, a
    signature refused) than about the object (missing, range past the end, 5xx)."""

    def __init__(self, message: str, ours: bool = False) -> None:
        super().__init__(message)
        self.ours = ours


def for_client(client: Any, bucket: str) -> SignedGetter | None:
    """A getter mirroring *client* for *bucket*, or ``None`` where it cannot."""
    try:
        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                           "http_proxy", "ALL_PROXY", "all_proxy")):
            return None
        if getattr(client.meta.config, "proxies", None):
            return None
        if getattr(client.meta.config, "signature_version", "s3v4") not in ("s3v4", None):
            return None
        credentials = client._get_credentials()
        if credentials is None:
            return None
        url = client.generate_presigned_url("get_object",
                                            Params={"Bucket": bucket, "Key": PROBE},
                                            ExpiresIn=60)
    except Exception:  # anything unexpected: botocore does the work
        return None
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.path.endswith("/" + PROBE):
        return None
    return SignedGetter(u.scheme, u.netloc, u.path[:-len(PROBE)],
                        client.meta.region_name or "us-east-1", credentials)


class SignedGetter:
    """Signed ranged GETs on pooled keep-alive connections; thread-safe."""

    def __init__(self, scheme: str, netloc: str, base_path: str, region: str,
                 credentials: Any) -> None:
        self.netloc, self.base_path = netloc, base_path
        self.region = region
        self._credentials = credentials
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []  # keep-alive, LIFO
        self._closed = False
        self._failures = 0  # in a row
        self.disabled = False
        self._keys: dict[tuple[str, str], bytes] = {}  # (secret, date) -> signing key
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before (an idle keep-alive one)."""
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop(), True
        if self._ssl is not None:
            return http.client.HTTPSConnection(self.netloc, timeout=TIMEOUT,
                                               context=self._ssl), False
        return http.client.HTTPConnection(self.netloc, timeout=TIMEOUT), False

    def _done_with(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (one in use is closed when its request ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _signing_key(self, secret: str, date: str) -> bytes:
        k = self._keys.get((secret, date))
        if k is None:
            k = ("AWS4" + secret).encode()
            for part in (date, self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, date): k}  # one date at a time
        return k

    def headers(self, path: str, byte_range: str) -> dict[str, str]:
        """The signed request headers for ``GET path`` of *byte_range*."""
        creds = self._credentials.get_frozen_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        hdrs = {"host": self.netloc, "range": byte_range, "x-amz-content-sha256": UNSIGNED,
                "x-amz-date": amz_date}
        if creds.token:
            hdrs["x-amz-security-token"] = creds.token
        names = sorted(hdrs)
        signed = ";".join(names)
        canonical = "\n".join(["GET", path, "", "".join(f"{h}:{hdrs[h]}\n" for h in names),
                               signed, UNSIGNED])
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        sig = hmac.new(self._signing_key(creds.secret_key, date), to_sign.encode(),
                       hashlib.sha256).hexdigest()
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                 f"SignedHeaders={signed}, Signature={sig}")
        del hdrs["host"]  # http.client sends it
        return hdrs

    def get_range(self, s3key: str, offset: int, length: int) -> bytes:
        """Exactly *length* bytes at *offset* of *s3key*, or :class:`Fallback`."""
        if self.disabled:
            raise Fallback("the fast path is off for this store")
        try:
            body = self._get_range(s3key, offset, length)
        except Fallback as exc:
            if exc.ours:
                self._failed()
            raise
        self._failures = 0
        return body

    def _failed(self) -> None:
        """Count a failure of the fast path itself; after :data:`MAX_FAILURES` in a row
        (a TLS setup botocore accepts and we do not, a server that refuses our signature)
        the fast path is switched off, so that every read does not pay a failed attempt
        first."""
        self._failures += 1
        if self._failures >= MAX_FAILURES and not self.disabled:
            self.disabled = True
            log.warning("S3 ranged reads: %d fast-path requests in a row failed; reads go "
                        "through botocore from now on", self._failures)

    def _get_range(self, s3key: str, offset: int, length: int) -> bytes:
        conn, resp, body = self._send(s3key, offset, length, read_body=True)
        self._finished(conn, resp)
        if resp.status != 206 or len(body) != length:
            raise Fallback(f"HTTP {resp.status}, {len(body)} of {length} bytes",
                           ours=resp.status in (400, 403))
        return body

    def open_range(self, s3key: str, offset: int, length: int) -> Body:
        """The answer to a GET of *length* bytes at *offset* of *s3key*, its body still
        to be read (a stream, :class:`Body`), or :class:`Fallback` when the status or the
        length is not the range asked for."""
        if self.disabled:
            raise Fallback("the fast path is off for this store")
        try:
            conn, resp, _ = self._send(s3key, offset, length, read_body=False)
        except Fallback as exc:
            if exc.ours:
                self._failed()
            raise
        if resp.status != 206 or resp.length != length:
            conn.close()
            raise Fallback(f"HTTP {resp.status}, a body of {resp.length} for {length} bytes",
                           ours=resp.status in (400, 403))
        self._failures = 0
        return Body(self, conn, resp)

    def _send(self, s3key: str, offset: int, length: int, read_body: bool
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, bytes]:
        """The request sent and its answer's headers (and its body when *read_body*)."""
        path = self.base_path + quote(s3key, safe="/~")
        hdrs = self.headers(path, f"bytes={offset}-{offset + length - 1}")
        conn, reused = self._connection()
        while True:
            try:
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
                return conn, resp, resp.read() if read_body else b""
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused:  # the server may have closed an idle connection: a new one
                    conn, reused = self._connection(fresh=True)
                    continue
                raise Fallback(f"{type(exc).__name__}: {exc}", ours=True) from None

    def _finished(self, conn: http.client.HTTPConnection,
                  resp: http.client.HTTPResponse) -> None:
        """A response read to its end: its connection kept for the next request."""
        if resp.will_close:
            conn.close()
        else:
            self._done_with(conn)


class Body:
    """The body of one :meth:`SignedGetter.open_range` answer, read as the caller asks
    (``read(n)`` hands over bytes made by the socket read itself, ``readinto`` receives
    into the caller's buffer: no copy either way). Its errors
    are ``OSError`` / ``http.client.HTTPException`` as they come; the caller decides what
    they mean. Read to its end, the connection goes back to the pool; closed before,
    the connection is closed (the rest of the body is not worth reading)."""

    def __init__(self, getter: SignedGetter, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self._getter, self._conn, self._resp = getter, conn, resp

    def read(self, n: int) -> bytes:
        data = self._resp.read(n)
        self._at_end()
        return data

    def readinto(self, b: Any) -> int:
        n = self._resp.readinto(b)
        self._at_end()
        return n

    def _at_end(self) -> None:
        if self._resp.length == 0 and self._conn is not None:
            self._getter._finished(self._conn, self._resp)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
