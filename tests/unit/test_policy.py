"""The analysts' policy: the expression language (tokenizer, parser, types, evaluator,
bounds, refusals) and the policy file (thresholds, ordered rules, first match wins)."""

from __future__ import annotations

import builtins
import json
from decimal import Decimal

import pytest

from models.exceptions import ExpressionError, PolicyError
from models.expression import (
    EXPRESSION_DEPTH_MAX,
    LIST_ITEMS_MAX,
    NUMBER,
    STRING,
    EvaluationError,
    compile_condition,
)
from models.features import FEATURE_NAMES
from models.policy import (
    POLICY_BYTES_MAX,
    RULES_MAX,
    Action,
    FraudPolicy,
    default_policy,
    load_policy,
)
from models.tokens import EXPRESSION_CHARS_MAX

D = Decimal
NAMES = {
    "a": NUMBER,
    "b": NUMBER,
    "c": NUMBER,
    "s": STRING,
    "transaction_type": STRING,
    "transaction_type:values": "DEPOSIT,WITHDRAWAL,TRANSFER,PAYMENT",
}
FEATURES = list(FEATURE_NAMES)  # the feature engine's: what the stream's policies read


def run(text: str, **values: object) -> object:
    env = {"a": D(0), "b": D(0), "c": D(0), "s": "", "transaction_type": "PAYMENT"}
    env.update({k: D(str(v)) if isinstance(v, int | float) else v for k, v in values.items()})
    return compile_condition(text, NAMES)(env)


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("1 + 2 * 3 == 7", {}, True),  # * before +
        ("(1 + 2) * 3 == 9", {}, True),
        ("10 - 4 - 3 == 3", {}, True),  # left to right
        ("12 / 4 / 3 == 1", {}, True),
        ("- 2 * 3 == -6", {}, True),
        ("--2 == 2", {}, True),
        ("0.1 + 0.2 == 0.3", {}, True),  # exact decimals, not floats
        ("a > 1 or b > 1 and c > 1", {"a": 2}, True),  # and before or
        ("(a > 1 or b > 1) and c > 1", {"a": 2}, False),
        ("not a > 1 and b == 0", {"a": 0}, True),  # not binds to the comparison
        ("not (a > 1 and b == 0)", {"a": 0}, True),
        ("not not a == 0", {}, True),
        ("a >= 2 and a <= 2 and a != 3 and a < 3 and a > 1", {"a": 2}, True),
        ("s in ['web', 'pos']", {"s": "pos"}, True),
        ("s not in ['web', 'pos']", {"s": "pos"}, False),
        ("a in [1, -2.5, 3]", {"a": -2.5}, True),
        ("a in [1.0]", {"a": 1}, True),  # decimals compare by value
        ("transaction_type == 'PAYMENT'", {}, True),
        ('transaction_type != "DEPOSIT"', {}, True),
        ("true and not false", {}, True),
        ("a / b > 1 or true", {"a": 1, "b": 0}, True),  # a failing side still raises...
    ],
)
def test_the_language_computes_with_the_usual_precedence(
    text: str, values: dict, expected: bool
) -> None:
    if text.startswith("a / b"):
        with pytest.raises(EvaluationError):  # ... it is evaluated first: no silent pass
            run(text, **values)
        return
    assert run(text, **values) is expected


def test_and_or_short_circuit() -> None:
    assert run("b == 0 or a / b > 1", a=1, b=0) is True
    assert run("b != 0 and a / b > 1", a=1, b=0) is False


def test_names_and_amounts_are_exact() -> None:
    condition = compile_condition("a * 3 == 0.3 and s == 'x'", NAMES)
    assert condition({"a": D("0.1"), "s": "x"}) is True
    assert condition.names == frozenset({"a", "s"})


