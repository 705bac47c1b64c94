"""A versioned fraud policy: ordered analyst rules, then thresholds on the risk score.

Pure: text in, a ``FraudPolicy`` out (or a ``PolicyError`` naming what is wrong); no file
or network access. The stream applies it to every request; ``walletpipe models backtest``
replays it over history first. The file is JSON (docs/models.md)::

    {"version": 3, "review_threshold": 60, "decline_threshold": 85,
     "rules": [{"name": "big-first-payment",
                "when": "amount >= 5000 and customer_nb_30d < 4", "action": "review"},
               {"name": "night-burst", "when": "hour < 5 and customer_nb_1h >= 21",
                "action": "decline"}]}

Rules run in order and the first that matches decides (``approve`` too: an allow-list
rule overrides the score); when none matches, the score decides: ``decline`` from
``decline_threshold``, ``review`` from ``review_threshold`` (0-100, as ``risk_score`` on
the records). A rule whose arithmetic fails on a transaction (division by zero) does not
match it.

>>> policy = load_policy('{"version": 1, "review_threshold": 60, "decline_threshold": 85,'
...     ' "rules": [{"name": "vip", "when": "amount < 10", "action": "approve"}]}', ["hour"])
>>> policy.decide(0.9, {"amount": Decimal("5")}).rule
'vip'
>>> policy.decide(0.9, {"amount": Decimal("50")}).action
<Action.DECLINE: 'decline'>
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from domain.transactions import TransactionType
from models.exceptions import ExpressionError, PolicyError
from models.expression import NUMBER, STRING, Condition, Env, EvaluationError, compile_condition

POLICY_BYTES_MAX = 256 * 1024
RULES_MAX = 100
VERSION_MAX = 1_000_000_000
RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DESCRIPTION_CHARS_MAX = 1_000
HUNDRED = Decimal(100)

#: What a rule may name besides the features: the score and the request's own fields.
REQUEST_NAMES: dict[str, str] = {
    "risk_score": NUMBER,  # 0-100, two decimals, as on the records
    "amount": NUMBER,  # exact, in the transaction's currency
    "transaction_type": STRING,
    "transaction_type:values": ",".join(t.value for t in TransactionType),
    "currency_code": STRING,
    "channel": STRING,  # the request's metadata channel, '' when absent
}
POLICY_KEYS = {"version", "review_threshold", "decline_threshold", "rules", "description"}
RULE_KEYS = {"name", "when", "action", "description"}


class Action(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action
    condition: Condition

    @property
    def when(self) -> str:
        return self.condition.text


@dataclass(frozen=True)
class Verdict:
    action: Action
    rule: str | None = None  # the rule that decided, None when the thresholds did
    failed_rules: tuple[str, ...] = ()  # rules whose arithmetic failed on these values


@dataclass(frozen=True)
class FraudPolicy:
    """``review_threshold`` and ``decline_threshold`` are on the 0-100 scale."""

    version: int
    review_threshold: Decimal
    decline_threshold: Decimal
    rules: tuple[Rule, ...] = ()
    sha256: str = ""
    #: The names the rules read: only these need values (see ``decide``).
    names: frozenset[str] = field(default=frozenset())
    _review_at: float = field(default=0.0, init=False, repr=False, compare=False)
    _decline_at: float = field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.review_threshold <= self.decline_threshold <= HUNDRED:
            raise PolicyError(
                "thresholds must satisfy 0 <= review_threshold <= decline_threshold <= 100, "
                f"got review {self.review_threshold} and decline {self.decline_threshold}"
            )
        # Compared with the model's score in [0, 1]: x/100 of a threshold made from a
        # float's repr gives that float back exactly (default_policy keeps today's cuts).
        object.__setattr__(self, "_review_at", float(self.review_threshold / HUNDRED))
        object.__setattr__(self, "_decline_at", float(self.decline_threshold / HUNDRED))

    @property
    def review_at(self) -> float:
        """``review_threshold`` on the score's [0, 1] scale."""
        return self._review_at

    @property
    def decline_at(self) -> float:
        return self._decline_at

    def decide(self, score: float, values: Env | None = None) -> Verdict:
        """``score`` in [0, 1]; ``values`` hold every name in ``names`` (numbers as
        ``Decimal``, strings as ``str``); a policy without rules needs none."""
        failed: list[str] = []
        if self.rules:
            given = values if values is not None else {}
            if not self.names <= given.keys():
                missing = sorted(self.names - given.keys())
                raise PolicyError(f"policy v{self.version}: no values given for {missing}")
            values = given
            for rule in self.rules:
                try:
                    if rule.condition(values):
                        return Verdict(rule.action, rule.name, tuple(failed))
                except EvaluationError:
                    failed.append(rule.name)
        if score >= self._decline_at:
            return Verdict(Action.DECLINE, None, tuple(failed))
        if score >= self._review_at:
            return Verdict(Action.REVIEW, None, tuple(failed))
        return Verdict(Action.APPROVE, None, tuple(failed))


