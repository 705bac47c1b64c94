"""Which requests a wallet's partition has decided lately, to recognise a replay.

Pure. With at-least-once delivery a worker that dies re-reads requests and ledger events
after its last committed offset, each agent on its own. A replayed request whose hold the
ledger has already settled would otherwise reserve (and be charged) again, and a replayed
``TransactionPosted`` would then settle that second hold as spent: money lost. So a request
id decided once is never screened again (a bounded memory per wallet, far longer than the
commit interval's worth of requests).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Decisions remembered per wallet; a replay comes from the last commit interval (seconds).
RECENT_DECISIONS_MAX = 1024


@dataclass
class RecentDecisions:
    ids: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_DECISIONS_MAX))

    def __contains__(self, transaction_id: object) -> bool:
        return transaction_id in self.ids

    def remember(self, transaction_id: str) -> None:
        if transaction_id not in self.ids:
            self.ids.append(transaction_id)

    def to_json(self) -> list[str]:
        return list(self.ids)

    @classmethod
    def from_json(cls, data: list[str] | None) -> RecentDecisions:
        return cls(deque(data or (), maxlen=RECENT_DECISIONS_MAX))
