"""The notification service: the fan-out consumer (a thread) and the delivery scheduler
(asyncio) in one process. ``python -m notifications.service``; ``walletpipe run`` starts it.

SIGTERM or SIGINT stops it: attempts in flight are abandoned, and their leases bring them
back (to this process restarted, or another).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading

from psycopg_pool import AsyncConnectionPool

from infra import metrics
from notifications.delivery import Scheduler, Sender
from notifications.fanout import FanOut
from notifications.settings import NotificationSettings

log = logging.getLogger("notifications")
THREAD_JOIN_TIMEOUT_S = 10.0


async def serve(settings: NotificationSettings) -> int:
    """Runs until a signal (0) or until the consumer thread dies (1)."""
    loop = asyncio.get_running_loop()
    stop, wake = asyncio.Event(), asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumer_stop = threading.Event()
    consumer_died = threading.Event()

    def crashed() -> None:
        consumer_died.set()
        loop.call_soon_threadsafe(stop.set)

    fanout = FanOut(settings, consumer_stop, lambda: loop.call_soon_threadsafe(wake.set), crashed)
    consumer = threading.Thread(target=fanout.run, name="fanout", daemon=True)
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": 5},
        reconnect_timeout=5,
    )
    await pool.open(wait=False)
    sender = Sender(settings, settings.address_policy())
    consumer.start()
    try:
        await Scheduler(settings, pool, sender, settings.retry_policy()).run(stop, wake)
    finally:
        consumer_stop.set()
        await asyncio.to_thread(consumer.join, THREAD_JOIN_TIMEOUT_S)
        await sender.close()
        await pool.close()
    return 1 if consumer_died.is_set() else 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per attempt
    settings = NotificationSettings()  # type: ignore[call-arg]
    metrics.serve_metrics("notifications")
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
