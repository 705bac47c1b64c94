"""The fraud features' customer state in binary, as the stream stores it (key ``c``).

``models.features.CustomerState`` keeps a customer's events of the last 30 days (at most
``CUSTOMER_EVENTS_MAX``) in flat ``array('d')`` of ``time, amount`` pairs, four windows as
start indices with running totals, the running maxima the same way, and the terminals last
used. The stream reads and writes it once per request, so its stored form is those arrays'
bytes as they are (a copy each way, no per-event work): 16 bytes per event and per maximum,
plus the terminals as JSON, about 16 KB at 1,000 events against 22 KB and a loop over the
events for ``to_json``. The values and totals come back bit for bit, so the features do too
(tests/unit/test_customer_codec.py holds the two forms to the same features).

Layout: a header ``<B4q4dQ`` (format version, the four windows' event counts, their totals,
the number of maxima pairs), the events of the widest window, the maxima, then the
terminals (``orjson``; the engine drops those not used within the widest window as it
advances the state, and at most ``CUSTOMER_EVENTS_MAX`` are kept, the most recent).
"""

from __future__ import annotations

import struct
from array import array

import orjson

from models.features import CUSTOMER_EVENTS_MAX, CustomerState

FORMAT_VERSION = 1
_HEADER = struct.Struct("<B4q4dQ")


def encode_customer(state: CustomerState) -> bytes:
    events = state.events
    end = len(events)
    head = state.start_month
    counts = [
        (end - start) // 2
        for start in (state.start_hour, state.start_day, state.start_week, state.start_month)
    ]
    maxima = state.maxima[state.maxima_head :]
    terminals = state.terminals  # the engine prunes those past the widest window as it advances
    if len(terminals) > CUSTOMER_EVENTS_MAX:
        terminals = dict(sorted(terminals.items(), key=lambda item: item[1])[-CUSTOMER_EVENTS_MAX:])
    header = _HEADER.pack(
        FORMAT_VERSION,
        *counts,
        state.total_hour,
        state.total_day,
        state.total_week,
        state.total_month,
        len(maxima) // 2,
    )
    return b"".join((header, events[head:end].tobytes(), maxima.tobytes(), orjson.dumps(terminals)))


def decode_customer(data: bytes) -> CustomerState:
    version, *rest = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(f"customer state format {version}, this worker reads {FORMAT_VERSION}")
    counts, totals, maxima_pairs = rest[:4], rest[4:8], rest[8]
    state = CustomerState()
    at = _HEADER.size
    events_end = at + 16 * counts[3]
    maxima_end = events_end + 16 * maxima_pairs
    state.events = array("d", data[at:events_end])
    state.maxima = array("d", data[events_end:maxima_end])
    end = len(state.events)
    state.start_hour, state.start_day, state.start_week, state.start_month = (
        end - 2 * count for count in counts
    )
    state.total_hour, state.total_day, state.total_week, state.total_month = totals
    state.terminals = orjson.loads(data[maxima_end:])
    return state
