"""The tokenizer of the policy expression language (``models.expression``).

Numbers (digits, an optional decimal part; no exponent, no ``_``), strings in ' or "
without escapes, names and keywords in ASCII letters, digits and ``_``, and the operators
below. Anything else is refused with its 1-based column.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.exceptions import ExpressionError

#: Bounds on the text: its length, its tokens, one literal.
EXPRESSION_CHARS_MAX = 1_000
EXPRESSION_TOKENS_MAX = 300
STRING_CHARS_MAX = 64
NUMBER_CHARS_MAX = 30

#: Token kinds; a number or string literal's kind is also its type in the language.
NUMBER, STRING = "number", "string"
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
#: Longest first: "<=" before "<".
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",")


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "string", "name", "keyword", "op", "end"
    text: str
    pos: int  # 1-based column of the token's first character


def tokenize(text: str) -> list[Token]:
    if len(text) > EXPRESSION_CHARS_MAX:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; at most {EXPRESSION_CHARS_MAX}", 1
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in " \t\r\n":
            i += 1
            continue
        if len(tokens) >= EXPRESSION_TOKENS_MAX:
            raise ExpressionError(f"more than {EXPRESSION_TOKENS_MAX} tokens", i + 1)
        start = i
        if char.isascii() and char.isdigit():
            i = _number_end(text, i)
            tokens.append(Token(NUMBER, text[start:i], start + 1))
        elif char in "'\"":
            end = text.find(char, i + 1)
            if end < 0:
                raise ExpressionError("a string is not closed", start + 1)
            if end - i - 1 > STRING_CHARS_MAX:
                raise ExpressionError(f"a string longer than {STRING_CHARS_MAX} characters", i + 1)
            tokens.append(Token(STRING, text[i + 1 : end], start + 1))
            i = end + 1
        elif char.isascii() and (char.isalpha() or char == "_"):
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, start + 1))
        else:
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is None:
                raise ExpressionError(f"unexpected character {char!r}", start + 1)
            tokens.append(Token("op", op, start + 1))
            i += len(op)
    tokens.append(Token("end", "", n + 1))
    return tokens


def _number_end(text: str, i: int) -> int:
    start, n = i, len(text)
    while i < n and text[i].isascii() and text[i].isdigit():
        i += 1
    if i < n and text[i] == ".":
        i += 1
        if not (i < n and text[i].isascii() and text[i].isdigit()):
            raise ExpressionError("a number needs digits after its decimal point", i + 1)
        while i < n and text[i].isascii() and text[i].isdigit():
            i += 1
    if i < n and (text[i].isalpha() or text[i] == "_"):
        raise ExpressionError(f"unexpected {text[i]!r} after a number", i + 1)
    if i - start > NUMBER_CHARS_MAX:
        raise ExpressionError(f"a number longer than {NUMBER_CHARS_MAX} characters", start + 1)
    return i
