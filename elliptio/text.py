"""Text for a person's terminal: strings from the lake shown, never obeyed.

Everything a command prints for people may hold strings another user wrote (a user name,
type, tag, ``info`` value, file name, argv, an object key, an error quoting one of them).
A terminal *acts* on some characters instead of showing them: ESC starts sequences that
move the cursor, recolour, retitle the window, set the clipboard (OSC 52) or hide a link
(OSC 8); ``\\r`` and backspace overwrite what was printed; C1 controls (U+0080-U+009F)
are 8-bit ESC sequences to some terminals; bidi overrides (U+202E ...) reorder what follows
and zero-width characters hide text. :func:`visible` writes each such character as its
escape (``\\x1b``, ``\\u202e``), so the reader sees that it is there and the terminal does
nothing; :func:`json_visible` does the same inside JSON text (as JSON ``\\u`` escapes,
so the JSON still parses to the same value).

Backslashes are left as they are: a name that is literally ``a\\x1b`` reads the same as one
holding ESC, which misleads no terminal; escaping every backslash would garble Windows-like
paths and regular expressions in ``info``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["json_visible", "visible"]

#: Unicode categories shown escaped: controls (C0, DEL, C1), format characters (bidi
#: embeddings, overrides and isolates, zero-width space/joiners, word joiner, BOM, soft
#: hyphen, tag characters), line and paragraph separators, surrogates (a file name decoded
#: with ``surrogateescape``) and private-use characters
_HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co"))


#: the escapes everyone reads, as Python writes them
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in _HIDDEN


def visible(value: object, keep: str = "") -> str:
    """``str(value)`` with every control, format and separator character written as a
    Python-style escape (``\\x1b``, ``\\u202e``, ``\\U000e0041``), except those in *keep*
    (e.g. ``"\\n"`` for text whose line breaks the program made, ``"\\n\\t"`` for a log)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case, at C speed (space is printable; \n is not)
        return text
    out = []
    for ch in text:
        if ch in keep or not _hidden(ch):
            out.append(ch)
            continue
        o = ord(ch)
        out.append(_SHORT.get(ch) or (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"
                                      if o < 0x10000 else f"\\U{o:08x}"))
    return "".join(out)


def json_visible(text: str) -> str:
    """JSON text (as :func:`json.dumps` writes it) with the characters :func:`visible`
    escapes written as JSON ``\\uXXXX`` escapes (a surrogate pair above U+FFFF).

    ``json.dumps`` escapes C0 controls inside strings but, with ``ensure_ascii=False``, lets
    DEL, C1 and bidi/zero-width characters through. Outside strings JSON has only ASCII
    punctuation and whitespace, so a real newline here is the indentation's (kept) and every
    other such character lies inside a string, where an escape means the same character."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in "\n\t" or not _hidden(ch):  # \n, \t: indentation; in strings they are escaped
            out.append(ch)
            continue
        o = ord(ch)
        if o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
    return "".join(out)
