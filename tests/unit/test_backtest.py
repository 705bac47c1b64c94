"""Backtest pieces without ClickHouse: the replay recomputes the stream's features from
history, labels files are parsed strictly, and the tally counts what the policy did."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.records import TransactionRequested
from domain.transactions import TransactionType
from models.backtest import Tally, format_comparison, parse_labels, tally
from models.exceptions import DatasetError
from models.policy import Action, Verdict, default_policy, load_policy
from streams.decision import FEATURE_NAMES
from streams.features import StreamFeatures, event_of
from streams.replay import HistoricalRequest, replay

D = Decimal
AT = datetime(2026, 5, 4, tzinfo=UTC)
W, SHOP = uuid.uuid4(), uuid.uuid4()


def row(amount: str, minutes: int, decision: str = "approve", score: str | None = "10", to=SHOP):
    return HistoricalRequest(
        transaction_id=uuid.uuid4(),
        requested_at=AT + timedelta(minutes=minutes),
        transaction_type="PAYMENT",
        source_wallet_id=W,
        destination_wallet_id=to,
        amount=D(amount),
        currency_code="USD",
        channel="web",
        decision=decision,
        risk_score=None if score is None else D(score),
    )


def test_replay_computes_the_features_the_stream_computed() -> None:
    history = [row("10", -50), row("12", -40), row("900", -30, "decline"), row("11", -20)]
    history += [row("300", 5, to=uuid.uuid4())]
    # The stream's own state: the declined request never entered the wallet's history.
    engine, state = StreamFeatures(), None
    for h in history[:4]:
        if h.decision != "decline":
            state = engine.observe(event_of(_request(h)), state)
    expected = engine.features(event_of(_request(history[-1])), state, None)
    text = '{"version": 1, "review_threshold": 60, "decline_threshold": 85, "rules": [%s]}'
    probes = ", ".join(
        f'{{"name": "{n}", "when": "{n} == {v!r}", "action": "decline"}}'
        for n, v in expected.items()
    )
    policy = load_policy(text % probes, FEATURE_NAMES)
    (only,) = list(replay(history, [policy], AT))  # rows before AT only warm up
    assert only.verdicts[0].rule == next(iter(expected))  # the first probe: all matched...
    for name in expected:  # ... and each alone matches too
        alone = load_policy(
            text % f'{{"name": "p", "when": "{name} == {expected[name]!r}", "action": "review"}}',
            FEATURE_NAMES,
        )
        assert next(iter(replay(history, [alone], AT))).verdicts[0].rule == "p", name


def _request(h: HistoricalRequest) -> TransactionRequested:
    return TransactionRequested(
        transaction_id=h.transaction_id,
        transaction_type=TransactionType(h.transaction_type),
        source_wallet_id=h.source_wallet_id,
        destination_wallet_id=h.destination_wallet_id,
        amount=h.amount,
        fee_amount=D(0),
        total_amount=h.amount,
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=h.requested_at,
    )


def test_replay_gives_the_terminal_the_frauds_known_a_label_delay_later() -> None:
    """A fraud at a terminal counts in its risk once the label delay has passed, as in
    training: before that, and without labels, the terminal looks clean."""
    terminal = "pos-17"

    def at_terminal(days: float, score: str | None = "10") -> HistoricalRequest:
        base = row("50", int(days * 24 * 60), score=score)
        return HistoricalRequest(**{**base.__dict__, "terminal_id": terminal})

    fraud = at_terminal(-9, score="10")
    history = [fraud, at_terminal(-8), at_terminal(-1), at_terminal(1)]
    text = (
        '{"version": 1, "review_threshold": 60, "decline_threshold": 85, "rules": '
        '[{"name": "bad-terminal", "when": "terminal_frauds_30d >= 1", "action": "decline"}]}'
    )
    policy = load_policy(text, FEATURE_NAMES)
    labelled = list(replay(history, [policy], AT, labels={fraud.transaction_id: True}))
    assert [r.verdicts[0].rule for r in labelled] == ["bad-terminal"]
    unlabelled = list(replay(history, [policy], AT))
    assert [r.verdicts[0].rule for r in unlabelled] == [None]
    # Known only a delay after the fraud: a day after it, the terminal still looks clean.
    early = list(
        replay(history, [policy], AT - timedelta(days=8), labels={fraud.transaction_id: True})
    )
    assert [r.verdicts[0].rule for r in early] == [None, "bad-terminal", "bad-terminal"]


def test_replay_skips_unscored_requests_and_uses_the_recorded_score() -> None:
    history = [row("10", 1, score=None), row("10", 2, score="84.99"), row("10", 3, score="85")]
    verdicts = [r.verdicts[0].action for r in replay(history, [default_policy(0.6, 0.85)], AT)]
    assert verdicts == [Action.REVIEW, Action.DECLINE]


def test_labels_files_are_parsed_strictly() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    text = f"label,transaction_id\n1,{a}\nfalse,{b}\n\nFRAUD,{c}\n0,{c}\n"
    assert parse_labels(text) == {a: True, b: False, c: False}  # the later line wins
    with pytest.raises(DatasetError, match="line 2: 1 fields, expected 2"):
        parse_labels("transaction_id,label\nx\n")
    with pytest.raises(DatasetError, match="must name transaction_id and label"):
        parse_labels("")


def test_the_tally_counts_caught_hurt_and_saved_per_currency() -> None:
    f1, f2, g1, g2, u = (uuid.uuid4() for _ in range(5))
    decided = [
        (f1, D("100.50"), "USD", Verdict(Action.DECLINE, "r1")),
        (f2, D("7"), "EUR", Verdict(Action.DECLINE)),
        (g1, D("1"), "USD", Verdict(Action.REVIEW, None, ("bad",))),
        (g2, D("1"), "USD", Verdict(Action.APPROVE)),
        (u, D("1"), "USD", Verdict(Action.DECLINE)),
    ]
    result = tally(decided, {f1: True, f2: True, g1: False, g2: False})
    figures = result.as_dict()
    assert (figures["decided"], figures["decline"], figures["labelled"]) == (5, 3, 4)
    assert (figures["fraud_declined"], figures["good_hurt"], figures["good_reviewed"]) == (2, 1, 1)
    assert figures["money_saved"] == {"EUR": "7", "USD": "100.50"}
    assert figures["rules"] == {"r1": 1} and figures["failed_rules"] == {"bad": 1}
    text = format_comparison(result, Tally(), ("new", "old"))
    assert "7 EUR, 100.50 USD" in text and "+7 EUR, +100.50 USD" in text
