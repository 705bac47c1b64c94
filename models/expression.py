"""A small, safe expression language for analysts' policy rules.

Parsed by our own tokenizer and recursive-descent parser into a tree, type-checked against
the names it may use, and compiled into plain closures. No Python ``eval``/``exec``/``ast``
ever sees the text: a name that is not declared, a call, an attribute, a subscript, or any
character outside the language is refused when the policy loads.

Grammar (lowest precedence first)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                    | ["not"] "in" "[" literal ("," literal)* "]"]
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := number | string | "true" | "false" | name | "(" expr ")"

Numbers are exact decimals (``Decimal``); strings are quoted with ' or " (no escapes);
comparisons do not chain. A rule's expression must be a condition (true or false).

>>> check = compile_condition("amount >= 500 and transaction_type in ['PAYMENT']",
...                           {"amount": NUMBER, "transaction_type": STRING})
>>> check({"amount": Decimal("750.00"), "transaction_type": "PAYMENT"})
True
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from models.exceptions import ExpressionError
from models.tokens import NUMBER, STRING, Token, tokenize

#: Bounds on the tree (the text's bounds are in ``models.tokens``).
EXPRESSION_DEPTH_MAX = 24
LIST_ITEMS_MAX = 64

BOOLEAN = "boolean"
Value = Decimal | str | bool
Env = Mapping[str, Value]
Compiled = Callable[[Env], Value]

#: Arithmetic in expressions: 28 digits, and every oddity an error (caught per rule).
CONTEXT = decimal.Context(
    prec=28,
    traps=[decimal.DivisionByZero, decimal.InvalidOperation, decimal.Overflow],
)
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})


class EvaluationError(ArithmeticError):
    """A rule's arithmetic failed on one transaction's values (division by zero, overflow)."""


# The tree: each node knows its position (for errors) and its type (checked while built).
@dataclass(frozen=True)
class Node:
    pos: int
    type: str


@dataclass(frozen=True)
class Literal(Node):
    value: Value


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / == != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class Member(Node):
    operand: Node
    items: tuple[Value, ...]
    negated: bool


class Parser:
    """Recursive descent over the tokens; types checked as each node is built."""

    def __init__(self, text: str, names: Mapping[str, str]) -> None:
        self.tokens = tokenize(text)
        self.names = names
        self.at = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {_show(token)}", token.pos)
        return node

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def accept(self, kind: str, text: str) -> Token | None:
        token = self.peek()
        if token.kind == kind and token.text == text:
            return self.take()
        return None

    def expect(self, kind: str, text: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            found = self.peek()
            raise ExpressionError(f"expected {text!r}, found {_show(found)}", found.pos)
        return token

    def nested(self, pos: int) -> None:
        self.depth += 1
        if self.depth > EXPRESSION_DEPTH_MAX:
            raise ExpressionError(f"nested deeper than {EXPRESSION_DEPTH_MAX} levels", pos)

    def expr(self) -> Node:
        self.nested(self.peek().pos)
        node = self.logical("or", self.conjunction)
        self.depth -= 1
        return node

    def conjunction(self) -> Node:
        return self.logical("and", self.negation)

    def logical(self, word: str, operand: Callable[[], Node]) -> Node:
        node = operand()
        while (token := self.accept("keyword", word)) is not None:
            right = operand()
            for side in (node, right):
                _require(side, BOOLEAN, f"'{word}' joins conditions")
            node = Binary(token.pos, BOOLEAN, word, node, right)
        return node

    def negation(self) -> Node:
        token = self.peek()
        if token.kind == "keyword" and token.text == "not":
            self.take()
            self.nested(token.pos)
            operand = self.negation()
            self.depth -= 1
            _require(operand, BOOLEAN, "'not' applies to a condition")
            return Not(token.pos, BOOLEAN, operand)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        token = self.peek()
        if token.kind == "op" and token.text in COMPARISONS:
            self.take()
            right = self.sum()
            node = self.compare(token, left, right)
        elif token.kind == "keyword" and token.text in ("in", "not"):
            node = self.membership(left)
        else:
            return left
        after = self.peek()
        if (after.kind == "op" and after.text in COMPARISONS) or (
            after.kind == "keyword" and after.text == "in"
        ):
            raise ExpressionError("comparisons do not chain: join them with 'and'", after.pos)
        return node

    def compare(self, token: Token, left: Node, right: Node) -> Node:
        if token.text in ("==", "!="):
            if left.type != right.type:
                raise ExpressionError(
                    f"'{token.text}' compares a {left.type} with a {right.type}", token.pos
                )
            if left.type == STRING:
                self.check_string_values(left, right)
        else:
            for side in (left, right):
                _require(side, NUMBER, f"'{token.text}' compares numbers")
        return Binary(token.pos, BOOLEAN, token.text, left, right)

    def membership(self, left: Node) -> Node:
        negated = self.accept("keyword", "not") is not None
        word = self.expect("keyword", "in")
        if left.type == BOOLEAN:
            raise ExpressionError("'in' takes a number or a string on its left", word.pos)
        self.expect("op", "[")
        items: list[Value] = []
        while True:
            token = self.peek()
            if token.kind == "op" and token.text == "]" and not items:
                raise ExpressionError("an empty list", token.pos)
            item = self.list_item()
            if isinstance(item, str) != (left.type == STRING):
                raise ExpressionError(f"the list must hold {left.type}s only", token.pos)
            if isinstance(item, str):
                self.check_string_values(left, Literal(token.pos, STRING, item))
            items.append(item)
            if len(items) > LIST_ITEMS_MAX:
                raise ExpressionError(f"a list of more than {LIST_ITEMS_MAX} items", token.pos)
            if self.accept("op", ",") is None:
                break
        self.expect("op", "]")
        return Member(word.pos, BOOLEAN, left, tuple(items), negated)

    def list_item(self) -> Value:
        token = self.take()
        if token.kind == STRING:
            return token.text
        sign = ""
        if token.kind == "op" and token.text == "-":
            sign, token = "-", self.take()
        if token.kind == NUMBER:
            return Decimal(sign + token.text)
        raise ExpressionError(
            f"a list holds number or string literals only, found {_show(token)}", token.pos
        )

    def check_string_values(self, left: Node, right: Node) -> None:
        """A name with a closed set of values (transaction_type) refuses a literal outside
        it: a typo must fail at load time, not silently never match."""
        for name, literal in ((left, right), (right, left)):
            if isinstance(name, Name) and isinstance(literal, Literal):
                allowed = self.names.get(name.name + ":values")
                if allowed and literal.value not in allowed.split(","):
                    raise ExpressionError(
                        f"{name.name} is never {literal.value!r} (one of {allowed})", literal.pos
                    )

    def sum(self) -> Node:
        return self.arithmetic(("+", "-"), self.product)

    def product(self) -> Node:
        return self.arithmetic(("*", "/"), self.unary)

    def arithmetic(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.peek().kind == "op" and self.peek().text in ops:
            token = self.take()
            right = operand()
            for side in (node, right):
                _require(side, NUMBER, f"'{token.text}' works on numbers")
            node = Binary(token.pos, NUMBER, token.text, node, right)
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text == "-":
            self.take()
            self.nested(token.pos)
            operand = self.unary()
            self.depth -= 1
            _require(operand, NUMBER, "'-' works on numbers")
            return Negate(token.pos, NUMBER, operand)
        return self.atom()

    def atom(self) -> Node:
        token = self.take()
        if token.kind == NUMBER:
            return Literal(token.pos, NUMBER, Decimal(token.text))
        if token.kind == STRING:
            return Literal(token.pos, STRING, token.text)
        if token.kind == "keyword" and token.text in ("true", "false"):
            return Literal(token.pos, BOOLEAN, token.text == "true")
        if token.kind == "name":
            following = self.peek()
            if following.kind == "op" and following.text == "(":
                raise ExpressionError(
                    f"calls are not part of the language ({token.text!r} is called)",
                    following.pos,
                )
            kind = self.names.get(token.text)
            if kind is None:
                known = ", ".join(sorted(n for n in self.names if ":" not in n))
                raise ExpressionError(f"unknown name {token.text!r} (known: {known})", token.pos)
            return Name(token.pos, kind, token.text)
        if token.kind == "op" and token.text == "(":
            node = self.expr()
            self.expect("op", ")")
            return node
        raise ExpressionError(f"unexpected {_show(token)}", token.pos)


def _require(node: Node, kind: str, why: str) -> None:
    if node.type != kind:
        raise ExpressionError(f"{why}, not a {node.type}", node.pos)


def _show(token: Token) -> str:
    return "end of the expression" if token.kind == "end" else repr(token.text)


def parse(text: str, names: Mapping[str, str]) -> Node:
    """The typed tree of ``text``. ``names`` maps each usable name to its type (and
    ``"<name>:values"`` to a comma-separated closed set of string values, if any)."""
    return Parser(text, names).parse()


@dataclass(frozen=True)
class Condition:
    """A compiled condition: call it with the values of ``names``."""

    text: str
    names: frozenset[str]
    run: Compiled

    def __call__(self, env: Env) -> bool:
        try:
            return bool(self.run(env))
        except decimal.DecimalException as error:
            raise EvaluationError(f"{type(error).__name__} in {self.text!r}") from None


def compile_condition(text: str, names: Mapping[str, str]) -> Condition:
    """Parse, check that ``text`` is a condition, and compile it into a function of the
    values (``Decimal`` for numbers, ``str`` for strings). Raises ``ExpressionError``."""
    tree = parse(text, names)
    if tree.type != BOOLEAN:
        raise ExpressionError(f"a rule needs a condition (true or false), not a {tree.type}", 1)
    return Condition(text, frozenset(_names(tree)), _compile(tree))


def _names(node: Node) -> set[str]:
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Negate | Not | Member):
        return _names(node.operand)
    if isinstance(node, Binary):
        return _names(node.left) | _names(node.right)
    return set()


def _compile(node: Node) -> Compiled:  # noqa: C901 - one branch per node kind
    if isinstance(node, Literal):
        value = node.value
        return lambda env: value
    if isinstance(node, Name):
        name = node.name
        return lambda env: env[name]
    if isinstance(node, Negate):
        operand = _compile(node.operand)
        return lambda env: CONTEXT.minus(operand(env))  # type: ignore[arg-type]
    if isinstance(node, Not):
        inner = _compile(node.operand)
        return lambda env: not inner(env)
    if isinstance(node, Member):
        operand, items, negated = _compile(node.operand), frozenset(node.items), node.negated
        return lambda env: (operand(env) in items) != negated
    if isinstance(node, Binary):
        left, right = _compile(node.left), _compile(node.right)
        return _BINARY[node.op](left, right)
    raise ExpressionError(f"cannot compile a {type(node).__name__}", node.pos)


_BINARY: dict[str, Callable[[Compiled, Compiled], Compiled]] = {
    "or": lambda a, b: lambda env: bool(a(env)) or bool(b(env)),
    "and": lambda a, b: lambda env: bool(a(env)) and bool(b(env)),
    "+": lambda a, b: lambda env: CONTEXT.add(a(env), b(env)),  # type: ignore[arg-type]
    "-": lambda a, b: lambda env: CONTEXT.subtract(a(env), b(env)),  # type: ignore[arg-type]
    "*": lambda a, b: lambda env: CONTEXT.multiply(a(env), b(env)),  # type: ignore[arg-type]
    "/": lambda a, b: lambda env: CONTEXT.divide(a(env), b(env)),  # type: ignore[arg-type]
    "==": lambda a, b: lambda env: a(env) == b(env),
    "!=": lambda a, b: lambda env: a(env) != b(env),
    "<": lambda a, b: lambda env: a(env) < b(env),  # type: ignore[operator]
    "<=": lambda a, b: lambda env: a(env) <= b(env),  # type: ignore[operator]
    ">": lambda a, b: lambda env: a(env) > b(env),  # type: ignore[operator]
    ">=": lambda a, b: lambda env: a(env) >= b(env),  # type: ignore[operator]
}
