"""Data that would steer a terminal if printed raw: escape sequences (CSI, OSC, C1), bells,
carriage returns and bidirectional overrides, as conversations, names and file names carry them.

`raw_controls(text)` is the oracle: the characters of `text` that a terminal acts on instead of
showing (newline and tab, used for layout, excepted). It is written here from the Unicode
categories, not taken from the code under test.
"""

from __future__ import annotations

import unicodedata

SEQUENCES = {
    "clear screen": "\x1b[2J\x1b[H",
    "colour": "\x1b[31;1mred\x1b[0m",
    "window title": "\x1b]0;pwned title\x07",
    "clipboard": "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "hyperlink": "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\",
    "C1 CSI": "\x9b2J",
    "C1 OSC": "\x9d0;c1 title\x9c",
    "bell, backspace, carriage return, delete": "a\x07b\x08c\rd\x7f",
    "bidi override": "\u202eevil\u202c",
}
HOSTILE = "".join(SEQUENCES.values())
# In a file name: no "/" (a path separator) and no NUL; everything else is allowed.
HOSTILE_FILE_NAME = "chats \x1b]0;owned\x07\x1b[2J\x9b2J\u202e.jsonl"

_BIDI = {"\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)),
         *map(chr, range(0x2066, 0x206A))}


def hostile(label: str) -> str:
    """`label` followed by every sequence: a name or text that tries them all."""
    return f"{label} {HOSTILE}"


def raw_controls(text: str) -> list[str]:
    """The characters in `text` a terminal would act on (category Cc but newline and tab, and
    the bidirectional controls), each with its position."""
    return [f"{i}:{ch!r}" for i, ch in enumerate(text)
            if (unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in _BIDI]
