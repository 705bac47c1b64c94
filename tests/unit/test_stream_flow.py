"""streams.flow: every kind of wallet.commands record through a partition's state, without
Kafka (the store is a dict with the quix-streams transaction's face)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import records
from domain.limits import KycStatus, LimitPeriod, LimitScope
from domain.records import (
    ClockTicked,
    DuplicateDiscarded,
    FraudLabelled,
    LimitSpec,
    PostTransaction,
    ReviewDecided,
    ReviewRequested,
    TerminalCounted,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
    TransactionRequested,
    WalletCredited,
    WalletLimitsChanged,
)
from domain.topics import LEDGER_COMMANDS, TERMINAL_COUNTS, TRANSACTIONS_REQUESTED
from domain.transactions import TransactionType
from models.online import OnlineClassifier
from models.policy import default_policy
from streams.decided import Decided, Status
from streams.exceptions import RecordRefused, UnknownLabelledTransaction, WalletInvariantError
from streams.features import StreamFeatures
from streams.flow import Flow, FlowSettings, Output
from streams.labels import LabelLearning
from streams.limits import DefaultLimits
from streams.models_watch import Scores
from streams.screening import Timeouts
from streams.store import CUSTOMER, PARTITION, WALLET, WalletValue, decided_key
from streams.terminals import TerminalBook

W = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
SHOP = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
KEY = str(W).encode()
START = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
D = Decimal


class MemoryStore:
    """The methods of quix-streams' PartitionTransaction the flow uses."""

    def __init__(self) -> None:
        self.values: dict[tuple[bytes, bytes], bytes] = {}

    def get_bytes(self, key: bytes, prefix: bytes) -> bytes | None:
        return self.values.get((prefix, key))

    def set_bytes(self, key: bytes, value: bytes, prefix: bytes) -> None:
        assert isinstance(value, bytes)
        self.values[(prefix, key)] = value

    def delete(self, key: bytes, prefix: bytes) -> None:
        self.values.pop((prefix, key), None)


@dataclass
class FixedModels:
    score_to_give: float = 0.1

    def score(self, _x: dict) -> Scores:
        return Scores(self.score_to_give, "test model")

    def poll(self) -> bool:
        return False


@dataclass
class FixedPolicy:
    policy: object = field(default_factory=lambda: default_policy(0.6, 0.85))

    def poll(self) -> bool:
        return False


@dataclass
class Clock:
    now: datetime = START

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)


SETTINGS = FlowSettings(
    timeouts=Timeouts(review=timedelta(minutes=5), command=timedelta(minutes=10)),
    default_limits=DefaultLimits(),
    grace_ms=60_000,
    retention_ms=86_400_000,
    terminal_flush_ms=500,
    clock_buckets_max=500_000,  # a day of buckets in one tick (the worker spreads them)
)


class Partition:
    def __init__(self, score: float = 0.1) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.models = FixedModels(score)
        self.learning = LabelLearning(OnlineClassifier())
        self.flow = Flow(
            SETTINGS,
            self.models,  # type: ignore[arg-type]
            FixedPolicy(),  # type: ignore[arg-type]
            StreamFeatures(),
            self.learning,
            TerminalBook(StreamFeatures()),
            clock_ms=self.clock.ms,
        )

    def send(self, record: records.Record, key: bytes = KEY) -> list[Output]:
        return self.flow.handle(self.store, 0, key, record, records.encode(record))

    def tick(self) -> list[Output]:
        return self.send(ClockTicked(partition=0, ticked_at=self.clock.now), b"\x00clock")

    def wallet(self, key: bytes = KEY) -> WalletValue:
        return WalletValue.decode(self.store.get_bytes(WALLET, key))

    def decided(self, item: TransactionRequested) -> Decided | None:
        stored = self.store.get_bytes(decided_key(str(item.transaction_id)), KEY)
        return None if stored is None else Decided.decode(stored)

    def fund(self, amount: str = "1000") -> None:
        credit = WalletCredited(
            wallet_id=W, transaction_id=uuid.uuid4(), amount=D(amount), currency_code="USD"
        )
        self.send(credit)


def request(
    amount: str,
    kind: TransactionType = TransactionType.TRANSFER,
    fee: str = "0",
    terminal: str = "T-1",
) -> TransactionRequested:
    deposit = kind is TransactionType.DEPOSIT
    return TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=None if deposit else W,
        destination_wallet_id=W if deposit else SHOP,
        amount=D(amount),
        fee_amount=D(fee),
        total_amount=D(amount) + D(fee),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=START,
        metadata={"terminal_id": terminal},
    )


