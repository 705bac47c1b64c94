"""The API's payment secrets: the key that hashes card numbers (HMAC-SHA256) and the key
that encrypts bank account numbers (AES-256-GCM), from one key file.

The file (``PAYMENT_KEYS_FILE``, JSON, mode 0600) is made on first use with fresh random
keys; every API process of one deployment must read the same file (a card hashed by one
must match in another). Losing it makes stored account numbers unreadable and card hashes
incomparable with new ones: back it up like a database password. Nothing here logs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.payment_methods import card_fingerprint

_NONCE_BYTES = 12
_CIPHER_PREFIX = "v1:"


@dataclass(frozen=True)
class PaymentVault:
    hmac_key: bytes
    encryption_key: bytes

    @classmethod
    def load(cls, path: str | Path) -> PaymentVault:
        file = Path(path)
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
            fresh = {
                "hmac_key": base64.b64encode(secrets.token_bytes(32)).decode(),
                "encryption_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
            try:  # O_EXCL: two processes starting at once keep the first one's keys
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    json.dump(fresh, out)
            except FileExistsError:
                pass
        keys = json.loads(file.read_text())
        return cls(base64.b64decode(keys["hmac_key"]), base64.b64decode(keys["encryption_key"]))

    def card_hash(self, number: str) -> str:
        return card_fingerprint(self.hmac_key, number)

    def encrypt(self, plain: str, context: str) -> str:
        """``plain`` encrypted and bound to ``context`` (the payment method id): a ciphertext
        copied onto another row does not decrypt."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.encryption_key).encrypt(nonce, plain.encode(), context.encode())
        return _CIPHER_PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, context: str) -> str:
        raw = base64.b64decode(stored.removeprefix(_CIPHER_PREFIX))
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return AESGCM(self.encryption_key).decrypt(nonce, sealed, context.encode()).decode()
