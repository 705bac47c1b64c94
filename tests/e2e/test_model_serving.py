"""The registry's models in the running stream, with the offline feature code.

A champion and a challenger are trained (``walletpipe simulate --out`` then ``walletpipe
models train`` twice, ``models challengers``) into a temporary registry, and two stream
workers of one app are started with it (``STREAMS_MODELS_DIR``; their own app id and topic
prefix on the test stack's Kafka, so the shared services are not disturbed and the
requests can carry times weeks in the past). Requests spread over 40 days go in one at a
time, with the fraud labels of two of them released 7 days after their transaction:

* every decision carries ``scored_by`` = the champion and a shadow score of the
  challenger, and its ``risk_score`` is the champion's score of the offline features;
* the features the stream stored for each request (its ``t:<id>`` key in the worker's
  changelog) equal ``models.features.replay`` over the same events: customer windows over
  weeks, and terminal counts and fraud shares of days that other wallets' requests (other
  partitions, another worker) and the labels sent as terminal counts;
* promoting the challenger makes it decide within seconds, without a restart.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.topics import (
    LEDGER_COMMANDS,
    REVIEWS_REQUESTED,
    TERMINAL_COUNTS,
    TOPICS,
    TRANSACTIONS_REJECTED,
    WALLET_COMMANDS,
    WALLET_PARTITIONS,
)
from domain.transactions import TransactionType
from models.features import FEATURE_NAMES, Event, replay
from models.registry import Registry
from streams.decided import Decided
from streams.features import event_of
from streams.labels import ONLINE_LABELS_NAME
from streams.models_watch import to_risk_score
from streams.store import WALLET
from tests.helpers import murmur2, ordered_producer
from walletpipe.cli import main as walletpipe
from walletpipe.supervisor import Service, Supervisor

OUTPUTS = (LEDGER_COMMANDS, TRANSACTIONS_REJECTED, REVIEWS_REQUESTED)
WAIT_S = 60.0
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """v1 the champion, v2 a challenger: the same simulated file, two forest seeds."""
    folder = tmp_path_factory.mktemp("models")
    data = folder / "sim.parquet"
    simulate = ["simulate", "--out", str(data), "--days", "22", "--users", "100"]
    assert walletpipe([*simulate, "--merchants", "8", "--seed", "3"]) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WALLETPIPE_MODELS_DIR", str(folder / "registry"))
        for seed in ("0", "1"):
            assert walletpipe(["models", "train", "--data", str(data), "--seed", seed]) == 0
        assert walletpipe(["models", "challengers", "2"]) == 0
    registry = Registry(folder / "registry")
    assert (registry.champion_version("fraud"), registry.challengers("fraud")) == (1, [2])
    return registry


@pytest.fixture(scope="module")
def worker(
    registry: Registry, running: dict[str, str], stack_dir: Path
) -> Iterator[dict[str, str]]:
    """Two stream workers (one app, each with its own data) started with the registry, on
    private topics: a wallet's requests and its terminal's counts may live on different
    workers, as they do in production."""
    name = f"e2e-models-{uuid.uuid4().hex[:8]}"
    prefix = f"{name}-"
    bootstrap = running["KAFKA_BOOTSTRAP"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(prefix + spec.name, spec.partitions, 1) for spec in TOPICS]
    topics += [NewTopic(prefix + spec.dead_letter, 1, 1) for spec in TOPICS]
    for future in admin.create_topics(topics).values():
        future.result(30)
    env = {k: v for k, v in running.items() if not k.startswith("STREAMS_")}
    # Only a certain fraud is declined: every request here must enter the history. An
    # analysts' policy file says so (a champion's own thresholds apply only without one).
    policy = stack_dir / f"{name}-policy.json"
    policy.write_text(
        json.dumps({"version": 1, "review_threshold": 100, "decline_threshold": 100, "rules": []})
    )
    settings = {
        "STREAMS_APP_ID": name,
        "STREAMS_TOPIC_PREFIX": prefix,
        "STREAMS_DATA_DIR": str(stack_dir / name),
        "STREAMS_MODELS_DIR": str(registry.root),
        "STREAMS_MODELS_CHECK_INTERVAL_S": "0.5",
        "STREAMS_POLICY_FILE": str(policy),
        "STREAMS_LOG_LEVEL": "warn",
    }
    services = [
        Service(
            f"{name}-{worker}",
            [sys.executable, "-m", "streams.app"],
            consumer_group=name,
            env={**settings, "STREAMS_DATA_DIR": str(stack_dir / name / worker)},
        )
        for worker in ("a", "b")
    ]
    supervisor = Supervisor(env, stack_dir / "logs" / name, Path(__file__).resolve().parents[2])
    supervisor.start(services)
    try:
        supervisor.wait_ready(services)
        deadline = time.monotonic() + WAIT_S
        while len(owners(admin, name, prefix + WALLET_COMMANDS.name)) < 2:
            assert time.monotonic() < deadline, "the two workers did not share the partitions"
            supervisor.check_alive()
            time.sleep(0.5)
        yield {"bootstrap": bootstrap, "prefix": prefix, "app_id": name, "admin": admin}
        supervisor.check_alive()
    finally:
        supervisor.stop()
        shutil.rmtree(stack_dir / name, ignore_errors=True)
        mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(name)]
        for future in admin.delete_topics(mine).values() if mine else ():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


def owners(admin: AdminClient, group: str, topic: str) -> dict[str, set[int]]:
    """Which member of a stable consumer group holds which partitions of ``topic``."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:  # noqa: BLE001 - not yet known to the coordinator
        return {}
    if not str(description.state).endswith("STABLE"):
        return {}
    held = {
        m.member_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
        for m in description.members
    }
    return {member: partitions for member, partitions in held.items() if partitions}


