"""The stream worker's entry point: ``python -m streams.app`` (or ``walletpipe run``).

Settings come from the environment (``streams.settings.StreamSettings``); the worker itself
is ``streams.engine.Worker`` on quix-streams. It exits with status 3 when the money path
contradicts itself (``WalletInvariantError``: nothing of the open commit is kept), and
with the error's own status for anything else.
"""

from __future__ import annotations

import logging
import sys

from infra import metrics
from streams.engine import LOG_LEVELS, Worker
from streams.exceptions import WalletInvariantError
from streams.settings import StreamSettings

log = logging.getLogger("streams")
#: The exit status of a worker stopped by a broken money invariant.
EXIT_INVARIANT = 3


def main() -> None:
    settings = StreamSettings()  # type: ignore[call-arg]
    level = LOG_LEVELS.get(settings.log_level.lower(), settings.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics.serve_metrics("streams")
    worker = Worker(settings)
    try:
        worker.run()
    except WalletInvariantError as error:
        log.critical("stream worker stopped: %s", error.message)
        sys.exit(EXIT_INVARIANT)


if __name__ == "__main__":
    main()
