"""The stream's side of the customer records: a frozen wallet's debits are refused
(WALLET_FROZEN) and its credits land; a compliance decision's KYC status picks the default
limits; the user's devices give the policy ``device_status``. Plus the pure rules of
``domain.customers``."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.customers import (
    check_status_change,
    decode_cursor,
    encode_cursor,
    sniff_document,
)
from domain.exceptions import DomainError
from domain.limits import KycStatus
from domain.records import (
    KycStatusChanged,
    PaymentMethodFacts,
    PostTransaction,
    TransactionRejected,
    WalletDevicesChanged,
    WalletPaymentMethodsChanged,
    WalletStatusChanged,
)
from domain.transactions import TransactionType
from models.features import FEATURE_NAMES
from models.policy import load_policy
from streams.limits import DefaultLimits
from streams.store import Devices, WalletValue
from tests.unit.test_stream_flow import KEY, SETTINGS, START, Partition, W, decisions, request

D = Decimal


def status(value: str, version: int) -> WalletStatusChanged:
    return WalletStatusChanged(
        wallet_id=W, status=value, version=version, changed_by="c/k", changed_at=START
    )  # type: ignore[arg-type]


def only_decision(outputs: list) -> object:
    return decisions(outputs)[0]


def test_a_frozen_wallet_refuses_debits_and_still_takes_credits() -> None:
    partition = Partition()
    partition.fund("100")
    partition.send(status("FROZEN", 2))
    refused = only_decision(partition.send(request("10")))
    assert isinstance(refused, TransactionRejected) and refused.reason_code == "WALLET_FROZEN"
    deposit = only_decision(partition.send(request("5", TransactionType.DEPOSIT)))
    assert isinstance(deposit, PostTransaction)
    assert partition.wallet().state.available == D("100")  # nothing held by the refusal
    partition.send(status("ACTIVE", 1))  # older than the freeze: changes nothing
    assert partition.wallet().status == "FROZEN"
    partition.send(status("ACTIVE", 3))
    assert isinstance(only_decision(partition.send(request("10"))), PostTransaction)


def test_a_closed_wallet_refuses_debits_as_not_active() -> None:
    partition = Partition()
    partition.fund("100")
    partition.send(status("CLOSED", 2))
    refused = only_decision(partition.send(request("10")))
    assert isinstance(refused, TransactionRejected)
    assert refused.reason_code == "WALLET_NOT_ACTIVE"


def test_a_wallet_value_without_a_profile_decodes_as_before() -> None:
    old = WalletValue().encode()
    assert len(__import__("orjson").loads(old)) == 6  # no status sent: the old layout
    value = WalletValue.decode(old)
    assert (value.status, value.kyc_status) == ("ACTIVE", None)
    value.status, value.status_version = "FROZEN", 4
    again = WalletValue.decode(value.encode())
    assert (again.status, again.status_version, again.kyc_version) == ("FROZEN", 4, -1)


def test_the_latest_kyc_decision_picks_the_default_limits() -> None:
    defaults = DefaultLimits.parse(
        {
            "REJECTED": [
                {
                    "transaction_type": "TRANSFER",
                    "period_type": "DAILY",
                    "max_amount": "0.00",
                    "max_count": 0,
                }
            ],
            "VERIFIED": [],
        }
    )
    partition = Partition()
    partition.flow.settings = dataclasses.replace(SETTINGS, default_limits=defaults)
    partition.fund("100")
    verified = request("10").model_copy(update={"kyc_status": KycStatus.VERIFIED})
    assert isinstance(only_decision(partition.send(verified)), PostTransaction)
    change = KycStatusChanged(
        wallet_id=W,
        user_id=uuid.uuid4(),
        kyc_status=KycStatus.REJECTED,
        version=5,
        changed_at=START,
    )
    partition.send(change)
    # The request was accepted while the API still read VERIFIED: the decision wins.
    stale = request("10").model_copy(update={"kyc_status": KycStatus.VERIFIED})
    refused = only_decision(partition.send(stale))
    assert isinstance(refused, TransactionRejected) and refused.reason_code == "LIMIT_EXCEEDED"


PHONE = "cccccccc-0000-4000-8000-000000000003"
OLD_PHONE = "dddddddd-0000-4000-8000-000000000004"


@pytest.mark.parametrize(
    ("device", "expected"),
    [(PHONE, "KNOWN"), (OLD_PHONE, "REVOKED"), (str(uuid.uuid4()), "UNKNOWN"), (None, "NONE")],
)
def test_the_policy_reads_the_device_status(device: str | None, expected: str) -> None:
    partition = Partition()
    partition.fund("100")
    rules = load_policy(
        '{"version": 1, "review_threshold": 60, "decline_threshold": 85, "rules": ['
        '{"name": "strange-device", "when": "device_status in [\'UNKNOWN\', \'REVOKED\']",'
        ' "action": "decline"}]}',
        FEATURE_NAMES,
    )
    partition.flow.policies.policy = rules  # type: ignore[attr-defined]
    partition.send(
        WalletDevicesChanged(
            wallet_id=W,
            user_id=uuid.uuid4(),
            version=1,
            devices={uuid.UUID(PHONE): "ACTIVE", uuid.UUID(OLD_PHONE): "REVOKED"},
        )
    )
    item = request("10")
    metadata = dict(item.metadata)
    if device is not None:
        metadata["device_id"] = device
    decided = only_decision(partition.send(item.model_copy(update={"metadata": metadata})))
    declined = expected in ("UNKNOWN", "REVOKED")
    assert isinstance(decided, TransactionRejected if declined else PostTransaction)
    if declined:
        assert "strange-device" in decided.reason_message  # type: ignore[attr-defined]


def test_a_wallet_without_a_device_set_cannot_tell() -> None:
    assert Devices().status_of(PHONE) == "NONE"
    assert Devices(0, {}).status_of(PHONE) == "UNKNOWN"
    assert Devices(0, {PHONE: "ACTIVE"}).status_of(PHONE.upper()) == "KNOWN"


def test_wallet_status_rules() -> None:
    check_status_change("ACTIVE", "FROZEN", D("10"))
    check_status_change("FROZEN", "CLOSED", D("0"))
    with pytest.raises(DomainError) as not_empty:
        check_status_change("ACTIVE", "CLOSED", D("0.01"))
    assert not_empty.value.code == "WALLET_NOT_EMPTY"
    with pytest.raises(DomainError) as closed:
        check_status_change("CLOSED", "ACTIVE", D("0"))
    assert closed.value.code == "WALLET_CLOSED"
    with pytest.raises(DomainError):
        check_status_change("ACTIVE", "SUSPENDED", D("0"))


def test_cursors_round_trip_and_refuse_what_the_api_did_not_give() -> None:
    at, transaction_id = datetime(2026, 3, 5, 12, 0, 1, 5, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(at, transaction_id)) == (at, transaction_id)
    for bad in ("x!", "", "bm90IGEgY3Vyc29y", encode_cursor(at, transaction_id)[:-3]):
        with pytest.raises(DomainError) as refused:
            decode_cursor(bad)
        assert refused.value.code == "INVALID_CURSOR"


def test_documents_are_typed_by_their_bytes() -> None:
    assert sniff_document(b"%PDF-1.4 ...") == "application/pdf"
    assert sniff_document(b"\xff\xd8\xff\xe0...") == "image/jpeg"
    assert sniff_document(b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert sniff_document(b"GIF89a") is None
    assert sniff_document(b"MZ\x90\x00 an exe named passport.pdf") is None
    assert KEY  # the shared partition's key, imported with its helpers


CARD = "eeeeeeee-0000-4000-8000-000000000005"
BANK = "ffffffff-0000-4000-8000-000000000006"
UNVERIFIED = "abababab-0000-4000-8000-000000000007"


def methods_partition(policy: str | None = None) -> Partition:
    partition = Partition()
    partition.fund("100")
    if policy is not None:
        partition.flow.policies.policy = load_policy(policy, FEATURE_NAMES)  # type: ignore[attr-defined]
    partition.send(
        WalletPaymentMethodsChanged(
            wallet_id=W,
            user_id=uuid.uuid4(),
            version=3,
            methods={
                uuid.UUID(CARD): PaymentMethodFacts(kind="CARD", usable=True, shared_users=4),
                uuid.UUID(BANK): PaymentMethodFacts(kind="BANK_ACCOUNT", usable=True),
                uuid.UUID(UNVERIFIED): PaymentMethodFacts(kind="BANK_ACCOUNT", usable=False),
            },
        )
    )
    return partition


def naming(kind: TransactionType, method: str | None) -> object:
    item = request("10", kind)
    if kind is TransactionType.WITHDRAWAL:
        item = item.model_copy(update={"destination_wallet_id": None})
    metadata = {**item.metadata, **({"payment_method_id": method} if method else {})}
    return item.model_copy(update={"metadata": metadata})


@pytest.mark.parametrize(
    ("kind", "method", "refused"),
    [
        (TransactionType.DEPOSIT, CARD, False),
        (TransactionType.DEPOSIT, None, False),
        (TransactionType.DEPOSIT, BANK, True),  # a deposit comes from a card
        (TransactionType.WITHDRAWAL, BANK, False),
        (TransactionType.WITHDRAWAL, UNVERIFIED, True),
        (TransactionType.WITHDRAWAL, str(uuid.uuid4()), True),  # not the user's
    ],
)
def test_a_deposit_or_withdrawal_names_a_usable_method_of_its_kind(
    kind: TransactionType, method: str | None, refused: bool
) -> None:
    partition = methods_partition()
    decided = only_decision(partition.send(naming(kind, method)))  # type: ignore[arg-type]
    if refused:
        assert isinstance(decided, TransactionRejected)
        assert decided.reason_code == "PAYMENT_METHOD_INVALID"
    else:
        assert isinstance(decided, PostTransaction)


def test_the_policy_reads_how_many_users_share_the_card() -> None:
    partition = methods_partition(
        '{"version": 1, "review_threshold": 60, "decline_threshold": 85, "rules": ['
        '{"name": "shared-card", "when": "card_shared_users >= 3", "action": "decline"}]}'
    )
    decided = only_decision(partition.send(naming(TransactionType.DEPOSIT, CARD)))  # type: ignore[arg-type]
    assert isinstance(decided, TransactionRejected) and "shared-card" in decided.reason_message
    plain = only_decision(partition.send(naming(TransactionType.DEPOSIT, None)))  # type: ignore[arg-type]
    assert isinstance(plain, PostTransaction)