def posted(item: TransactionRequested, captured: str | None = None) -> TransactionPosted:
    return TransactionPosted(
        **item.facts(),
        completed_at=START,
        captured_amount=None if captured is None else D(captured),
    )


def failed(item: TransactionRequested, code: str = "GATEWAY_DECLINED") -> TransactionFailed:
    return TransactionFailed(**item.facts(), reason_code=code, reason_message="no", failed_at=START)


def decisions(outputs: list[Output]) -> list[records.Record]:
    return [
        records.decode_wallet_command(o.value)
        if o.topic is TRANSACTIONS_REQUESTED
        else _decision(o.value)
        for o in outputs
        if o.topic is not TERMINAL_COUNTS
    ]


def _decision(value: bytes) -> records.Record:
    for decode in (records.decode_ledger_input, records.decode_review_requested):
        try:
            return decode(value)
        except Exception:  # noqa: BLE001 - try the next kind
            continue
    raise AssertionError(value)


# ---- requests ---------------------------------------------------------------------------


def test_an_approved_request_holds_the_total_sends_the_command_and_forwards_the_request() -> None:
    part = Partition()
    part.fund("100")
    item = request("40", fee="1")
    outputs = part.send(item)
    assert [o.topic for o in outputs] == [LEDGER_COMMANDS, TRANSACTIONS_REQUESTED]
    command = decisions(outputs)[0]
    assert isinstance(command, PostTransaction) and command.facts() == item.facts()
    assert command.expires_at == START + timedelta(minutes=10)
    assert outputs[1].value == records.encode(item)  # forwarded as it came
    wallet = part.wallet().state
    assert (wallet.available, wallet.reserved, wallet.holds_open) == (D("59"), D("41"), 1)
    decided = part.decided(item)
    assert decided is not None and (decided.status, decided.held) == (Status.SENT, D("41"))


def test_a_replayed_request_is_recognised_by_its_id_and_changes_nothing() -> None:
    part = Partition()
    part.fund("100")
    item = request("40")
    part.send(item)
    before = dict(part.store.values)
    assert part.send(item) == []
    assert part.store.values == before
    part.send(posted(item))
    assert part.send(item) == []  # after its outcome too, for the retention
    assert part.wallet().state.available == D("60")


def test_an_overdraft_is_rejected_and_holds_nothing() -> None:
    part = Partition()
    part.fund("10")
    item = request("10.01")
    (rejected,) = decisions(part.send(item))[:1]
    assert isinstance(rejected, TransactionRejected)
    assert rejected.reason_code == "INSUFFICIENT_FUNDS"
    assert part.wallet().state.available == D("10")
    assert part.decided(item).status is Status.REJECTED  # type: ignore[union-attr]


def test_a_record_keyed_by_another_wallet_is_refused_before_anything_changes() -> None:
    part = Partition()
    with pytest.raises(RecordRefused):
        part.send(request("1"), key=str(SHOP).encode())
    assert part.store.values == {}


def test_limits_apply_from_the_wallet_set_and_count_approved_requests() -> None:
    part = Partition()
    part.fund("1000")
    spec = LimitSpec(
        limit_id=uuid.uuid4(),
        scope=LimitScope.WALLET,
        transaction_type=TransactionType.TRANSFER,
        period_type=LimitPeriod.DAILY,
        max_amount=D("100"),
        max_count=10,
    )
    part.send(WalletLimitsChanged(wallet_id=W, user_id=uuid.uuid4(), version=1, limits=[spec]))
    first, second = request("60"), request("60")
    assert isinstance(decisions(part.send(first))[0], PostTransaction)
    over = decisions(part.send(second))[0]
    assert isinstance(over, TransactionRejected) and over.reason_code == "LIMIT_EXCEEDED"
    part.send(failed(first))  # the failure gives the charge back
    assert isinstance(decisions(part.send(request("60")))[0], PostTransaction)


def test_kyc_defaults_apply_on_top() -> None:
    part = Partition()
    part.flow.settings = FlowSettings(
        timeouts=SETTINGS.timeouts,
        clock_buckets_max=SETTINGS.clock_buckets_max,
        default_limits=DefaultLimits.parse(
            {
                "PENDING": [
                    {
                        "transaction_type": "TRANSFER",
                        "period_type": "DAILY",
                        "max_amount": "5.00",
                        "max_count": 1,
                    }
                ]
            }
        ),
    )
    part.fund("100")
    item = request("6").model_copy(update={"kyc_status": KycStatus.PENDING})
    rejected = decisions(part.send(item))[0]
    assert isinstance(rejected, TransactionRejected) and "KYC PENDING" in rejected.reason_message