@pytest.mark.parametrize(
    ("text", "column", "says"),
    [
        ("__import__('os')", 11, "calls are not part of the language"),
        ("__import__", 1, "unknown name '__import__'"),
        ("open('/etc/passwd') == 1", 5, "calls are not part"),
        ("a.__class__ == 1", 2, "unexpected character '.'"),
        ("s[0] == 'x'", 2, "unexpected '['"),
        ("lambda: 1", 7, "unexpected character ':'"),
        ("a > 1; b > 1", 6, "unexpected character ';'"),
        ("a ** 2 > 1", 4, "unexpected '*'"),
        ("nope > 1", 1, "unknown name 'nope' (known: a, b, c, s, transaction_type)"),
        ("a >", 4, "unexpected end of the expression"),
        ("(a > 1", 7, "expected ')', found end of the expression"),
        ("a > 1)", 6, "unexpected ')'"),
        ("a > 1 b", 7, "unexpected 'b'"),
        ("1 < a < 3", 7, "comparisons do not chain"),
        ("a == 1 in [1]", 8, "comparisons do not chain"),
        ("a + 1", 1, "a rule needs a condition"),
        ("'x'", 1, "a rule needs a condition"),
        ("a > 's'", 5, "'>' compares numbers, not a string"),
        ("s < 'b'", 1, "'<' compares numbers, not a string"),
        ("a == 's'", 3, "'==' compares a number with a string"),
        ("s + 1 == 1", 1, "'+' works on numbers, not a string"),
        ("-s == 1", 2, "'-' works on numbers, not a string"),
        ("not a", 5, "'not' applies to a condition, not a number"),
        ("a and b > 1", 1, "'and' joins conditions, not a number"),
        ("a > 1 or 2", 10, "'or' joins conditions, not a number"),
        ("(a > 1) + 1 == 2", 4, "'+' works on numbers, not a boolean"),
        ("a in []", 7, "an empty list"),
        ("a in [1, 's']", 10, "the list must hold numbers only"),
        ("s in ['x', 2]", 12, "the list must hold strings only"),
        ("a in [b]", 7, "number or string literals only"),
        ("(a > 1) in [1]", 9, "'in' takes a number or a string"),
        ("a not b", 7, "expected 'in', found 'b'"),
        ("transaction_type == 'PAYMNT'", 21, "transaction_type is never 'PAYMNT'"),
        ("transaction_type in ['DEPOSIT', 'REFUND']", 33, "is never 'REFUND'"),
        ("s == 'unclosed", 6, "a string is not closed"),
        ("a > 1.", 7, "digits after its decimal point"),
        ("a > 1e9", 6, "unexpected 'e' after a number"),
        ("a > 1_000", 6, "unexpected '_' after a number"),
        ("a > " + "9" * 31, 5, "a number longer than 30"),
        ("s == '" + "x" * 65 + "'", 6, "a string longer than 64"),
        ("a > ١", 5, "unexpected character"),  # a non-ASCII digit is not a digit here
        ("", 1, "unexpected end of the expression"),
    ],
)
def test_bad_expressions_are_refused_with_the_column(text: str, column: int, says: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text, NAMES)
    assert says in caught.value.detail
    assert caught.value.column == column


def test_expressions_are_bounded_in_length_depth_tokens_and_lists() -> None:
    deep = "(" * (EXPRESSION_DEPTH_MAX + 1) + "a > 1" + ")" * (EXPRESSION_DEPTH_MAX + 1)
    with pytest.raises(ExpressionError, match="nested deeper than"):
        compile_condition(deep, NAMES)
    ok = "(" * (EXPRESSION_DEPTH_MAX - 1) + "a > 1" + ")" * (EXPRESSION_DEPTH_MAX - 1)
    assert compile_condition(ok, NAMES)({"a": D(2)}) is True
    with pytest.raises(ExpressionError, match="nested deeper than"):
        compile_condition("not " * (EXPRESSION_DEPTH_MAX + 1) + "a > 1", NAMES)
    with pytest.raises(ExpressionError, match="nested deeper than"):
        compile_condition("-" * (EXPRESSION_DEPTH_MAX + 1) + "a > 1", NAMES)
    with pytest.raises(ExpressionError, match="characters long; at most"):
        compile_condition("a > 1" + " " * EXPRESSION_CHARS_MAX, NAMES)
    with pytest.raises(ExpressionError, match="more than 300 tokens"):
        compile_condition("+".join(["1"] * 200) + " > a", NAMES)
    items = ", ".join(str(i) for i in range(LIST_ITEMS_MAX + 1))
    with pytest.raises(ExpressionError, match="a list of more than"):
        compile_condition(f"a in [{items}]", NAMES)


