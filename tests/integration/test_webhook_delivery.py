"""The delivery scheduler against the real PostgreSQL and a real HTTP receiver: an endpoint
that keeps failing is dead-lettered when its retry window closes and `walletpipe webhooks
redeliver` sends it again; an endpoint whose address is no longer allowed (DNS changed
since it subscribed) is not called at all."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from domain.access import hash_api_key
from domain.webhooks import EventType, WebhookEvent, new_secret
from notifications import store
from notifications.delivery import Scheduler, Sender
from notifications.settings import NotificationSettings
from tests.helpers import make_client, sql
from tests.receiver import Receiver, serving
from walletpipe.cli import main as walletpipe

pytestmark = pytest.mark.integration


def settings_for(database_url: str, **overrides: object) -> NotificationSettings:
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP": "unused:1",
        "retry_base_ms": 50,
        "retry_delay_max_ms": 100,
        "retry_window_s": 1.5,
        "poll_interval_ms": 20,
        "delivery_timeout_ms": 2_000,
        "allow_loopback": True,
        **overrides,
    }
    return NotificationSettings(**values)  # type: ignore[arg-type]


@contextmanager
def scheduling(settings: NotificationSettings) -> Iterator[None]:
    """The service's scheduler in a thread of its own (no consumer: rows are made here)."""
    ready = threading.Event()
    handles: dict[str, object] = {}

    async def serve() -> None:
        stop, wake = asyncio.Event(), asyncio.Event()
        handles.update(loop=asyncio.get_running_loop(), stop=stop)
        async with AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=2, kwargs={"autocommit": True}
        ) as pool:
            sender = Sender(settings, settings.address_policy())
            ready.set()
            try:
                await Scheduler(settings, pool, sender, settings.retry_policy()).run(stop, wake)
            finally:
                await sender.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield
    finally:
        handles["loop"].call_soon_threadsafe(handles["stop"].set)  # type: ignore[attr-defined]
        thread.join(30)


def subscribed(database_url: str, url: str) -> tuple[uuid.UUID, str, uuid.UUID]:
    """A client with an endpoint at ``url``, written as the API would (without its address
    check: the address is what the test is about). Returns client, secret, subscription."""
    key = make_client(database_url)
    ((client_id,),) = sql(
        database_url, "SELECT client_id FROM api_keys WHERE key_hash = %s", (hash_api_key(key),)
    )
    secret, subscription_id = new_secret(), uuid.uuid4()
    sql(
        database_url,
        "INSERT INTO webhook_subscriptions (subscription_id, client_id, url, event_types, secret)"
        " VALUES (%s, %s, %s, %s, %s)",
        (subscription_id, client_id, url, ["transaction.completed"], secret),
    )
    return client_id, secret, subscription_id


def an_event(database_url: str, client_id: uuid.UUID) -> WebhookEvent:
    transaction_id = uuid.uuid4()
    event = WebhookEvent(
        event_id=uuid.uuid4(),
        event_type=EventType.TRANSACTION_COMPLETED,
        client_id=client_id,
        transaction_id=transaction_id,
        occurred_at=datetime.now(UTC).isoformat(),
        data={"transaction_id": str(transaction_id), "amount": "1.0000"},
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert store.store_deliveries(conn, [(event, client_id)]) == 1
        # The same event read again (a replay) makes no second delivery.
        assert store.store_deliveries(conn, [(event, client_id)]) == 0
    return event


def delivery_of(database_url: str, event: WebhookEvent) -> tuple[str, int, str | None]:
    ((status, attempts, error),) = sql(
        database_url,
        "SELECT status, attempts, last_error FROM webhook_deliveries WHERE event_id = %s",
        (event.event_id,),
    )
    return status, attempts, error


def wait_status(database_url: str, event: WebhookEvent, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while delivery_of(database_url, event)[0] != status:
        assert time.monotonic() < deadline, delivery_of(database_url, event)
        time.sleep(0.05)


def test_a_failing_endpoint_is_dead_lettered_then_redelivered(
    stack: dict[str, str],
    stack_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database_url = stack["DATABASE_URL"]
    with serving(Receiver(fail_first=1_000_000)) as receiver:
        client_id, receiver.secret, subscription_id = subscribed(database_url, receiver.url)
        event = an_event(database_url, client_id)
        with scheduling(settings_for(database_url)):
            wait_status(database_url, event, "DEAD")
        status, attempts, error = delivery_of(database_url, event)
        # Retried until the window closed (how often depends on the box; tests/e2e counts).
        assert attempts >= 1 and error is not None and error.startswith("HTTP 500")
        assert receiver.delivered == [] and receiver.forged == []

        monkeypatch.setenv("WALLETPIPE_LOCAL_DIR", str(stack_dir))
        monkeypatch.setenv("DATABASE_URL", database_url)
        assert walletpipe(["webhooks", "deliveries", str(subscription_id), "--status", "dead"]) == 0
        assert str(event.event_id) in capsys.readouterr().out

        receiver.fail_first = 0  # the endpoint is fixed
        assert walletpipe(["webhooks", "redeliver", str(subscription_id), "--all-dead"]) == 0
        assert "1 deliveries due again" in capsys.readouterr().out
        with scheduling(settings_for(database_url)):
            wait_status(database_url, event, "DELIVERED")
        (received,) = receiver.delivered
        assert received.event["id"] == str(event.event_id) and received.signed
        assert walletpipe(["webhooks", "list", "--client-id", str(client_id)]) == 0
        assert str(subscription_id) in capsys.readouterr().out


def test_an_address_no_longer_allowed_is_not_called(stack: dict[str, str]) -> None:
    database_url = stack["DATABASE_URL"]
    with serving(Receiver()) as receiver:
        client_id, receiver.secret, _ = subscribed(database_url, receiver.url)
        event = an_event(database_url, client_id)
        # The operator no longer allows loopback: the subscribed endpoint now resolves to
        # an address the service may not call, as after a DNS change.
        with scheduling(settings_for(database_url, allow_loopback=False)):
            wait_status(database_url, event, "DEAD")
        assert "which this service may not call" in (delivery_of(database_url, event)[2] or "")
        assert receiver.attempts == {}


def test_an_endpoints_backlog_is_bounded(stack: dict[str, str]) -> None:
    database_url = stack["DATABASE_URL"]
    client_id, _, subscription_id = subscribed(database_url, "http://127.0.0.1:9/never")
    first, second = an_event(database_url, client_id), an_event(database_url, client_id)
    third = WebhookEvent(**{**first.__dict__, "event_id": uuid.uuid4()})
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert store.store_deliveries(conn, [(third, client_id)], pending_max=2) == 1
    assert delivery_of(database_url, second)[0] == "PENDING"
    status, attempts, error = delivery_of(database_url, third)
    assert (status, attempts) == ("DEAD", 0)
    assert error == "the endpoint had 2 deliveries pending already"
    sql(
        database_url,
        "UPDATE webhook_subscriptions SET deleted_at = now() WHERE subscription_id = %s",
        (subscription_id,),
    )
    sql(
        database_url,
        "UPDATE webhook_deliveries SET status = 'DEAD' WHERE subscription_id = %s",
        (subscription_id,),
    )
