"""The stream under an analysts' policy: the default keeps today's cuts, rules decide first
and are named in the decline reason, and hot reload swaps a valid new file in and keeps the
running policy when the new one is malformed, older, or gone."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from domain.records import ReviewRequested, TransactionRejected, TransactionRequested
from domain.transactions import RejectReason, TransactionType
from models.exceptions import PolicyError
from models.policy import default_policy, load_policy
from streams.decision import (
    FEATURE_NAMES,
    Assessment,
    Decision,
    Policy,
    assess,
    policy_values,
)
from streams.engine import build_flow
from streams.features import StreamFeatures, event_of
from streams.models_watch import Scores
from streams.policy_watch import PolicyWatcher
from streams.screening import PENDING_REVIEWS_MAX, screen
from streams.settings import StreamSettings
from streams.terminals import TerminalBook
from streams.wallet_state import WalletState

D = Decimal
W = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
AT = datetime(2026, 3, 5, 3, 0, tzinfo=UTC)


def features(item: TransactionRequested) -> dict[str, float]:
    """The engine's features of a first request (no history)."""
    return StreamFeatures().features(event_of(item), None, None)


def scored(score: float) -> Scores:
    return Scores(score, "test v1")


def request(amount: str = "50", kind: TransactionType = TransactionType.PAYMENT, **more: object):
    return TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=W,
        destination_wallet_id=uuid.uuid4(),
        amount=D(amount),
        fee_amount=D("0"),
        total_amount=D(amount),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=AT,
        **more,
    )


def funded() -> WalletState:
    state = WalletState()
    state.credit(D("100000"))
    return state


def policy(*rules: tuple[str, str, str], version: int = 1, review: int = 60, decline: int = 85):
    text = json.dumps(
        {
            "version": version,
            "review_threshold": review,
            "decline_threshold": decline,
            "rules": [{"name": n, "when": w, "action": a} for n, w, a in rules],
        }
    )
    return load_policy(text, FEATURE_NAMES)


def test_the_default_policy_decides_like_the_old_thresholds() -> None:
    old, new = Policy(0.6, 0.85), default_policy(0.6, 0.85)
    for score in (0.0, 0.3, 0.5999999, 0.6, 0.7, 0.8499999, 0.85, 0.9, 1.0):
        before = assess(request(), features(request()), scored(score), old)
        after = assess(request(), features(request()), scored(score), new)
        assert (after.decision, after.risk_score) == (before.decision, before.risk_score)
        assert after.rule is None and after.policy_version == 0


def test_a_rule_declines_and_is_named_in_the_reason() -> None:
    rules = policy(("night-big", "hour < 5 and amount >= 1000", "decline"))
    assessment = assess(request("1500"), features(request("1500")), scored(0.1), rules)
    assert (assessment.decision, assessment.rule, assessment.policy_version) == (
        Decision.DECLINE,
        "night-big",
        1,
    )
    outcome = screen(request("1500"), funded(), assessment=assessment)
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.command.reason_code == RejectReason.FRAUD_DECLINED.value
    assert outcome.command.reason_message == "policy v1 rule 'night-big' (risk score 10.00)"
    assert assess(request("999"), features(request("999")), scored(0.1), rules).decision is (
        Decision.APPROVE
    )


def test_an_approve_rule_overrides_the_score_and_a_review_rule_holds() -> None:
    rules = policy(
        ("small-deposits", "transaction_type == 'DEPOSIT' and amount < 100", "approve"),
        ("web-payments", "channel == 'web' and risk_score >= 20", "review"),
    )
    deposit = request("50", TransactionType.DEPOSIT)
    assert assess(deposit, features(deposit), scored(0.99), rules).decision is Decision.APPROVE
    web = request("50", metadata={"channel": "web"})
    assessment = assess(web, features(web), scored(0.2), rules)
    assert (assessment.decision, assessment.rule) == (Decision.REVIEW, "web-payments")
    assert isinstance(screen(web, funded(), assessment=assessment).command, ReviewRequested)
    pos = request("50", metadata={"channel": "pos"})
    assert assess(pos, features(pos), scored(0.2), rules).decision is Decision.APPROVE


def test_a_rule_review_with_a_full_queue_declines_and_says_why() -> None:
    assessment = Assessment(0.2, Decision.REVIEW, "web-payments", 4)
    outcome = screen(request(), funded(), assessment=assessment, reviews_open=PENDING_REVIEWS_MAX)
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.command.reason_message == (
        "policy v4 rule 'web-payments' asks for a review, and the wallet's review queue is full"
    )


def test_a_rule_reading_no_name_decides_too() -> None:
    everything = policy(("freeze", "true", "review"))
    assessment = assess(request(), features(request()), scored(0.0), everything)
    assert (assessment.decision, assessment.rule) == (Decision.REVIEW, "freeze")


