"""``walletpipe dlq list|replay TOPIC``: show a topic's dead letters, and send chosen ones back.

Every consumer puts a record it cannot decode or apply on ``<topic>.dlq`` with the original
key and bytes and the headers ``dlq.reason``, ``dlq.topic``, ``dlq.partition``,
``dlq.offset`` (``domain.topics.dead_letter_headers``). ``list`` prints them (oldest first,
at most ``--limit``); ``replay`` produces the chosen ones (``--offset``, repeatable, or
``--all``) again to the topic they came from, unchanged, with a header
``dlq.replayed-from`` naming the dead letter. Replay is for a cause that has been fixed
(a label that came before its transaction, a record of a wallet the writer did not know
yet): a record that still cannot be applied is dead-lettered again, with its reason. The
consumers recognise what they applied already (the stream by transaction id, the ledger
by transaction id, analytics by event id), so replaying one twice changes nothing twice.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

#: Dead letters read per command at most (the listing shows the oldest ``--limit``).
READ_MAX = 100_000


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def origin(self) -> str:
        return self.headers.get("dlq.topic", "")

    @property
    def kind(self) -> str:
        """The record's ``kind`` when its value is a JSON object naming one."""
        try:
            decoded = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return "(not JSON)"
        return str(decoded.get("kind", "?")) if isinstance(decoded, dict) else "(not a record)"

    def line(self) -> str:
        where = (
            f"{self.origin}[{self.headers.get('dlq.partition', '?')}]"
            f"@{self.headers.get('dlq.offset', '?')}"
        )
        key = (self.key or b"").decode(errors="replace")
        return f"{self.offset:>8}  {where:<32} {self.kind:<22} {key:<36}  {self.reason}"

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "")


def chosen(letters: Iterable[DeadLetter], offsets: set[int] | None) -> list[DeadLetter]:
    """The dead letters to replay: those at ``offsets`` (None: every one)."""
    return [letter for letter in letters if offsets is None or letter.offset in offsets]


def read_dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    """Every dead letter of ``topic`` (its ``.dlq`` companion, all partitions), oldest first."""
    dlq = f"{topic}.dlq"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"walletpipe-dlq-{uuid.uuid4()}",  # assign() only, never commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(dlq, timeout=10).topics.get(dlq)
        if metadata is None or metadata.error is not None:
            raise SystemExit(f"no topic {dlq}")
        consumer.assign([TopicPartition(dlq, p, 0) for p in metadata.partitions])
        open_partitions, letters = set(metadata.partitions), []
        while open_partitions and len(letters) < READ_MAX:
            for message in consumer.consume(1000, timeout=2.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(message.partition())
                    continue
                headers = {
                    k: (v or b"").decode(errors="replace") for k, v in message.headers() or []
                }
                letters.append(
                    DeadLetter(message.offset(), message.key(), message.value(), headers)
                )
        return letters
    finally:
        consumer.close()


def replay(bootstrap: str, topic: str, letters: list[DeadLetter]) -> int:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "partitioner": "murmur2_random",  # a wallet's key lands where its records do
        }
    )
    for letter in letters:
        producer.produce(
            letter.origin or topic,
            key=letter.key,
            value=letter.value,
            headers=[("dlq.replayed-from", f"{topic}.dlq@{letter.offset}".encode())],
        )
    if producer.flush(30) > 0:
        raise SystemExit("Kafka did not acknowledge every replayed record")
    return len(letters)


def add_commands(sub: argparse._SubParsersAction, stack_env: Callable[[], dict[str, str]]) -> None:
    dlq = sub.add_parser("dlq", help="dead letters: list them, replay them").add_subparsers(
        dest="dlq_command", required=True
    )
    listing = dlq.add_parser("list", help="show TOPIC's dead letters (TOPIC.dlq)")
    listing.add_argument("topic", help="e.g. wallet.commands, ledger.commands")
    listing.add_argument("--limit", type=int, default=50, help="show at most this many")
    listing.set_defaults(func=lambda args: _list(args, stack_env()))
    again = dlq.add_parser("replay", help="send chosen dead letters back to their topic")
    again.add_argument("topic")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", type=int, action="append", help="a dead letter's offset")
    which.add_argument("--all", action="store_true", help="every dead letter of the topic")
    again.set_defaults(func=lambda args: _replay(args, stack_env()))


def _list(args: argparse.Namespace, env: dict[str, str]) -> int:
    letters = read_dead_letters(env["KAFKA_BOOTSTRAP"], args.topic)
    print(f"{len(letters)} dead letter(s) on {args.topic}.dlq")
    for letter in letters[: args.limit]:
        print(letter.line())
    return 0


def _replay(args: argparse.Namespace, env: dict[str, str]) -> int:
    letters = read_dead_letters(env["KAFKA_BOOTSTRAP"], args.topic)
    offsets = None if args.all else set(args.offset)
    selected = chosen(letters, offsets)
    missing = set() if offsets is None else offsets - {letter.offset for letter in selected}
    if missing:
        print(f"no dead letter at offset(s) {sorted(missing)} of {args.topic}.dlq")
        return 1
    count = replay(env["KAFKA_BOOTSTRAP"], args.topic, selected)
    print(f"replayed {count} dead letter(s) of {args.topic}.dlq")
    return 0
