"""What free text a caller may send: printable characters only. Pure.

Text from callers ends up in PostgreSQL (which refuses NUL in text), on Kafka, in ClickHouse,
on an analyst's screen and in regulators' CSV files. So every free-text field refuses:

- control characters (Unicode category Cc: NUL, the C0 and C1 ranges, DEL); a *multi-line*
  field (a review note) may hold tab, line feed and carriage return, a single-line field
  (a name, a description, a reference, a metadata key or value) none of them;
- lone surrogates (category Cs), which no UTF-8 store can hold;
- bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
  make a text read differently from what it holds, and the line and paragraph separators
  U+2028 and U+2029 in single-line fields.

Everything else (accents, CJK, emoji, joiners) is text and passes as written.
"""

from __future__ import annotations

import unicodedata

from domain.exceptions import InvalidText

LINE_BREAKS_AND_TABS = frozenset("\t\n\r")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LINE_SEPARATORS = frozenset("\u2028\u2029")


def first_refused(text: str, *, multiline: bool = False) -> int | None:
    """The index of the first character ``text`` may not hold, or None."""
    if text.isascii():  # the common case: one C-speed scan
        if text.isprintable():
            return None
        for index, char in enumerate(text):
            if not (char.isprintable() or (multiline and char in LINE_BREAKS_AND_TABS)):
                return index
        return None
    for index, char in enumerate(text):
        if multiline and char in LINE_BREAKS_AND_TABS:
            continue
        if char in BIDI_CONTROLS or (not multiline and char in LINE_SEPARATORS):
            return index
        if unicodedata.category(char) in ("Cc", "Cs"):
            return index
    return None


def check_text(text: str, field: str, *, multiline: bool = False) -> str:
    """``text`` itself if it holds only what a text field may; else ``InvalidText``.

    >>> check_text("rent for May", "description")
    'rent for May'
    """
    index = first_refused(text, multiline=multiline)
    if index is not None:
        what = "line breaks or tabs" if text[index] in LINE_BREAKS_AND_TABS else "this character"
        raise InvalidText(
            f"{field} may not hold {what}: U+{ord(text[index]):04X} at position {index}"
        )
    return text


def is_visible_ascii(text: str) -> bool:
    """Printable ASCII without spaces at either end: what a header-borne key may be."""
    return text.isascii() and text.isprintable() and text == text.strip()
