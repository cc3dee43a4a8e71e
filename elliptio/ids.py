"""Artifact ids: 26 characters of Crockford base32, time-ordered, no coordination.

48 bits of milliseconds since the epoch followed by 80 random bits (the ULID layout),
written in lower case. Ids sort by creation time, carry the creation date (so a store can be
searched without a catalogue), and are unique across hosts without a server.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import NewType

from .errors import UsageError

ArtifactId = NewType("ArtifactId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
#: a whole id and nothing else: anchored with ``\A``/``\Z`` (``$`` also matches before a
#: trailing newline), so even a caller that uses ``.match`` or ``.search`` gets a full match;
#: use ``ID_RE.fullmatch``
ID_RE = re.compile(r"\A[0-7][0-9a-hjkmnp-tv-z]{25}\Z")


def new_id(now_ms: int | None = None) -> ArtifactId:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return ArtifactId("".join(reversed(chars)))


def check_id(text: str) -> ArtifactId:
    """Return *text* as an ArtifactId, or raise a clear UsageError."""
    if not isinstance(text, str):
        raise UsageError(f"artifact id must be a string, got {type(text).__name__}")
    s = text.strip().lower()
    if not ID_RE.fullmatch(s):
        raise UsageError(f"malformed artifact id {text!r}: expected 26 characters like {new_id()}")
    return ArtifactId(s)


def id_time(artifact_id: str) -> datetime:
    """The creation time encoded in an id."""
    value = 0
    for ch in artifact_id[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return datetime.fromtimestamp(value / 1000, tz=UTC)
