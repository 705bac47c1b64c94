"""The notification service: the fan-out consumer (a thread) and the delivery scheduler
(asyncio) in one process. ``python -m notifications.service``; ``walletpipe run`` starts it.

SIGTERM or SIGINT stops it: attempts in flight are abandoned, and their leases bring them
back (to this process restarted, or another).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from psycopg_pool import AsyncConnectionPool

from notifications.delivery import Scheduler, Sender
from notifications.fanout import FanOut
from notifications.settings import NotificationSettings

log = logging.getLogger("notifications")
THREAD_JOIN_TIMEOUT_S = 10.0


async def serve(settings: NotificationSettings) -> None:
    loop = asyncio.get_running_loop()
    stop, wake = asyncio.Event(), asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumer_stop = threading.Event()
    fanout = FanOut(settings, consumer_stop, lambda: loop.call_soon_threadsafe(wake.set))
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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = NotificationSettings()  # type: ignore[call-arg]
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