# ---- ledger outcomes and credits -----------------------------------------------------------


def test_a_posting_settles_exactly_its_hold_and_a_repeat_changes_nothing() -> None:
    part = Partition()
    part.fund("100")
    item = request("40", kind=TransactionType.PAYMENT, fee="2")
    part.send(item)
    part.send(posted(item, captured="30"))  # a partial capture: 32 spent, 10 back
    wallet = part.wallet().state
    assert (wallet.available, wallet.reserved, wallet.holds_open) == (D("68"), 0, 0)
    part.send(posted(item, captured="30"))  # the outbox's redelivery
    assert part.wallet().state == wallet
    assert part.decided(item).status is Status.SETTLED  # type: ignore[union-attr]


def test_a_failure_or_a_discarded_repeat_releases_the_hold_once() -> None:
    for outcome in (failed, lambda i: DuplicateDiscarded(**i.facts(), discarded_at=START)):
        part = Partition()
        part.fund("100")
        item = request("40")
        part.send(item)
        part.send(outcome(item))
        part.send(outcome(item))
        wallet = part.wallet().state
        assert (wallet.available, wallet.reserved, wallet.holds_open) == (D("100"), 0, 0)


def test_a_deposit_is_credited_when_posted_once() -> None:
    part = Partition()
    item = request("75", kind=TransactionType.DEPOSIT)
    assert isinstance(decisions(part.send(item))[0], PostTransaction)
    assert part.wallet().state.available == 0  # nothing counts before the ledger posts
    part.send(posted(item))
    part.send(posted(item))
    assert part.wallet().state.available == D("75")


def test_a_credit_is_applied_once_per_transaction() -> None:
    part = Partition()
    credit = WalletCredited(
        wallet_id=W, transaction_id=uuid.uuid4(), amount=D("5"), currency_code="USD"
    )
    part.send(credit)
    part.send(credit)
    assert part.wallet().state.available == D("5")


def test_an_outcome_for_a_transaction_never_decided_here_is_refused() -> None:
    part = Partition()
    part.fund("100")
    before = dict(part.store.values)
    with pytest.raises(RecordRefused, match="no decision of"):
        part.send(posted(request("40")))
    assert part.store.values == before


@pytest.mark.parametrize("state", ["rejected", "review", "expired", "settled"])
def test_an_outcome_that_does_not_fit_stops_the_worker(state: str) -> None:
    part = Partition(score=0.7 if state == "review" else 0.1)
    part.fund("100" if state != "rejected" else "1")
    item = request("40")
    part.send(item)
    if state == "expired":
        part.clock.now += timedelta(minutes=12)
        part.tick()
    outcome: records.Record = posted(item)
    if state == "settled":
        part.send(posted(item))
        outcome = failed(item)
    before = dict(part.store.values)
    with pytest.raises(WalletInvariantError):
        part.send(outcome)
    assert part.store.values == before


# ---- holds expire ----------------------------------------------------------------------------


def test_a_hold_without_an_outcome_is_released_after_its_deadline_and_grace() -> None:
    part = Partition()
    part.fund("100")
    item = request("40")
    part.send(item)
    part.clock.now += timedelta(minutes=10, seconds=30)  # past the deadline, within the grace
    part.tick()
    assert part.wallet().state.reserved == D("40")
    part.clock.now += timedelta(seconds=31)
    part.tick()
    wallet = part.wallet().state
    assert (wallet.available, wallet.reserved, wallet.holds_open) == (D("100"), 0, 0)
    assert part.decided(item).status is Status.EXPIRED  # type: ignore[union-attr]
    part.send(failed(item, "COMMAND_EXPIRED"))  # the ledger's answer when it reads it late
    assert part.wallet().state == wallet


def test_a_settled_hold_is_not_touched_by_its_deadline() -> None:
    part = Partition()
    part.fund("100")
    item = request("40")
    part.send(item)
    part.send(posted(item))
    part.clock.now += timedelta(minutes=20)
    part.tick()
    assert part.wallet().state.available == D("60")


# ---- reviews -----------------------------------------------------------------------------------