def test_a_failing_rule_does_not_match_and_is_reported() -> None:
    rules = policy(("ratio", "amount / terminal_nb_30d > 10", "decline"))
    assessment = assess(request(), features(request()), scored(0.1), rules)
    assert (assessment.decision, assessment.failed_rules) == (Decision.APPROVE, ("ratio",))


def test_policy_values_are_exact_and_only_the_names_read() -> None:
    r = request("12.34", metadata={"channel": "pos"})
    x = features(r)
    names = frozenset({"amount", "log_amount", "channel", "transaction_type", "risk_score"})
    values = policy_values(r, x, D("87.50"), names)
    assert values == {
        "amount": D("12.34"),
        "log_amount": D(repr(x["log_amount"])),
        "channel": "pos",
        "transaction_type": "PAYMENT",
        "risk_score": D("87.50"),
    }
    assert policy_values(request(), x, D(0), frozenset({"channel"})) == {"channel": ""}


# Hot reload.


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """As an operator should: write beside, rename over."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def policy_json(version: int, *rules: tuple[str, str, str], decline: int = 85) -> str:
    return json.dumps(
        {
            "version": version,
            "review_threshold": 60,
            "decline_threshold": decline,
            "rules": [{"name": n, "when": w, "action": a} for n, w, a in rules],
        }
    )


@pytest.fixture
def watched(tmp_path: Path) -> tuple[PolicyWatcher, Path, Clock]:
    path, clock = tmp_path / "policy.json", Clock()
    write(path, policy_json(1))
    watcher = PolicyWatcher(path, default_policy(0.6, 0.85), FEATURE_NAMES, 1.0, clock)
    return watcher, path, clock


def test_a_new_valid_policy_comes_into_force_within_the_interval(watched) -> None:  # noqa: ANN001
    watcher, path, clock = watched
    assert watcher.policy.version == 1
    write(path, policy_json(2, ("big", "amount > 100", "decline")))
    clock.now = 0.5
    assert watcher.poll() is False and watcher.policy.version == 1  # not checked yet
    clock.now = 1.0
    assert watcher.poll() is True
    assert (watcher.policy.version, watcher.policy.rules[0].name) == (2, "big")
    clock.now = 2.0
    assert watcher.poll() is False  # unchanged


def test_a_malformed_policy_is_refused_and_the_running_one_stays(
    watched,  # noqa: ANN001
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher, path, clock = watched
    running = watcher.policy
    for n, bad in enumerate(
        (
            "{ half a file",
            policy_json(2, ("evil", "__import__('os')", "approve")),
            policy_json(2, ("typo", "amount > ", "decline")),
            policy_json(2, decline=101),
        ),
        start=1,
    ):
        write(path, bad)
        clock.now = float(n)
        with caplog.at_level(logging.ERROR, logger="streams.policy"):
            assert watcher.poll() is False
        assert watcher.policy is running
        assert watcher.refused is not None and str(path) in watcher.refused
    assert "policy refused, v1 stays in force" in caplog.text
    assert "rule #1 'typo': 'when' at column 10" in caplog.text
    caplog.clear()
    clock.now = 10.0
    with caplog.at_level(logging.ERROR, logger="streams.policy"):
        assert watcher.poll() is False
    assert caplog.text == ""  # judged once, not logged every second
    write(path, policy_json(2))
    clock.now = 11.0
    assert watcher.poll() is True and watcher.refused is None


def test_an_older_or_equal_version_is_refused(watched) -> None:  # noqa: ANN001
    watcher, path, clock = watched
    write(path, policy_json(1, ("x", "amount > 1", "review")))
    clock.now = 1.0
    assert watcher.poll() is False and watcher.policy.rules == ()
    assert "version 1 is not newer than the running version 1" in (watcher.refused or "")


def test_a_vanished_file_keeps_the_running_policy(watched) -> None:  # noqa: ANN001
    watcher, path, clock = watched
    original = path.read_text()
    path.unlink()
    clock.now = 1.0
    assert watcher.poll() is False and watcher.policy.version == 1
    assert "cannot read the policy file" in (watcher.refused or "")
    write(path, original)  # restored as it was: nothing to refuse
    clock.now = 2.0
    assert watcher.poll() is False and watcher.refused is None


def test_without_a_file_the_fallback_stays_and_no_file_is_read() -> None:
    watcher = PolicyWatcher(None, default_policy(0.6, 0.85), FEATURE_NAMES, 0.1, Clock())
    assert watcher.poll() is False and watcher.policy.version == 0


def test_a_worker_refuses_to_start_on_a_malformed_or_missing_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(policy_json(1, ("typo", "count_1hr > 3", "decline")))
    settings = StreamSettings(kafka_bootstrap="127.0.0.1:1", policy_file=path)
    book = TerminalBook(StreamFeatures())
    with pytest.raises(PolicyError, match="unknown name 'count_1hr'"):
        build_flow(settings, book)
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        build_flow(settings.model_copy(update={"policy_file": tmp_path / "missing.json"}), book)
    path.write_text(policy_json(3))
    assert build_flow(settings, book).policies.policy.version == 3
