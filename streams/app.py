"""The stream worker's entry point: ``python -m streams.app`` (or ``walletpipe run``).

Settings come from the environment (``streams.settings.StreamSettings``); the worker itself
is ``streams.engine.Worker`` on quix-streams. It exits with status 3 when the money path
contradicts itself (``WalletInvariantError``: nothing of the open commit is kept), and
with the error's own status for anything else.
"""

from __future__ import annotations

import logging
import sys

from domain.topics import WALLET_COMMANDS
from infra import metrics
from streams.engine import LOG_LEVELS, Worker, wait_for_kafka
from streams.exceptions import EXIT_INVARIANT, WalletInvariantError
from streams.settings import StreamSettings

log = logging.getLogger("streams")


def main() -> None:
    settings = StreamSettings()  # type: ignore[call-arg]
    level = LOG_LEVELS.get(settings.log_level.lower(), settings.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics.serve_metrics("streams")
    # Building the application already asks Kafka for its topics: a worker restarted
    # while Kafka restarts waits for it first.
    wait_for_kafka(settings, settings.topic_prefix + WALLET_COMMANDS.name)
    worker = Worker(settings)
    try:
        worker.run()
    except WalletInvariantError as error:
        log.critical("stream worker stopped: %s", error.message)
        sys.exit(EXIT_INVARIANT)


if __name__ == "__main__":
    main()
