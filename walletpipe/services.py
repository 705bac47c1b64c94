"""The services ``walletpipe run`` starts, and how to tell that one is serving."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from confluent_kafka.admin import AdminClient


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None = None
    consumer_group: str | None = None
    #: Variables of this service alone (a ledger shard's LEDGER_SHARD).
    env: dict[str, str] | None = None


def ledger_services(env: dict[str, str], python: str) -> list[Service]:
    """One writer per ledger shard (LEDGER_DATABASE_URLS), or the one writer."""
    from domain.shards import split_database_urls

    argv = [python, "-m", "ledger_writer.writer"]
    count = len(split_database_urls(env.get("LEDGER_DATABASE_URLS", "")))
    if count <= 1:
        return [Service("ledger", argv, consumer_group="ledger-writer")]
    return [
        Service(
            f"ledger-{i}",
            argv,
            consumer_group=f"ledger-writer-shard-{i}",
            env={"LEDGER_SHARD": str(i)},
        )
        for i in range(count)
    ]


def services(env: dict[str, str], only: set[str] | None = None) -> list[Service]:
    ingest = urlparse(env["INGEST_URL"])
    python = sys.executable
    all_services = [
        Service(
            "ingest",
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                "ingest_api.app:create_app",
                "--host",
                ingest.hostname or "127.0.0.1",
                "--port",
                str(ingest.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            health_url=f"{env['INGEST_URL']}/health",
        ),
        Service("streams", [python, "-m", "streams.app"], consumer_group="wallet-streams"),
        *ledger_services(env, python),
        # The simulated payment gateway that answers the ledger's two-phase holds.
        Service(
            "gateway", [python, "-m", "ledger_writer.gateway"], consumer_group="payment-gateway"
        ),
        Service(
            "analytics",
            [python, "-m", "analytics.service"],
            health_url=f"{env['ANALYTICS_URL']}/health",
            consumer_group="analytics-sink",
        ),
    ]
    wanted = set(only) if only is not None else None
    if wanted is not None and "ledger" in wanted:  # `--only ledger` means every shard's
        wanted |= {s.name for s in all_services if s.name.startswith("ledger-")}
    return [s for s in all_services if wanted is None or s.name in wanted]


def ready(service: Service, admin: AdminClient) -> bool:
    if service.health_url:
        try:
            with urllib.request.urlopen(service.health_url, timeout=2) as answer:
                if answer.status != 200:
                    return False
        except OSError:
            return False
    if service.consumer_group:
        return group_has_members(admin, service.consumer_group)
    return True


def group_has_members(admin: AdminClient, group: str) -> bool:
    """A consumer group is serving once it is stable with at least one assigned member."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:  # noqa: BLE001 - not yet known to the coordinator
        return False
    stable = str(description.state).endswith("STABLE")
    return stable and any(m.assignment.topic_partitions for m in description.members)