def partition(key: str, partitions: int = WALLET_PARTITIONS) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a key: the Java client's
    and ours."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Kafka:
    """The private worker's topics and tables, read as they change."""

    def __init__(self, worker: dict[str, str]) -> None:
        self.prefix = worker["prefix"]
        self.app_id = worker["app_id"]
        self.bootstrap = worker["bootstrap"]
        self.producer = ordered_producer(self.bootstrap, partitioner="murmur2_random")
        self.outputs = [self.reader(self.prefix + spec.name, spec.partitions) for spec in OUTPUTS]
        self.decided: dict[str, Any] = {}
        self.tables: dict[str, tuple[Consumer, dict[str, Any]]] = {}

    def close(self) -> None:
        for reader in [*self.outputs, *(r for r, _ in self.tables.values())]:
            reader.close()

    def send(self, topic: str, key: str, record: records.Record) -> None:
        self.producer.produce(self.prefix + topic, key=key.encode(), value=records.encode(record))
        assert self.producer.flush(10) == 0

    def reader(self, topic: str, partitions: int) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"t-{uuid.uuid4()}",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        return consumer

    def decisions(self, wanted: set[str]) -> dict[str, Any]:
        """The stream's decision on each wanted transaction, from its output topics."""
        deadline = time.monotonic() + WAIT_S
        while not wanted <= self.decided.keys() and time.monotonic() < deadline:
            for reader in self.outputs:
                for message in reader.consume(500, timeout=0.1):
                    if message.error() is None:
                        record = decode_decision(message.value())
                        self.decided[str(record.transaction_id)] = record
        missing = wanted - self.decided.keys()
        assert not missing, f"no decision for {len(missing)} request(s)"
        return {t: self.decided[t] for t in wanted}

    def state(self, until: Any) -> dict[tuple[str, bytes], bytes]:
        """The worker's state (its changelog: (wallet, key) -> latest value) once ``until``
        holds."""
        topic = f"changelog__{self.app_id}--{self.prefix}{WALLET_COMMANDS.name}--default"
        return self._gather(topic, WALLET_PARTITIONS, until, _state_entry)

    def terminal_counts(self, until: Any) -> dict[str, list[int]]:
        """Every terminal's [transactions, frauds] sent so far, once ``until`` holds."""

        def add(message: Any, totals: dict) -> None:
            counted = records.decode_terminal_counted(message.value())
            total = totals.setdefault(counted.terminal, [0, 0])
            total[0] += counted.transactions
            total[1] += counted.frauds

        topic = self.prefix + TERMINAL_COUNTS.name
        totals = self._gather(topic, TERMINAL_COUNTS.partitions, until, add)
        time.sleep(2.0)  # the workers' reader threads poll the same committed records
        return totals

    def _gather(self, topic: str, partitions: int, until: Any, take: Any) -> Any:
        if topic not in self.tables:
            self.tables[topic] = (self.reader(topic, partitions), {})
        reader, values = self.tables[topic]
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for message in reader.consume(1000, timeout=0.1):
                if message.error() is None and message.value() is not None:
                    take(message, values)
            if until(values):
                return values
        raise AssertionError(f"{topic} never reached the expected state")


