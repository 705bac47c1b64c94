"""The live simulator's labels: realistic delays scaled to a demo, a bounded queue that
sends the earliest label early when full (never drops one), and labels due in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from domain import records
from domain.exceptions import RecordDecodeError
from models.scenarios import DAY_S, DISPUTE_WINDOW_S, HOUR_S
from walletpipe.labels import LIVE_DELAY_FLOOR_S, DelayedLabels, live_delay_s


def label(is_fraud: bool = False) -> records.FraudLabelled:
    return records.FraudLabelled(
        transaction_id=uuid.uuid4(),
        wallet_id=uuid.uuid4(),
        is_fraud=is_fraud,
        scenario="card_testing" if is_fraud else None,
        labelled_at=datetime.now(UTC),
    )


def test_the_dispute_window_becomes_the_live_delay_and_frauds_come_sooner() -> None:
    assert live_delay_s(DISPUTE_WINDOW_S, 10.0) == pytest.approx(10.0)
    assert live_delay_s(2 * DAY_S, 10.0) == pytest.approx(10.0 * 2 / 7)
    assert live_delay_s(HOUR_S, 10.0) == LIVE_DELAY_FLOOR_S  # never before the stream scored
    assert live_delay_s(HOUR_S, 0.5) == 0.5


def test_labels_come_out_when_due_in_order() -> None:
    queue = DelayedLabels()
    first, second, third = label(), label(True), label()
    assert queue.push(3.0, third) == []
    assert queue.push(1.0, first) == []
    assert queue.push(2.0, second) == []
    assert queue.due(0.5) == []
    assert queue.due(2.0) == [first, second]
    assert queue.next_due() == 3.0
    assert queue.due(10.0) == [third] and len(queue) == 0


def test_a_full_queue_sends_the_earliest_early_and_drops_nothing() -> None:
    queue = DelayedLabels(size_max=2)
    a, b, c = label(), label(), label()
    queue.push(5.0, a)
    queue.push(1.0, b)
    assert queue.push(9.0, c) == [b]
    assert (len(queue), queue.early) == (2, 1)
    assert queue.due(100.0) == [a, c]


def test_a_label_record_round_trips() -> None:
    original = label(True)
    assert records.decode_fraud_labelled(records.encode(original)) == original
    with pytest.raises(RecordDecodeError):
        records.decode_fraud_labelled(b'{"kind": "FraudLabelled", "is_fraud": "maybe"}')


def test_the_summary_counts_only_this_runs_transactions() -> None:
    from types import SimpleNamespace

    from walletpipe.simulate import Outcomes, summarize

    outcomes = Outcomes()
    outcomes.accepted("mine")
    outcomes.finish("mine", "COMPLETED", "")
    outcomes.finish("an-earlier-run's", "FAILED", "INSUFFICIENT_FUNDS")  # still settling
    traffic = SimpleNamespace(sent=1, refused={}, scenario_of={}, retried=0, unanswered=0)
    summary = summarize(outcomes, traffic, 1.0)  # type: ignore[arg-type]
    assert (summary["completed"], summary["failed"], summary["still_pending"]) == (1, 0, 0)
    assert summary["failed_by_reason"] == {}
