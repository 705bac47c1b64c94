"""Fraud decisions: the engine's features from the wallet's history, the simple scorer, the
policy, and reviews held, approved, declined (once), carrying which model scored them."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.limits import LimitPeriod
from domain.records import (
    PostTransaction,
    ReviewDecided,
    ReviewRequested,
    TransactionRejected,
    TransactionRequested,
)
from domain.transactions import TransactionType
from models.features import CustomerState
from models.protocol import Scorer
from models.simple import RulesAndTrees, rules_score
from streams.decided import Decided, Status
from streams.decision import Assessment, Decision, Policy, assess
from streams.features import StreamFeatures, event_of
from streams.limits import Limit, LimitUsage
from streams.models_watch import ModelWatcher
from streams.screening import PENDING_REVIEWS_MAX, Timeouts, decide_review, screen
from streams.wallet_state import WalletState

W = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
SHOP = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
AT = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
D = Decimal


def request(amount: str, to: uuid.UUID | None = SHOP, at: datetime = AT) -> TransactionRequested:
    return TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=TransactionType.PAYMENT,
        source_wallet_id=W,
        destination_wallet_id=to,
        amount=D(amount),
        fee_amount=D("0"),
        total_amount=D(amount),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=at,
    )


ENGINE = StreamFeatures()


def habit(n: int = 3, amount: str = "5") -> CustomerState | None:
    """``n`` spends at SHOP in the half hour before AT, oldest first."""
    state = None
    for i in range(n):
        state = ENGINE.observe(
            event_of(request(amount, at=AT - timedelta(minutes=10 * (n - i)))), state
        )
    return state


def features(item: TransactionRequested, state: CustomerState | None) -> dict[str, float]:
    return ENGINE.features(event_of(item), state, None)


def test_features_compare_the_amount_with_the_wallet_habit() -> None:
    state = habit()
    x = features(request("100", to=uuid.uuid4()), state)
    assert x["customer_amount_ratio_30d"] == 20.0
    assert x["customer_nb_30d"] == 4.0  # the engine's counts include the transaction
    assert x["new_terminal"] == 1.0
    assert x["customer_nb_1h"] == 4.0
    assert x["hour"] == 12.0
    assert features(request("5"), state)["new_terminal"] == 0.0
    assert features(request("5", at=AT + timedelta(hours=2)), state)["customer_nb_1h"] == 1.0


def test_rules_and_policy_give_review_and_decline() -> None:
    policy = Policy(0.6, 0.85)
    assert policy.decide(rules_score(features(request("5"), habit()))) is Decision.APPROVE
    review = rules_score(features(request("100", to=uuid.uuid4()), habit()))
    assert policy.decide(review) is Decision.REVIEW
    decline = rules_score(features(request("400", to=uuid.uuid4()), habit()))
    assert policy.decide(decline) is Decision.DECLINE
    # No history: nothing to compare with, no amount rule.
    assert policy.decide(rules_score(features(request("400"), None))) is Decision.APPROVE


def test_simple_scorer_follows_the_protocol_and_stays_in_0_1() -> None:
    scorer = RulesAndTrees(seed=3)
    assert isinstance(scorer, Scorer)
    state = habit()
    for i in range(300):
        x = features(request(str(1 + i % 50)), state)
        score = scorer.score_one(x)
        assert 0.0 <= score <= 1.0
        scorer.learn_one(x)


def test_risk_score_is_0_to_100_with_two_decimals() -> None:
    assert Assessment(0.123456, Decision.APPROVE).risk_score == D("12.35")
    assert Assessment(1.7, Decision.DECLINE).risk_score == D("100.00")
    assert Assessment(-1, Decision.APPROVE).risk_score == D("0.00")


class Broken:
    def learn_one(self, x: dict, y: bool | None = None) -> None:
        pass

    def score_one(self, x: dict) -> float:
        return math.nan


def test_a_broken_score_declines_rather_than_approves() -> None:
    item = request("5")
    x = features(item, habit())
    scores = ModelWatcher(None, "fraud", Broken(), 7).score(x)
    assert assess(item, x, scores, Policy()).decision is Decision.DECLINE


def funded() -> WalletState:
    state = WalletState()
    state.credit(D("1000"))
    return state


DAILY = Limit(
    "l1", "WALLET DAILY PAYMENT limit l1", TransactionType.PAYMENT, LimitPeriod.DAILY, D("500"), 10
)


def test_decline_moves_nothing_and_carries_the_score() -> None:
    state, usage = funded(), LimitUsage()
    outcome = screen(request("400"), state, [DAILY], usage, Assessment(0.9, Decision.DECLINE))
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.command.reason_code == "FRAUD_DECLINED"
    assert outcome.command.risk_score == D("90.00")
    assert (state.available, state.holds_open, usage.counters) == (D("1000"), 0, {})
    assert outcome.decided.charge is None


def test_approval_carries_the_score() -> None:
    outcome = screen(request("4"), funded(), assessment=Assessment(0.1, Decision.APPROVE))
    assert isinstance(outcome.command, PostTransaction)
    assert outcome.command.risk_score == D("10.00")


NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def held() -> tuple[TransactionRequested, WalletState, LimitUsage, Decided, ReviewRequested]:
    state, usage = funded(), LimitUsage()
    item = request("100")
    outcome = screen(item, state, [DAILY], usage, Assessment(0.65, Decision.REVIEW), now=NOW)
    assert isinstance(outcome.command, ReviewRequested)
    assert outcome.wallet_changed and outcome.decided.status is Status.REVIEW
    decided = Decided.decode(outcome.decided.encode())  # as the state keeps it
    return item, state, usage, decided, outcome.command


def decided_by(item: TransactionRequested, decision: str) -> ReviewDecided:
    return ReviewDecided(
        transaction_id=item.transaction_id,
        wallet_id=W,
        decision=decision,  # type: ignore[arg-type]
        decided_by="analyst ann",
        decided_at=AT,
    )


def test_review_holds_funds_and_limit_until_decided() -> None:
    _item, state, usage, decided, review = held()
    assert review.review_deadline - review.decided_at == timedelta(minutes=5)
    assert decided.deadline_ms == int(review.review_deadline.timestamp() * 1000)
    assert (state.reserved, state.holds_open, decided.held) == (D("100"), 1, D("100"))
    assert usage.used(DAILY, AT) == (D("100"), 1)


def test_an_approved_review_is_sent_with_a_new_deadline() -> None:
    item, state, usage, decided, _review = held()
    command = decide_review(decided_by(item, "APPROVE"), decided, state, usage, Timeouts(), NOW)
    assert isinstance(command, PostTransaction)
    assert command.risk_score == D("65.00")
    assert command.expires_at == NOW + Timeouts().command
    assert decided.status is Status.SENT and decided.review is None
    assert state.reserved == D("100")  # the ledger settles it


def test_a_declined_review_releases_the_hold_and_the_limit() -> None:
    item, state, usage, decided, _review = held()
    command = decide_review(decided_by(item, "DECLINE"), decided, state, usage, Timeouts(), NOW)
    assert isinstance(command, TransactionRejected)
    assert command.reason_code == "FRAUD_DECLINED"
    assert "analyst ann" in command.reason_message
    assert (state.available, state.reserved, state.holds_open) == (D("1000"), D("0"), 0)
    assert usage.used(DAILY, AT) == (D("0"), 0)
    assert decided.status is Status.REJECTED and decided.held == 0


def test_a_full_review_queue_declines_instead() -> None:
    state = funded()
    outcome = screen(
        request("1"),
        state,
        assessment=Assessment(0.7, Decision.REVIEW),
        reviews_open=PENDING_REVIEWS_MAX,
    )
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.command.reason_code == "FRAUD_DECLINED"
    assert state.holds_open == 0


@pytest.mark.parametrize("decision", ["MAYBE", ""])
def test_unknown_decisions_are_refused(decision: str) -> None:
    with pytest.raises(ValueError):
        ReviewDecided(
            transaction_id=uuid.uuid4(),
            wallet_id=W,
            decision=decision,
            decided_by="x",
            decided_at=AT,
        )


def test_every_decision_names_its_model_and_carries_the_shadow_scores() -> None:
    named = {"scored_by": "fraud v3", "shadow_scores": {"fraud v4": D("12.50")}}
    approved = screen(request("4"), funded(), assessment=Assessment(0.1, Decision.APPROVE, **named))
    declined = screen(request("4"), funded(), assessment=Assessment(0.9, Decision.DECLINE, **named))
    state, usage = funded(), LimitUsage()
    item = request("100")
    review = Assessment(0.65, Decision.REVIEW, **named)
    outcome = screen(item, state, [DAILY], usage, review)
    for command in (approved.command, declined.command, outcome.command):
        assert (command.scored_by, command.shadow_scores) == ("fraud v3", {"fraud v4": D("12.50")})
    # Through the transaction's state key and the analyst's decision, they stay.
    decided = Decided.decode(outcome.decided.encode())
    after = decide_review(decided_by(item, "APPROVE"), decided, state, usage, Timeouts(), AT)
    assert (after.scored_by, after.shadow_scores) == ("fraud v3", {"fraud v4": D("12.50")})
