"""How every service's Kafka clients batch: the one place that trades the broker's requests
against a hop's latency (librdkafka property names; no client is made here).

On one small machine the broker's cost follows the number of requests it serves far more
than their bytes: a fetch that returns one record costs it nearly what one returning a
hundred does. librdkafka's defaults make one request per record as soon as records come
faster than the round trip: a consumer's next fetch is answered as soon as one byte is
there (``fetch.min.bytes`` 1), so every record wakes every consumer of its topic.

- Producers linger a few milliseconds and send uncompressed: on loopback bytes are free,
  while compressed batches made the broker decompress each one to validate it and every
  consumer decompress it again.
- Consumers on a transaction's path (the stream, the ledger writer, the gateway) let the
  broker hold a fetch until it has ``HOT_FETCH_MIN_BYTES`` or ``HOT_FETCH_WAIT_MS`` has
  passed: at most ``1000 / HOT_FETCH_WAIT_MS`` fetches a second per consumer, for at most
  that many milliseconds more per hop.
- Consumers off that path (the analytics sink, the terminal counts every worker reads)
  wait up to ``BULK_FETCH_WAIT_MS`` for a megabyte: a couple of fetches a second.
"""

from __future__ import annotations

#: A hop on the answer's path waits at most this long for its fetch to fill.
HOT_FETCH_WAIT_MS = 10
#: ... or until this much is there (about 16 of the pipeline's records).
HOT_FETCH_MIN_BYTES = 16 * 1024
#: Consumers whose output nobody waits for (dashboards, the terminal windows).
BULK_FETCH_WAIT_MS = 500
BULK_FETCH_MIN_BYTES = 1024 * 1024
#: How long a producer holds a record for others to join its request.
PRODUCER_LINGER_MS = 5


def hot_path_consumer() -> dict[str, object]:
    """Fetch settings of a consumer a transaction's answer waits for."""
    return {"fetch.min.bytes": HOT_FETCH_MIN_BYTES, "fetch.wait.max.ms": HOT_FETCH_WAIT_MS}


def bulk_consumer() -> dict[str, object]:
    """Fetch settings of a consumer that reads in big batches and that nobody waits for."""
    return {"fetch.min.bytes": BULK_FETCH_MIN_BYTES, "fetch.wait.max.ms": BULK_FETCH_WAIT_MS}


def batching_producer(linger_ms: int = PRODUCER_LINGER_MS) -> dict[str, object]:
    """A producer that batches what arrives within ``linger_ms`` into one request per
    partition leader (here: one broker), uncompressed."""
    return {
        "linger.ms": linger_ms,
        "compression.type": "none",
        "batch.num.messages": 10_000,
        "batch.size": 1024 * 1024,
    }
