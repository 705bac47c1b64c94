"""The stream's fraud features: ``models.features``, the offline engine, fed one request at a
time from the stream's state (no training/serving skew: one code for both).

A request becomes the engine's ``Event`` (``event_of``): its time is ``requested_at`` in
whole epoch seconds, its customer the paying wallet (the source, else the destination of a
deposit: the wallet it is keyed by), its terminal the request's ``metadata.terminal_id``,
else the payee wallet, else the channel (``models.scenarios.SimTransaction.counterparty``
says the same for the simulator's labelled files), and its amount a float (features only:
money stays Decimal everywhere else).

State lives where the stream can keep it correct with several workers:

* **Customer** (``CustomerState``): in the wallet's own state (key ``c``,
  ``streams/customer_codec.py``), in the wallet's partition like its requests, so one
  worker owns it and reads and writes it once per request (``streams/flow.py``).
* **Terminal** (``TerminalState``: transactions and known frauds per day): a terminal is
  shared by the wallets of every partition, so no wallet's worker may own it. Each
  partition sends the requests it approves (or holds) and the fraud labels of those, in
  batches per terminal and day, on ``streams.terminal-counts``; every worker applies them
  with the engine's own ``observe`` / ``apply_label`` to its in-memory copy of every
  terminal (``streams/terminals.py``). The window features use only days that ended
  ``label_delay_days`` (7) days before the request's day, so a count that arrives a batch
  late is never missed: the copy is exact. ``terminal_frauds_recent`` counts labels of the
  days since, as they arrive: a label that arrives a batch after a request counts from the
  next request on.

What differs from ``models.features.replay`` over the same events, by design: only requests
the stream approved or held for review enter the customer's and the terminal's history (a
declined or refused request moved no money), and a terminal counts a fraud when its label
arrives, however late, where ``replay`` releases every label exactly ``label_delay_days``
after its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.records import TransactionRequested
from models.features import CustomerState, Event, FeatureEngine, TerminalState

#: Longest terminal (or channel) name the stream keys a terminal by; longer ones are cut.
TERMINAL_CHARS_MAX = 200


def terminal_of(request: TransactionRequested) -> str:
    """Where the money went or came from: the terminal, else the payee, else the channel
    (else the transaction type: a request without metadata still has a place)."""
    metadata = request.metadata or {}
    terminal = metadata.get("terminal_id")
    if terminal not in (None, ""):
        return str(terminal)[:TERMINAL_CHARS_MAX]
    if request.destination_wallet_id is not None:
        return str(request.destination_wallet_id)
    channel = metadata.get("channel")
    if channel not in (None, ""):
        return str(channel)[:TERMINAL_CHARS_MAX]
    return request.transaction_type.value


def event_of(request: TransactionRequested) -> Event:
    customer = request.source_wallet_id or request.destination_wallet_id
    return Event(
        time_s=int(request.requested_at.timestamp()),
        customer=str(customer),
        terminal=terminal_of(request),
        amount=float(request.amount),
    )


@dataclass
class StreamFeatures:
    """The engine's own code on states from the tables: each call builds a
    ``FeatureEngine`` holding just the customer and terminal it is handed (a few
    microseconds), so nothing an engine keeps between events (a cache of terminal sums,
    say) outlives the request or goes stale when another worker's count arrives."""

    label_delay_days: int = 7

    @property
    def engine(self) -> FeatureEngine:
        return FeatureEngine(self.label_delay_days)

    def features(
        self, event: Event, customer: CustomerState | None, terminal: TerminalState | None
    ) -> dict[str, float]:
        """The features of ``event``. ``customer`` (None: never seen) is advanced to its
        time, as the live engine's is; ``terminal`` (the published copy) is only read."""
        engine = self.engine
        engine.customers = {} if customer is None else {event.customer: customer}
        engine.terminals = {} if terminal is None else {event.terminal: terminal}
        return engine.features(event)

    def observe(self, event: Event, customer: CustomerState | None) -> CustomerState:
        """Add the event to its customer's state (a new one for None): the state to keep.
        The terminal is not touched here: the terminal agent counts the event
        (``observe_terminal``)."""
        engine = self.engine
        engine.customers = {} if customer is None else {event.customer: customer}
        engine.terminals = {}
        engine.observe(event)
        return engine.customers[event.customer]

    def observe_terminal(self, terminal: str, time_s: int, state: TerminalState) -> None:
        """Count a transaction at the terminal, with the engine's ``observe`` (its
        customer half lands in a scratch state that is dropped)."""
        engine = self.engine
        engine.customers = {}
        engine.terminals = {terminal: state}
        engine.observe(Event(time_s, "", terminal, 0.0))

    def label_terminal(self, terminal: str, time_s: int, state: TerminalState) -> None:
        """A fraud label for a transaction at the terminal at ``time_s``."""
        engine = self.engine
        engine.terminals = {terminal: state}
        engine.apply_label(terminal, time_s, True)
