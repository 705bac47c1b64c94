"""The customer records of a wallet partition: the wallet's status and its user's KYC status
(``WalletStatusChanged``, ``KycStatusChanged``, in ``w``), devices (``WalletDevicesChanged``,
in ``d``) and payment methods (``WalletPaymentMethodsChanged``, in ``p``); each keeps the
newest version. ``streams.flow.Flow`` reads them when it decides a request.
"""

from __future__ import annotations

from domain.records import (
    KycStatusChanged,
    TransactionRequested,
    WalletDevicesChanged,
    WalletPaymentMethodsChanged,
    WalletStatusChanged,
)
from streams.exceptions import RecordRefused
from streams.store import (
    DEVICES,
    PAYMENT_METHODS,
    WALLET,
    Devices,
    PaymentMethods,
    Store,
    WalletValue,
)


def check_wallet_key(key: bytes, wallet_id: object) -> None:
    """A record keyed by another wallet than its own would read and write the wrong
    wallet's state: refused (dead-lettered)."""
    if wallet_id is None or key != str(wallet_id).encode():
        raise RecordRefused("record key is not the wallet it is about")


class ProfileHandlers:
    @staticmethod
    def device_status(store: Store, key: bytes, request: TransactionRequested) -> str:
        """The request's ``metadata.device_id`` against its user's devices (read only when
        the request names one)."""
        device_id = (request.metadata or {}).get("device_id")
        if device_id is None or device_id == "":
            return "NONE"
        return Devices.decode(store.get_bytes(DEVICES, key)).status_of(device_id)

    def on_profile(
        self, store: Store, key: bytes, change: WalletStatusChanged | KycStatusChanged
    ) -> None:
        """A wallet's status or its user's KYC status; an older version (a replay, two
        API replicas racing) changes nothing."""
        check_wallet_key(key, change.wallet_id)
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        if isinstance(change, WalletStatusChanged):
            if change.version <= wallet.status_version:
                return
            wallet.status, wallet.status_version = change.status, change.version
        else:
            if change.version <= wallet.kyc_version:
                return
            wallet.kyc_status, wallet.kyc_version = change.kyc_status.value, change.version
        store.set_bytes(WALLET, wallet.encode(), key)

    def on_devices(self, store: Store, key: bytes, change: WalletDevicesChanged) -> None:
        check_wallet_key(key, change.wallet_id)
        if change.version <= Devices.decode(store.get_bytes(DEVICES, key)).version:
            return
        devices = {str(device): status for device, status in change.devices.items()}
        store.set_bytes(DEVICES, Devices(change.version, devices).encode(), key)

    def on_payment_methods(
        self, store: Store, key: bytes, change: WalletPaymentMethodsChanged
    ) -> None:
        check_wallet_key(key, change.wallet_id)
        if change.version <= PaymentMethods.decode(store.get_bytes(PAYMENT_METHODS, key)).version:
            return
        methods = {
            str(method_id): [facts.kind, facts.usable, facts.shared_users]
            for method_id, facts in change.methods.items()
        }
        store.set_bytes(PAYMENT_METHODS, PaymentMethods(change.version, methods).encode(), key)