def test_division_by_zero_and_overflow_are_evaluation_errors() -> None:
    with pytest.raises(EvaluationError, match="DivisionByZero"):
        run("a / b > 1", a=1, b=0)
    with pytest.raises(EvaluationError):
        run("a * a * a > 1", a=D("1E+400000000"))


def test_no_python_evaluation_is_ever_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Python evaluation used")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert run("a * 2 > 1 and s in ['x']", a=1, s="x") is True
    policy = load_policy(policy_text(rules=[rule("r", "amount > 1", "review")]), FEATURES)
    assert policy.decide(0.0, {"amount": D(2)}).action is Action.REVIEW


# The policy file.


def rule(name: str, when: str, action: str) -> dict:
    return {"name": name, "when": when, "action": action}


def policy_text(version: int = 1, review: object = 60, decline: object = 85, **more: object) -> str:
    return json.dumps(
        {"version": version, "review_threshold": review, "decline_threshold": decline, **more}
    )


def test_rules_come_first_and_the_first_match_wins() -> None:
    policy = load_policy(
        policy_text(
            rules=[
                rule("trusted-small", "amount < 10 and transaction_type == 'PAYMENT'", "approve"),
                rule("burst", "customer_nb_1h >= 20", "decline"),
                rule("big-new-payee", "amount >= 5000 and new_terminal == 1", "review"),
                rule("burst-again", "customer_nb_1h >= 10", "approve"),
            ]
        ),
        FEATURES,
    )

    def decide(score: float, **values: object) -> tuple[Action, str | None]:
        env = {"amount": D("100"), "transaction_type": "PAYMENT", "customer_nb_1h": D(0)}
        env["new_terminal"] = D(0)
        env.update(values)
        verdict = policy.decide(score, env)
        return verdict.action, verdict.rule

    assert decide(0.99, amount=D("5")) == (Action.APPROVE, "trusted-small")  # beats the score
    assert decide(0.0, customer_nb_1h=D(25)) == (Action.DECLINE, "burst")  # not burst-again
    assert decide(0.0, amount=D("5000"), new_terminal=D(1)) == (Action.REVIEW, "big-new-payee")
    assert decide(0.0, customer_nb_1h=D(12)) == (Action.APPROVE, "burst-again")
    assert decide(0.86) == (Action.DECLINE, None)  # no rule: the thresholds
    assert decide(0.85) == (Action.DECLINE, None)
    assert decide(0.6) == (Action.REVIEW, None)
    assert decide(0.5999) == (Action.APPROVE, None)
    assert policy.names == {"amount", "transaction_type", "customer_nb_1h", "new_terminal"}
    assert policy.version == 1 and len(policy.sha256) == 64


def test_a_rule_whose_arithmetic_fails_does_not_match() -> None:
    policy = load_policy(
        policy_text(rules=[rule("ratio", "amount / customer_nb_30d > 100", "decline")]), FEATURES
    )
    verdict = policy.decide(0.1, {"amount": D("500"), "customer_nb_30d": D(0)})
    assert verdict == (verdict.__class__(Action.APPROVE, None, ("ratio",)))
    assert policy.decide(0.1, {"amount": D("500"), "customer_nb_30d": D(2)}).rule == "ratio"


def test_the_default_policy_cuts_exactly_where_the_old_thresholds_did() -> None:
    for review_at, decline_at in ((0.6, 0.85), (0.1, 0.3), (0.123456789, 0.987654321), (0, 1)):
        policy = default_policy(review_at, decline_at)
        assert policy.version == 0 and policy.rules == ()
        for score in (review_at, decline_at):
            for nearby in (score, score - 1e-12, score + 1e-12, score - 1e-17):
                expected = (
                    Action.DECLINE
                    if nearby >= decline_at
                    else Action.REVIEW
                    if nearby >= review_at
                    else Action.APPROVE
                )
                assert policy.decide(nearby).action is expected, (review_at, decline_at, nearby)


