"""The faust app: topics and tables declared once, agents that decode → decide → send.

Every topic is raw bytes here; decoding is ours (``domain.records``) so that a record that
does not fit goes to the topic's dead-letter companion instead of crashing an agent. All
input topics are keyed by wallet and share one partition count, so the ``wallet_state``
table is co-partitioned with each of them.

Run: ``python -m streams.app`` (settings from the environment) or ``walletpipe run``.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import faust

from domain import records
from domain.exceptions import RecordDecodeError
from domain.topics import (
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    WALLET_CREDITS,
    WALLET_PARTITIONS,
    TopicSpec,
    dead_letter_headers,
)
from streams.screening import screen
from streams.settings import StreamSettings
from streams.wallet_state import WalletState


def build_app(settings: StreamSettings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=WALLET_PARTITIONS,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        web_enabled=False,
    )

    def topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(spec.name, key_serializer="raw", value_serializer="raw",
                         partitions=spec.partitions)

    requested, commands = topic(TRANSACTIONS_REQUESTED), topic(LEDGER_COMMANDS)
    rejected, ledger_events = topic(TRANSACTIONS_REJECTED), topic(LEDGER_EVENTS)
    wallet_credits = topic(WALLET_CREDITS)
    wallet_state = app.Table("wallet-state", default=None, partitions=WALLET_PARTITIONS,
                             key_type=bytes, value_type=dict)

    def load(wallet_id: uuid.UUID) -> WalletState:
        return WalletState.from_json(wallet_state.get(str(wallet_id).encode()))

    def save(wallet_id: uuid.UUID, state: WalletState) -> None:
        wallet_state[str(wallet_id).encode()] = state.to_json()

    dead_letter_topics = {spec.name: app.topic(spec.dead_letter, key_serializer="raw",
                                               value_serializer="raw")
                          for spec in (TRANSACTIONS_REQUESTED, LEDGER_EVENTS, WALLET_CREDITS)}

    async def dead_letter(event: Any, reason: str) -> None:
        message = event.message
        await dead_letter_topics[message.topic].send(
            key=event.key, value=event.value,
            headers=dead_letter_headers(message.topic, message.partition, message.offset,
                                        reason))

    def wrong_key(event: Any, record: records.TransactionFacts) -> bool:
        # The table lives in the partition of the event: a record keyed by another wallet
        # than its own would read and write the wrong wallet's state.
        return bool(event.key != record.partition_key)

    @app.agent(requested)
    async def screen_requests(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                request = records.decode_requested(event.value)
            except RecordDecodeError as error:
                await dead_letter(event, error.message)
                continue
            if wrong_key(event, request):
                await dead_letter(event, "key is not the wallet whose money moves first")
                continue
            wallet_id = request.source_wallet_id or request.destination_wallet_id
            assert wallet_id is not None
            state = load(wallet_id)
            outcome = screen(request, state)
            if outcome.state_changed:
                save(wallet_id, state)
            if isinstance(outcome.command, records.PostTransaction):
                await commands.send(key=event.key, value=records.encode(outcome.command))
            elif outcome.command is not None:
                await rejected.send(key=event.key, value=records.encode(outcome.command))

    @app.agent(ledger_events)
    async def settle(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                posted = records.decode_ledger_event(event.value)
            except RecordDecodeError as error:
                await dead_letter(event, error.message)
                continue
            if wrong_key(event, posted):
                await dead_letter(event, "key is not the wallet whose money moves first")
                continue
            transaction_id = str(posted.transaction_id)
            source, destination = posted.source_wallet_id, posted.destination_wallet_id
            if not isinstance(posted, records.TransactionPosted):
                if source is not None:  # failed or a discarded repeat: give the hold back
                    state = load(source)
                    if state.release(transaction_id):
                        save(source, state)
                continue
            if source is not None:
                state = load(source)
                if state.settle(transaction_id):
                    save(source, state)
            if destination is None:
                continue
            if source is None:  # a deposit is keyed by its destination: credit it here
                state = load(destination)
                if state.credit(transaction_id, posted.amount):
                    save(destination, state)
            else:  # the destination lives in another partition: re-key the credit to it
                credit = records.WalletCredited(wallet_id=destination,
                                                transaction_id=posted.transaction_id,
                                                amount=posted.amount,
                                                currency_code=posted.currency_code)
                await wallet_credits.send(key=str(destination).encode(),
                                          value=records.encode(credit))

    @app.agent(wallet_credits)
    async def apply_credits(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                credit = records.decode_wallet_credited(event.value)
            except RecordDecodeError as error:
                await dead_letter(event, error.message)
                continue
            if event.key != str(credit.wallet_id).encode():
                await dead_letter(event, "key is not the credited wallet")
                continue
            state = load(credit.wallet_id)
            if state.credit(str(credit.transaction_id), credit.amount):
                save(credit.wallet_id, state)

    return app


def main() -> None:
    settings = StreamSettings()  # type: ignore[call-arg]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.log_level]
    app.main()


if __name__ == "__main__":
    main()