def _state_entry(message: Any, values: dict) -> None:
    wallet, _, key = message.key().partition(b"|")
    values[(wallet.decode(errors="replace"), key)] = message.value()


def decode_decision(value: bytes) -> Any:
    if json.loads(value)["kind"] == "ReviewRequested":
        return records.decode_review_requested(value)
    return records.decode_transaction_record(value)


def request(
    source: uuid.UUID | None, destination: uuid.UUID | None, amount: str, at: datetime, **meta: str
) -> records.TransactionRequested:
    return records.TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=TransactionType.PAYMENT if source else TransactionType.DEPOSIT,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=Decimal(amount),
        fee_amount=Decimal(0),
        total_amount=Decimal(amount),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key=str(uuid.uuid4()),
        metadata=meta,
        requested_at=at,
    )


@pytest.fixture
def kafka(worker: dict[str, str]) -> Iterator[Kafka]:
    kafka = Kafka(worker)
    try:
        yield kafka
    finally:
        kafka.close()


def test_the_champion_decides_on_the_offline_features_and_a_challenger_shadows(
    kafka: Kafka, registry: Registry, worker: dict[str, Any]
) -> None:
    # Ann's requests go to one worker, Bob's to the other: each reads the POS terminal's
    # counts of the other's requests from the terminal counts topic.
    wallets_by = owners(worker["admin"], worker["app_id"], kafka.prefix + WALLET_COMMANDS.name)
    owner = {p: member for member, held in wallets_by.items() for p in held}
    ann, bob = uuid.uuid4(), uuid.uuid4()
    while owner[partition(str(ann))] == owner[partition(str(bob))]:
        bob = uuid.uuid4()
    shop = uuid.uuid4()
    pos, web = f"POS-{uuid.uuid4().hex[:6]}", f"WEB-{uuid.uuid4().hex[:6]}"
    assert len(wallets_by) == 2
    for wallet in (ann, bob):
        credit = records.WalletCredited(
            wallet_id=wallet,
            transaction_id=uuid.uuid4(),
            amount=Decimal(10_000),
            currency_code="USD",
        )
        kafka.send(WALLET_COMMANDS.name, str(wallet), credit)
    kafka.state(lambda v: {(str(ann), WALLET), (str(bob), WALLET)} <= v.keys())
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    at = lambda days, hour: today - days * DAY + timedelta(hours=hour, microseconds=654_321)  # noqa: E731
    # Phase 1, 40 to 20 days ago: both wallets at both terminals, a deposit, two frauds.
    phase1 = [
        request(None, ann, "900.00", at(40, -3), channel="BANK"),
        request(ann, shop, "12.50", at(39, 1), channel="POS", terminal_id=pos),
        request(bob, shop, "40.00", at(38, 2), channel="POS", terminal_id=pos),
        request(ann, shop, "13.75", at(36, -5), channel="WEB", terminal_id=web),
        request(bob, shop, "7.25", at(33, 4), channel="POS", terminal_id=pos),
        request(ann, shop, "88.00", at(30, 6), channel="POS", terminal_id=pos),
        request(bob, shop, "19.99", at(27, 0), channel="WEB", terminal_id=web),
        request(ann, shop, "5.00", at(25, 3), channel="POS", terminal_id=pos),
        request(bob, shop, "250.00", at(22, -1), channel="POS", terminal_id=pos),
        request(ann, shop, "14.00", at(21, 2), channel="WEB", terminal_id=web),
    ]
    frauds = {phase1[5].transaction_id, phase1[8].transaction_id}  # both at the POS
    labelled_already: set[str] = set()
    # Phase 2, 9 to 3 days ago: terminal features read phase 1's days and labels.
    phase2 = [
        request(ann, shop, "16.00", at(9, 1), channel="POS", terminal_id=pos),
        request(bob, shop, "33.00", at(8, 2), channel="WEB", terminal_id=web),
        request(ann, shop, "700.00", at(6, 3), channel="POS", terminal_id=pos),
        request(bob, shop, "9.00", at(4, -2), channel="POS", terminal_id=pos),
        request(ann, uuid.uuid4(), "20.00", at(3, 5), channel="APP"),  # the payee: a terminal
    ]
    # Time runs fast here (40 days in a minute): each request goes in once the terminal
    # counts of the requests (and the labels) before it are published, as they are in
    # production long before the day they are read on. A fraud label goes in when
    # ``replay`` releases it: 7 days after its transaction.
    counted: dict[str, list[int]] = {}  # terminal -> [transactions, frauds] so far

    def published(totals: dict[str, list[int]]) -> bool:
        return all(totals.get(t) == want for t, want in counted.items())

    timeline = sorted(phase1 + phase2, key=lambda r: r.requested_at)
    for item in timeline:
        for fraud in [r for r in timeline if r.transaction_id in frauds]:
            due = fraud.requested_at + 7 * DAY <= item.requested_at
            if due and str(fraud.transaction_id) not in labelled_already:
                labelled_already.add(str(fraud.transaction_id))
                label = records.FraudLabelled(
                    transaction_id=fraud.transaction_id,
                    wallet_id=fraud.source_wallet_id,
                    is_fraud=True,
                    labelled_at=datetime.now(UTC),
                )
                kafka.send(WALLET_COMMANDS.name, str(fraud.source_wallet_id), label)
                counted[fraud.metadata["terminal_id"]][1] += 1
        kafka.terminal_counts(published)
        key = str(item.source_wallet_id or item.destination_wallet_id)
        kafka.send(WALLET_COMMANDS.name, key, item)
        kafka.decisions({str(item.transaction_id)})
        counted.setdefault(event_of(item).terminal, [0, 0])[0] += 1
    kafka.terminal_counts(published)
    assert counted[pos] == [9, 2] and counted[web] == [4, 0]  # both frauds were released
    decided = kafka.decisions({str(r.transaction_id) for r in timeline})

    champion, challenger = registry.load("fraud", 1).model, registry.load("fraud", 2).model
    everything = phase1 + phase2
    for item in everything:
        decision = decided[str(item.transaction_id)]
        assert isinstance(decision, records.PostTransaction), decision
        assert decision.scored_by == "fraud v1"
        # The registry's challenger, and the label-trained online model beside the champion.
        assert set(decision.shadow_scores) == {"fraud v2", ONLINE_LABELS_NAME}

    # What the stream stored for each request, against the offline replay of the same events.
    ordered = sorted(everything, key=lambda r: r.requested_at)
    labelled = [(event_of(r), r.transaction_id in frauds) for r in ordered]
    first = Event(int(ordered[0].requested_at.timestamp()), str(ann), str(ann), 900.0)
    assert labelled[0][0] == first  # a deposit without a terminal: the payee, its own wallet
    offline = dict(zip((str(r.transaction_id) for r in ordered), replay(labelled, 7), strict=True))
    keys = {
        (str(r.source_wallet_id or r.destination_wallet_id), f"t:{r.transaction_id}".encode())
        for r in everything
    }
    state = kafka.state(lambda values: keys <= values.keys())
    stored: dict[str, dict[str, float]] = {}
    for wallet, key in keys:
        features = Decided.decode(state[(wallet, key)]).features_for(FEATURE_NAMES)
        assert features is not None
        stored[key[2:].decode()] = features
    for item in everything:
        transaction_id = str(item.transaction_id)
        x = offline[transaction_id]
        assert stored[transaction_id] == x  # exact: what the model scored
        decision = decided[transaction_id]
        assert decision.risk_score == to_risk_score(champion.score_one(x))
        assert decision.shadow_scores["fraud v2"] == to_risk_score(challenger.score_one(x))
    late = offline[str(phase2[2].transaction_id)]  # at the POS, 6 days ago
    assert late["terminal_frauds_30d"] == 2 and late["terminal_nb_30d"] == 6
    assert late["customer_nb_30d"] > 1 and late["new_terminal"] == 0

    # Promote the challenger: it decides within seconds, and nothing is left in shadow.
    registry.promote("fraud", 2)
    deadline = time.monotonic() + 20
    while True:
        probe = request(ann, shop, "1.00", datetime.now(UTC), channel="POS", terminal_id=pos)
        kafka.send(WALLET_COMMANDS.name, str(ann), probe)
        decision = kafka.decisions({str(probe.transaction_id)})[str(probe.transaction_id)]
        if decision.scored_by == "fraud v2" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (decision.scored_by, set(decision.shadow_scores)) == ("fraud v2", {ONLINE_LABELS_NAME})
