"""A readable file object over one store object, checked against its recorded sha256.

:func:`verified_open` is what :meth:`elliptio.artifact.ArtifactFile.open` returns. Bytes
read in order from the start are hashed as they pass; the read that would hand over the
last byte (the recorded size reached) first compares the digest, and raises
``IntegrityError`` instead of returning a complete-looking file whose bytes do not match
(as the web page's verified stream does). Bytes beyond the recorded size are an
``IntegrityError`` too. A reader that seeks elsewhere (a Parquet footer, a column chunk)
gets exactly the bytes it asked for: such partial reads cannot be checked against a
whole-file digest, and reading the file to its end in order afterwards is checked again
from the start.

:class:`InOrderCheck` is that rule on its own, for readers that hand over bytes another
way (the ``eio://`` files of :mod:`elliptio.urlfs`): one way to verify, wherever bytes
leave the library.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any, BinaryIO

from .errors import IntegrityError


class InOrderCheck:
    """The sha256 of one file's bytes as they are handed over in order from its start.

    Call :meth:`passing` with every piece of bytes *before* handing it over, with the
    offset it starts at. It raises ``IntegrityError`` when the piece would complete the
    file and the digest does not match, when it reaches past the recorded size, or when
    the store ends before the recorded size. Pieces elsewhere pass unchecked (module
    docstring); a piece that overlaps the checked prefix extends it. A mismatch, once
    found, stays: every later piece that reaches the file's end is refused too (a reader
    that retries the failed read does not get the bytes the second time).

    Thread-safe: a read-ahead may hash pieces in its own thread before they are handed
    over (:mod:`elliptio.urlfs_read`) while the reader's thread passes others.
    """

    def __init__(self, what: str, sha256: str, size: int) -> None:
        self.what, self.sha256, self.size = what, sha256, size
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) are in _hash, checked in order
        self._mismatch = False
        self._lock = threading.Lock()  # hashlib releases the GIL: one update at a time

    @property
    def hashed(self) -> int:
        """How far from the start the bytes are hashed (those before are checked)."""
        return self._hashed

    def passing(self, pos: int, data: bytes | memoryview, asked: int) -> None:
        """Check *data* (the bytes at *pos*, of the *asked* for) before it is handed over."""
        n = len(data)
        end = pos + n
        if end > self.size:
            raise IntegrityError(f"{self.what}: the store holds more bytes than the "
                                 f"recorded {self.size}")
        if pos <= self._hashed < end:  # read unlocked: it only grows, and _mismatch first
            with self._lock:  # a hash in progress holds it (hashlib releases the GIL)
                if pos <= self._hashed < end:
                    self._hash.update(memoryview(data)[self._hashed - pos:])
                    if end == self.size:
                        self._mismatch = self._hash.hexdigest() != self.sha256
                    self._hashed = end
        if self._mismatch and n and end == self.size:
            raise IntegrityError(f"{self.what}: content does not match its recorded sha256")
        if n == 0 and pos < self.size and asked:
            raise IntegrityError(f"{self.what}: the store holds {pos} bytes, the "
                                 f"catalogue recorded {self.size}")
        if self.size == 0 and pos == 0 and self._hash.hexdigest() != self.sha256:
            raise IntegrityError(f"{self.what}: content does not match its recorded sha256")


class _Verifying(io.RawIOBase):
    def __init__(self, raw: BinaryIO, what: str, sha256: str, size: int) -> None:
        self._raw, self._size = raw, size
        self._pos = 0
        self._check = InOrderCheck(what, sha256, size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._raw.seek(pos)
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        self._check.passing(self._pos, data, len(view))
        view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def verified_open(raw: BinaryIO, what: str, sha256: str, size: int) -> BinaryIO:
    """*raw* (a store's file object, at offset 0) as a buffered, seekable reader that
    checks what it hands over (module docstring)."""
    return io.BufferedReader(_Verifying(raw, what, sha256, size), 1 << 20)  # type: ignore[return-value]
