"""The fraud simulator: seeded and deterministic, each scenario present with its signature,
labels that match the ground truth, and labelled files that ``models.dataset`` reads back."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from domain.transactions import TransactionType
from models import dataset
from models.exceptions import DatasetError, ScenarioError
from models.scenarios import (
    ACCOUNT_TAKEOVER,
    CARD_TESTING,
    COMPROMISED_CUSTOMER,
    COMPROMISED_TERMINAL,
    DAY_S,
    DISPUTE_WINDOW_S,
    HOUR_S,
    LABEL_DELAY_MAX_S,
    LABEL_DELAY_MIN_S,
    REPORTING_THRESHOLD,
    SCENARIOS,
    STRUCTURING,
    STRUCTURING_FLOOR,
    ScenarioConfig,
    SimTransaction,
    Simulator,
    to_frame,
)

CONFIG = ScenarioConfig(customers=60, merchants=6, seed=11)


@pytest.fixture(scope="module")
def week() -> list[SimTransaction]:
    return Simulator(CONFIG).transactions(7)


def by_scenario(transactions: list[SimTransaction], scenario: str) -> list[SimTransaction]:
    return [t for t in transactions if t.scenario == scenario]


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    first = list(itertools.islice(Simulator(CONFIG).traffic(), 3000))
    again = list(itertools.islice(Simulator(CONFIG).traffic(), 3000))
    other = list(itertools.islice(Simulator(ScenarioConfig(60, 6, seed=12)).traffic(), 3000))
    assert first == again
    assert Simulator(CONFIG).openings() == Simulator(CONFIG).openings()
    assert [(t.payer, t.amount) for t in first] != [(t.payer, t.amount) for t in other]


def test_traffic_is_in_time_order_with_consecutive_positions(week: list) -> None:
    assert [t.seq for t in week] == list(range(len(week)))
    times = [t.time_s for t in week]
    assert times == sorted(times)
    assert times[-1] < 7 * DAY_S
    openings = Simulator(CONFIG).openings()
    assert all(t.time_s < 0 and t.transaction_type is TransactionType.DEPOSIT for t in openings)


def test_every_scenario_is_present_on_day_one() -> None:
    day_one = Simulator(CONFIG).transactions(1)
    assert {t.scenario for t in day_one if t.is_fraud} == set(SCENARIOS)


def test_labels_match_the_ground_truth_and_arrive_late(week: list) -> None:
    assert all(t.is_fraud == (t.scenario is not None) for t in week)
    for t in week:
        if t.is_fraud:
            assert LABEL_DELAY_MIN_S <= t.label_delay_s <= LABEL_DELAY_MAX_S
        else:
            assert DISPUTE_WINDOW_S <= t.label_delay_s < DISPUTE_WINDOW_S + 6 * HOUR_S
    # Frauds are reported before the all-clear of legitimate ones, most of the time.
    frauds = [t.label_delay_s for t in week if t.is_fraud]
    assert statistics.median(frauds) < DISPUTE_WINDOW_S
    share = len(frauds) / len(week)
    assert 0.005 < share < 0.15


def test_no_fraud_when_switched_off() -> None:
    calm = Simulator(ScenarioConfig(60, 6, seed=11, fraud=False)).transactions(3)
    assert not any(t.is_fraud for t in calm)


def test_card_testing_is_a_burst_of_tiny_online_payments_on_one_wallet(week: list) -> None:
    tests = [t for t in by_scenario(week, CARD_TESTING) if t.amount < 3]
    by_victim = defaultdict(list)
    for t in tests:
        by_victim[t.payer].append(t)
    assert by_victim
    customers = {c.id: c for c in Simulator(CONFIG).population.customers}
    for victim, burst in by_victim.items():
        assert len(burst) >= 12
        assert all(
            t.transaction_type is TransactionType.PAYMENT and t.channel == "WEB" for t in burst
        )
        assert all(Decimal("0.50") <= t.amount <= Decimal("2.99") for t in burst)
        assert all(t.device_id not in customers[victim].devices for t in burst)
        # The burst fits in minutes: at most 60 s between two tests.
        times = sorted(t.time_s for t in burst)
        assert max(b - a for a, b in itertools.pairwise(times)) <= 60 or len(burst) > 40


def test_structuring_deposits_stay_just_under_the_threshold(week: list) -> None:
    deposits = by_scenario(week, STRUCTURING)
    assert deposits
    assert all(t.transaction_type is TransactionType.DEPOSIT for t in deposits)
    assert all(STRUCTURING_FLOOR <= t.amount < REPORTING_THRESHOLD for t in deposits)
    per_customer = defaultdict(list)
    for t in deposits:
        per_customer[t.payee].append(t.time_s)
    # 3 to 6 deposits over a day or two (an incident near the end of the week is cut short).
    assert all(len(times) >= 3 for times in per_customer.values() if min(times) < 5 * DAY_S)
    # Nobody legitimate deposits in that band so often.
    legit_in_band = [
        t
        for t in week
        if not t.is_fraud
        and t.transaction_type is TransactionType.DEPOSIT
        and STRUCTURING_FLOOR <= t.amount < REPORTING_THRESHOLD
        and t.description != "opening deposit"
    ]
    assert len(legit_in_band) < len(deposits)


def test_account_takeover_moves_money_to_a_mule_who_cashes_out(week: list) -> None:
    sim = Simulator(CONFIG)
    mules = {m.id for m in sim.population.mules}
    customers = {c.id: c for c in sim.population.customers}
    frauds = by_scenario(week, ACCOUNT_TAKEOVER)
    transfers = [t for t in frauds if t.transaction_type is TransactionType.TRANSFER]
    assert transfers
    for transfer in transfers:
        assert transfer.payer in customers and transfer.payee in mules
        assert transfer.device_id not in customers[transfer.payer].devices  # a new device
        assert transfer.ip != customers[transfer.payer].ip
        cash = [
            t
            for t in frauds
            if t.transaction_type is TransactionType.WITHDRAWAL
            and t.payer == transfer.payee
            and transfer.time_s < t.time_s <= transfer.time_s + 9 * HOUR_S
        ]
        assert cash, "a takeover without its cash-out"
        assert sum(t.amount for t in cash) <= transfer.amount
        assert all(t.amount % 20 == 0 and t.channel == "ATM" for t in cash)


def test_a_compromised_terminal_is_fraudulent_for_days(week: list) -> None:
    frauds = by_scenario(week, COMPROMISED_TERMINAL)
    terminals = {t.terminal_id for t in frauds}
    assert terminals
    for terminal in terminals:
        hits = [t.time_s for t in frauds if t.terminal_id == terminal]
        first, last = min(hits), max(hits)
        during = [t for t in week if t.terminal_id == terminal and first <= t.time_s <= last]
        assert all(t.scenario == COMPROMISED_TERMINAL for t in during)  # all of them
    longest = max(
        max(t.time_s for t in frauds if t.terminal_id == terminal)
        - min(t.time_s for t in frauds if t.terminal_id == terminal)
        for terminal in terminals
    )
    assert longest > DAY_S


def test_a_compromised_customer_pays_inflated_amounts(week: list) -> None:
    frauds = by_scenario(week, COMPROMISED_CUSTOMER)
    assert frauds
    for victim in {t.payer for t in frauds}:
        stolen = [t.amount for t in frauds if t.payer == victim]
        own = [
            t.amount
            for t in week
            if t.payer == victim
            and not t.is_fraud
            and t.transaction_type is TransactionType.PAYMENT
        ]
        assert all(a % Decimal("0.05") == 0 for a in stolen)  # 5 x a whole-cent amount
        if own:
            assert statistics.median(stolen) > 2 * statistics.median(own)


def test_daily_rhythm_and_realistic_amounts(week: list) -> None:
    homes = {c.id: c.home_hour for c in Simulator(CONFIG).population.customers}
    normal = [t for t in week if not t.is_fraud and t.payer in homes and t.time_s >= 0]
    near = 0
    for t in normal:
        hour = (t.time_s % DAY_S) / HOUR_S
        distance = abs(hour - homes[t.payer])
        near += min(distance, 24 - distance) <= 6
    assert near / len(normal) > 0.85
    pos = [t.amount for t in normal if t.channel == "POS"]
    assert Decimal(10) < statistics.median(pos) < Decimal(60)
    assert max(pos) > 5 * statistics.median(pos)  # a long right tail
    for t in week:
        assert t.amount > 0 and t.amount == t.amount.quantize(Decimal("0.01"))


def test_requests_carry_channel_facts_but_never_the_label(week: list) -> None:
    for t in week[:500]:
        metadata = t.metadata()
        assert metadata["channel"] in {"POS", "WEB", "APP", "ATM", "BANK"}
        assert metadata["ip"]
        assert len(metadata) <= 32
        assert all(isinstance(v, str) for v in metadata.values())
        assert not {"label", "is_fraud", "scenario"} & set(metadata)
    assert any("device_id" in t.metadata() for t in week)
    assert any("terminal_id" in t.metadata() for t in week)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ScenarioError):
        Simulator(ScenarioConfig(customers=0))
    with pytest.raises(ScenarioError):
        ScenarioConfig(fraud_rate_scale=-1)
    with pytest.raises(ScenarioError):
        Simulator(CONFIG).transactions(0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_labelled_file_round_trips_through_the_dataset_loader(
    week: list, tmp_path: Path, suffix: str
) -> None:
    frame = to_frame(week, datetime(2026, 3, 2), CONFIG.seed)
    path = dataset.write(frame, tmp_path / f"sim{suffix}")
    loaded = dataset.load(path)
    assert len(loaded) == len(week)
    assert loaded["transaction_id"].is_unique
    rows = loaded.set_index("transaction_id")
    for t in week[::97]:
        row = rows.loc[f"sim{CONFIG.seed}-{t.seq:09d}"]
        assert row["label"] == int(t.is_fraud)
        assert Decimal(str(row["amount"])) == t.amount
        assert row["customer_id"] == t.key_actor
        assert row["terminal_id"] == t.counterparty
        assert (row["scenario"] if isinstance(row["scenario"], str) else "") == (t.scenario or "")
        assert row["time_s"] == int(datetime(2026, 3, 2, tzinfo=UTC).timestamp()) + t.time_s
    assert int(loaded["label"].sum()) == sum(t.is_fraud for t in week)


def test_a_file_with_an_unknown_suffix_is_refused(week: list, tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        dataset.write(to_frame(week[:10], datetime(2026, 3, 2), 1), tmp_path / "x.txt")


def test_walletpipe_simulate_out_writes_the_same_file_for_the_same_seed(tmp_path: Path) -> None:
    from walletpipe.cli import main

    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        argv = ["simulate", "--out", str(path), "--days", "2", "--users", "30", "--seed", "5"]
        assert main(argv) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded = dataset.load(paths[0])
    assert set(loaded.loc[loaded["label"] == 1, "scenario"]) == set(SCENARIOS)
    assert loaded["timestamp"].max() < datetime(2026, 1, 7, tzinfo=UTC)