def default_policy(review_at: float, decline_at: float) -> FraudPolicy:
    """Version 0: today's thresholds (scores in [0, 1]) and no rules."""
    return FraudPolicy(0, Decimal(repr(review_at)) * HUNDRED, Decimal(repr(decline_at)) * HUNDRED)


def load_policy(text: str | bytes, feature_names: Iterable[str]) -> FraudPolicy:
    """Parse and check a policy file's text; every rule compiled. Raises ``PolicyError``."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > POLICY_BYTES_MAX:
        raise PolicyError(f"the policy is {len(raw)} bytes; at most {POLICY_BYTES_MAX}")
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise PolicyError(f"the policy is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a JSON object")
    _no_unknown_keys(data, POLICY_KEYS, "the policy")
    for key in ("version", "review_threshold", "decline_threshold"):
        if key not in data:
            raise PolicyError(f"the policy has no {key!r}")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION_MAX:
        raise PolicyError(f"'version' must be a whole number from 1, got {version!r}")
    _text(data.get("description", ""), "'description'")
    names = {name: NUMBER for name in feature_names} | REQUEST_NAMES
    rules = _rules(data.get("rules", []), names)
    return FraudPolicy(
        version=version,
        review_threshold=_threshold(data["review_threshold"], "review_threshold"),
        decline_threshold=_threshold(data["decline_threshold"], "decline_threshold"),
        rules=rules,
        sha256=hashlib.sha256(raw).hexdigest(),
        names=frozenset().union(*(rule.condition.names for rule in rules)),
    )


def _rules(items: Any, names: Mapping[str, str]) -> tuple[Rule, ...]:
    if not isinstance(items, list):
        raise PolicyError("'rules' must be a list")
    if len(items) > RULES_MAX:
        raise PolicyError(f"{len(items)} rules; at most {RULES_MAX}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        where = f"rule #{number}"
        if not isinstance(item, dict):
            raise PolicyError(f"{where} must be an object with name, when and action")
        _no_unknown_keys(item, RULE_KEYS, where)
        name = item.get("name")
        if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
            raise PolicyError(
                f"{where}: 'name' must be 1-64 letters, digits, '_', '.' or '-', got {name!r}"
            )
        where = f"rule #{number} {name!r}"
        if name in seen:
            raise PolicyError(f"{where}: the name is used by an earlier rule")
        seen.add(name)
        _text(item.get("description", ""), f"{where}: 'description'")
        action = item.get("action")
        if not isinstance(action, str) or action not in {a.value for a in Action}:
            raise PolicyError(
                f"{where}: 'action' must be approve, review or decline, got {action!r}"
            )
        when = item.get("when")
        if not isinstance(when, str) or not when.strip():
            raise PolicyError(f"{where}: 'when' must be a non-empty expression")
        try:
            condition = compile_condition(when, names)
        except ExpressionError as error:
            raise PolicyError(f"{where}: 'when' at {error}") from None
        rules.append(Rule(name, Action(action), condition))
    return tuple(rules)


def _threshold(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise PolicyError(f"{key!r} must be a number from 0 to 100, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise PolicyError(f"{key!r} must be a number from 0 to 100, got {value!r}") from None
    if not number.is_finite() or not 0 <= number <= HUNDRED:
        raise PolicyError(f"{key!r} must be from 0 to 100 (the risk score's scale), got {value}")
    return number


def _no_unknown_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PolicyError(f"{where} has unknown keys {unknown} (allowed: {sorted(allowed)})")


def _text(value: Any, where: str) -> None:
    if not isinstance(value, str) or len(value) > DESCRIPTION_CHARS_MAX:
        raise PolicyError(f"{where} must be text of at most {DESCRIPTION_CHARS_MAX} characters")


def _no_constant(name: str) -> Any:
    raise PolicyError(f"the policy holds {name}, which is not a number")
