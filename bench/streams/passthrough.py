"""The smallest faust worker: one agent that forwards every record of one topic to another.

bench/streams runs it beside the real stream worker to show what faust-streaming itself
costs per record on this machine (consume through aiokafka, the agent's iteration and
acknowledgement, produce), with no tables, decoding or decisions.

    BENCH_APP_ID=... KAFKA_BOOTSTRAP=... BENCH_SOURCE=... BENCH_TARGET=... \\
        python -m bench.streams.passthrough
"""

from __future__ import annotations

import logging
import os
import sys

import faust


def main() -> None:
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}",
        store="memory://",
        web_enabled=False,
        producer_linger=0.005,  # as the stream worker
    )
    source = app.topic(os.environ["BENCH_SOURCE"], key_serializer="raw", value_serializer="raw")
    target = app.topic(os.environ["BENCH_TARGET"], key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="forward", concurrency=1)
    async def forward(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await target.send(key=event.key, value=event.value)

    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", "warn"]
    for name in ("aiokafka", "faust"):
        logging.getLogger(name).setLevel(logging.WARNING)
    app.main()


if __name__ == "__main__":
    main()