def test_a_review_holds_until_the_first_decision() -> None:
    part = Partition(score=0.7)
    part.fund("100")
    item = request("40")
    held = decisions(part.send(item))[0]
    assert isinstance(held, ReviewRequested)
    assert part.wallet().reviews_open == 1
    approve = ReviewDecided(
        transaction_id=item.transaction_id,
        wallet_id=W,
        decision="APPROVE",
        decided_by="analyst ann",
        decided_at=START,
    )
    command = decisions(part.send(approve))[0]
    assert isinstance(command, PostTransaction) and command.risk_score == held.risk_score
    assert part.send(approve.model_copy(update={"decision": "DECLINE"})) == []
    assert part.wallet().reviews_open == 0 and part.wallet().state.reserved == D("40")
    part.send(posted(item))
    assert part.wallet().state.available == D("60")


def test_a_review_nobody_decides_is_declined_by_the_stream_after_its_deadline() -> None:
    part = Partition(score=0.7)
    part.fund("100")
    item = request("40")
    part.send(item)
    part.clock.now += timedelta(minutes=6, seconds=1)
    (rejected,) = decisions(part.tick())
    assert isinstance(rejected, TransactionRejected) and "review timed out" in (
        rejected.reason_message
    )
    wallet = part.wallet()
    assert (wallet.state.available, wallet.state.reserved, wallet.reviews_open) == (
        D("100"),
        0,
        0,
    )


# ---- labels and terminals ---------------------------------------------------------------------


def test_a_label_is_learnt_once_and_a_fraud_counts_at_its_terminal() -> None:
    part = Partition()
    part.fund("100")
    item = request("40", terminal="T-9")
    part.send(item)
    label = FraudLabelled(
        transaction_id=item.transaction_id, wallet_id=W, is_fraud=True, labelled_at=START
    )
    part.send(label)
    part.send(label)
    assert part.learning.labels == 1
    counts = [o for o in part.tick() if o.topic is TERMINAL_COUNTS]
    assert len(counts) == 1
    counted = records.decode_terminal_counted(counts[0].value)
    assert (counted.terminal, counted.transactions, counted.frauds) == ("T-9", 1, 1)
    with pytest.raises(UnknownLabelledTransaction):
        part.send(label.model_copy(update={"transaction_id": uuid.uuid4()}))


def test_terminal_counts_leave_in_batches_not_per_request() -> None:
    part = Partition()
    part.fund("1000")
    sent: list[Output] = []
    for _ in range(5):
        sent += part.send(request("1", terminal="T-1"))
    assert [o for o in sent if o.topic is TERMINAL_COUNTS] == []
    part.clock.now += timedelta(milliseconds=600)
    batch = [o for o in part.send(request("1", terminal="T-1")) if o.topic is TERMINAL_COUNTS]
    assert len(batch) == 1
    counted = records.decode_terminal_counted(batch[0].value)
    assert isinstance(counted, TerminalCounted) and counted.transactions == 6


# ---- bounded state -----------------------------------------------------------------------------


def test_the_wallet_value_stays_the_same_size_and_old_transactions_are_forgotten() -> None:
    part = Partition()
    part.fund("100000")
    sizes = []
    for n in range(300):
        item = request("1")
        part.send(item)
        part.send(posted(item))
        if n in (20, 299):
            sizes.append(len(part.store.get_bytes(WALLET, KEY) or b""))
    assert sizes[0] == sizes[1]
    assert len(part.store.get_bytes(CUSTOMER, KEY) or b"") < 300 * 40
    transactions = [k for (p, k) in part.store.values if p == KEY and k.startswith(b"t:")]
    assert len(transactions) == 300
    part.clock.now += timedelta(days=1, seconds=2)
    part.tick()
    left = [k for (p, k) in part.store.values if p == KEY and k.startswith(b"t:")]
    assert left == []
    assert [k for (p, k) in part.store.values if p == PARTITION and k.startswith(b"b:")] == []


def test_an_unknown_kind_is_refused() -> None:
    part = Partition()
    with pytest.raises(RecordRefused):
        part.flow.handle(part.store, 0, KEY, object(), b"{}")


def test_a_customer_state_in_memory_is_served_only_while_the_store_holds_its_bytes() -> None:
    part = Partition()
    part.fund("1000")
    part.send(request("5"))
    kept = part.flow.customer(part.store, KEY)
    assert kept is not None and part.flow.customer(part.store, KEY) is kept
    other = Partition()  # another worker's later state of the same wallet
    other.fund("1000")
    other.send(request("5"))
    other.send(request("7"))
    part.store.set_bytes(CUSTOMER, other.store.get_bytes(CUSTOMER, KEY) or b"", KEY)
    fresh = part.flow.customer(part.store, KEY)
    assert fresh is not kept and fresh == other.flow.customer(other.store, KEY)
