"""The faust app's declarations: every agent at concurrency 1 (faust-streaming #606), every
table keyed like its co-partitioned topics, and replays recognised."""

from __future__ import annotations

from domain.topics import TERMINAL_ACTIVITY, WALLET_PARTITIONS
from streams.app import TERMINAL_DAYS_PARTITIONS, build_app
from streams.recent import RECENT_DECISIONS_MAX, RecentDecisions
from streams.settings import StreamSettings


def app():  # type: ignore[no-untyped-def]
    return build_app(StreamSettings(kafka_bootstrap="127.0.0.1:1", store="memory://"))


def test_every_agent_runs_one_coroutine() -> None:
    agents = list(app().agents.values())
    assert len(agents) >= 6
    assert {agent.concurrency for agent in agents} == {1}


def test_the_tables_have_the_partition_count_of_their_topics() -> None:
    tables = list(app().tables.values())
    names = ["terminal-days", "terminals", "wallet-history", "wallets"]
    assert sorted(table.name for table in tables) == names
    partitioned = [table for table in tables if table.name != "terminal-days"]
    assert {table.partitions for table in partitioned} == {WALLET_PARTITIONS}
    (published,) = [table for table in tables if table.name == "terminal-days"]
    assert type(published).__name__ == "GlobalTable" and published.use_partitioner
    assert published.partitions == TERMINAL_DAYS_PARTITIONS == 1
    assert TERMINAL_ACTIVITY.partitions == WALLET_PARTITIONS  # the terminals' own topic


def test_recent_decisions_are_bounded_and_round_trip() -> None:
    recent = RecentDecisions()
    for i in range(RECENT_DECISIONS_MAX + 5):
        recent.remember(str(i))
    recent.remember(str(RECENT_DECISIONS_MAX + 4))
    assert len(recent.ids) == RECENT_DECISIONS_MAX
    assert "0" not in recent and str(RECENT_DECISIONS_MAX) in recent
    assert RecentDecisions.from_json(recent.to_json()).ids == recent.ids


def test_an_agent_learns_from_fraud_labels() -> None:
    topics = {agent.channel.get_topic_name() for agent in app().agents.values()}
    assert "fraud.labels" in topics


def test_every_table_reads_back_the_keys_it_writes_to_its_changelog() -> None:
    """A standby copy and a recovery read a table's changelog keys with its key serializer:
    with faust's default (JSON) a wallet table wrote its bytes keys raw and could not read
    them back, and recovery stopped at the first one."""
    faust_app = app()
    serializers = faust_app.serializers
    wallet = b"5b1e0c4e-8d0a-4c3e-9a51-2f0d2b6a4e11"
    # The wallet tables are keyed by the records' keys (bytes), the terminal ones by text.
    keys = {"wallets": wallet, "wallet-history": wallet, "terminals": "T-1", "terminal-days": "T-1"}
    for table in faust_app.tables.values():
        topic = table.changelog_topic
        key = keys[table.name]
        written = serializers.dumps_key(topic.key_type, key, serializer=topic.key_serializer)
        read = serializers.loads_key(topic.key_type, written, serializer=topic.key_serializer)
        assert read == key, table.name
