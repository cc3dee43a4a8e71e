"""elliptio.text: strings from the lake shown on a terminal, never obeyed."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from elliptio.text import json_visible, visible

# what a terminal acts on, or what hides or reorders text
ACTING = {
    "\x1b[2J": "\\x1b[2J",                      # CSI: clear the screen
    "\x1b]52;c;ZXZpbA==\x07": "\\x1b]52;c;ZXZpbA==\\x07",  # OSC 52: set the clipboard
    "\x1b]8;;http://x\x1b\\": "\\x1b]8;;http://x\\x1b\\",  # OSC 8: a hidden link
    "\r": "\\r", "\b": "\\x08", "\x00": "\\x00", "\x7f": "\\x7f",
    "\x9b": "\\x9b",                            # C1 CSI
    "\x85": "\\x85",                            # C1 next line
    "\u202e": "\\u202e", "\u2066": "\\u2066", "\u200f": "\\u200f",  # bidi
    "\u200b": "\\u200b", "\u200d": "\\u200d", "\ufeff": "\\ufeff",  # zero-width
    "\u2028": "\\u2028",                        # line separator
    "\U000e0041": "\\U000e0041",                # a tag character
    "\udcff": "\\udcff",                        # a byte kept by surrogateescape
}


def terminal_acts_on(text: str, keep: str = "") -> list[str]:
    return [c for c in text if c not in keep
            and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")]


def test_each_acting_character_is_written_as_its_escape():
    for raw, shown in ACTING.items():
        assert visible(f"a{raw}b") == f"a{shown}b"


def test_printable_text_is_left_as_it_is():
    for text in ("train.txt", "données/日本語 ü.csv", "C:\\path\\x1b", "a b", "😀", ""):
        assert visible(text) == text


def test_keep_leaves_the_line_breaks_the_program_made():
    assert visible("a\nb\t\x1bc", keep="\n") == "a\nb\\t\\x1bc"
    assert visible("a\nb\t\x1bc", keep="\n\t") == "a\nb\t\\x1bc"
    assert visible("a\nb") == "a\\nb"
    assert visible(("x\x1b", 3)) == "('x\\x1b', 3)"


@given(st.text())
def test_nothing_a_terminal_acts_on_is_left(text):
    out = visible(text)
    assert terminal_acts_on(out) == []
    assert terminal_acts_on(visible(text, keep="\n"), keep="\n") == []


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12))
def test_json_stays_the_same_value_with_nothing_acting(value):
    for indent in (None, 2):
        out = json_visible(json.dumps(value, indent=indent, ensure_ascii=False))
        assert json.loads(out) == value
        assert terminal_acts_on(out, keep="\n") == []


def test_json_writes_escapes_json_reads():
    assert json_visible(json.dumps("a\u202e\x9b\U000e0041", ensure_ascii=False)) == \
        '"a\\u202e\\u009b\\udb40\\udc41"'