def test_thresholds_are_exact_decimals_on_the_0_to_100_scale() -> None:
    policy = load_policy(policy_text(review=60.5, decline="85.25"), FEATURES)
    assert (policy.review_threshold, policy.decline_threshold) == (D("60.5"), D("85.25"))
    assert policy.decide(0.605).action is Action.REVIEW
    assert policy.decide(0.6049).action is Action.APPROVE
    assert policy.decide(0.8525).action is Action.DECLINE


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "the policy is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"review_threshold": 1, "decline_threshold": 2}), "has no 'version'"),
        (json.dumps({"version": 1, "decline_threshold": 2}), "has no 'review_threshold'"),
        (policy_text(extra=1), "unknown keys ['extra']"),
        (policy_text(version=0), "'version' must be a whole number from 1"),
        (policy_text(version=True), "'version' must be a whole number"),
        (policy_text(version="2"), "'version' must be a whole number"),
        (policy_text(version=1.5), "'version' must be a whole number"),
        (policy_text(review=90, decline=80), "review_threshold <= decline_threshold"),
        (policy_text(decline=101), "'decline_threshold' must be from 0 to 100"),
        (policy_text(review=-1), "'review_threshold' must be from 0 to 100"),
        (policy_text(review="sixty"), "'review_threshold' must be a number"),
        (policy_text(review=None), "'review_threshold' must be a number"),
        (policy_text(review=True), "'review_threshold' must be a number"),
        (policy_text(review="NaN"), "must be from 0 to 100"),
        ('{"version": 1, "review_threshold": NaN, "decline_threshold": 85}', "NaN"),
        (policy_text(rules={"a": 1}), "'rules' must be a list"),
        (policy_text(rules=["x"]), "rule #1 must be an object"),
        (policy_text(rules=[{"name": "a", "when": "true"}]), "rule #1 'a': 'action' must be"),
        (policy_text(rules=[rule("a", "true", "block")]), "'action' must be approve, review"),
        (policy_text(rules=[rule("a", "true", ["review"])]), "'action' must be approve"),
        (policy_text(rules=[rule("", "true", "review")]), "rule #1: 'name' must be"),
        (policy_text(rules=[rule("a b", "true", "review")]), "'name' must be"),
        (policy_text(rules=[rule("x" * 65, "true", "review")]), "'name' must be"),
        (
            policy_text(rules=[rule("a", "true", "review"), rule("a", "true", "decline")]),
            "rule #2 'a': the name is used by an earlier rule",
        ),
        (policy_text(rules=[rule("a", " ", "review")]), "'when' must be a non-empty"),
        (policy_text(rules=[rule("a", 5, "review")]), "'when' must be a non-empty"),
        (policy_text(rules=[{**rule("a", "true", "review"), "x": 1}]), "rule #1 has unknown"),
        (
            policy_text(rules=[rule("ok", "true", "review"), rule("bad", "hour >", "review")]),
            "rule #2 'bad': 'when' at column 7: unexpected end of the expression",
        ),
        (
            policy_text(rules=[rule("evil", "__import__('os').system('id')", "approve")]),
            "rule #1 'evil': 'when' at column 17: unexpected character '.'",
        ),
        (
            policy_text(rules=[rule("typo", "count_1hr > 3", "review")]),
            "rule #1 'typo': 'when' at column 1: unknown name 'count_1hr'",
        ),
        (
            policy_text(rules=[rule(f"r{i}", "true", "review") for i in range(RULES_MAX + 1)]),
            f"{RULES_MAX + 1} rules; at most {RULES_MAX}",
        ),
        (policy_text(description="x" * 1001), "'description' must be text"),
        (policy_text(rules=[], description="y" * POLICY_BYTES_MAX), "bytes; at most"),
    ],
)
def test_malformed_policies_are_refused_with_a_clear_error(text: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, FEATURES)
    assert says in str(caught.value)


def test_a_policy_with_rules_needs_the_values() -> None:
    policy = load_policy(policy_text(rules=[rule("a", "amount > 1", "review")]), FEATURES)
    with pytest.raises(PolicyError, match=r"no values given for \['amount'\]"):
        policy.decide(0.5)
    with pytest.raises(PolicyError, match="no values given"):
        policy.decide(0.5, {"hour": D(1)})


def test_a_rule_without_names_needs_no_values() -> None:
    policy = load_policy(policy_text(rules=[rule("all", "true", "review")]), FEATURES)
    assert policy.names == frozenset()
    assert policy.decide(0.0) == policy.decide(0.0, {})
    assert policy.decide(0.99).action is Action.REVIEW


def test_a_policy_object_checks_its_thresholds_too() -> None:
    with pytest.raises(PolicyError):
        FraudPolicy(1, D(90), D(80))
