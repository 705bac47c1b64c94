"""ledger_writer.outcomes: the verdict on one accepted request from the ledger's terminal
events, on one shard and across two."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from ledger_writer.outcomes import Recorded, RequestFacts, Verdict, classify

ACCEPTED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEADLINE = timedelta(seconds=60)
SOON = ACCEPTED + timedelta(seconds=2)
LATER = ACCEPTED + timedelta(seconds=90)


def request(published: bool = True, home: int = 0, payee: int | None = None) -> RequestFacts:
    return RequestFacts(uuid.uuid4(), ACCEPTED, published, home, payee)


def verdict(req: RequestFacts, recorded: dict[int, Recorded], now: datetime = LATER) -> Verdict:
    return classify(req, recorded, now, DEADLINE)[0]


def test_one_outcome_in_time_ended() -> None:
    assert verdict(request(), {0: Recorded(settled=1, last_at=SOON)}) is Verdict.ENDED
    assert verdict(request(), {0: Recorded(failed=1, last_at=SOON)}) is Verdict.ENDED


def test_no_outcome_is_in_flight_until_the_deadline_then_stuck() -> None:
    req = request()
    assert verdict(req, {}, now=SOON) is Verdict.IN_FLIGHT
    assert verdict(req, {}, now=LATER) is Verdict.STUCK
    why = classify(request(published=False), {}, LATER, DEADLINE)[1]
    assert "never published" in why and "90s" in why


def test_two_outcomes_are_duplicated_whatever_they_are() -> None:
    for recorded in (Recorded(settled=2, last_at=SOON), Recorded(1, 1, SOON)):
        assert verdict(request(), {0: recorded}) is Verdict.DUPLICATED


def test_an_outcome_after_the_deadline_is_late() -> None:
    verdict_, why = classify(request(), {0: Recorded(failed=1, last_at=LATER)}, LATER, DEADLINE)
    assert verdict_ is Verdict.LATE and "90s" in why


def test_an_outcome_on_a_shard_the_request_does_not_touch_is_duplicated() -> None:
    recorded = {0: Recorded(settled=1, last_at=SOON), 2: Recorded(settled=1, last_at=SOON)}
    assert verdict(request(home=0), recorded) is Verdict.DUPLICATED


def test_across_shards_the_credit_must_land_once() -> None:
    req = request(home=0, payee=1)
    settled = Recorded(settled=1, last_at=SOON)
    assert verdict(req, {0: settled, 1: settled}) is Verdict.ENDED
    assert verdict(req, {0: settled}, now=SOON) is Verdict.IN_FLIGHT
    assert verdict(req, {0: settled}) is Verdict.STUCK
    assert verdict(req, {0: settled, 1: Recorded(settled=2, last_at=SOON)}) is Verdict.DUPLICATED
    failed = Recorded(failed=1, last_at=SOON)
    assert verdict(req, {0: failed}) is Verdict.ENDED  # nothing crossed
    assert verdict(req, {0: failed, 1: settled}) is Verdict.DUPLICATED
    assert verdict(req, {0: settled, 1: Recorded(settled=1, last_at=LATER)}) is Verdict.LATE
