"""Certificate backup blobs: a certificate's stored JSON form and its vault's subscription and geography,
sealed with AES-GCM under a key of this emulator instance (kept in the ``--state`` file), so a blob is
opaque and only this emulator (after a restart with the same state, too) can restore it."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import bad_parameter
from .store import Certificate, Vault, cert_from_json, cert_to_json

FORMAT = b"kv-emulator-certificate-backup/1"  # authenticated with the blob: another kind of blob fails
NONCE_BYTES = 12


@dataclass
class Opened:
    certificate: Certificate
    subscription: str
    geography: str


class BackupSealer:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(self.key)

    def seal(self, vault: Vault, cert: Certificate) -> bytes:
        """Call with the vault's lock held."""
        payload = {"subscription": vault.subscription, "geography": vault.geography}
        payload["certificate"] = cert_to_json(cert, backup=True)
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, zlib.compress(json.dumps(payload).encode()), FORMAT)

    def open(self, blob: bytes) -> Opened:
        """Any blob this emulator did not seal, or sealed and was changed since, is a 400."""
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], FORMAT)
        except (InvalidTag, ValueError) as exc:  # ValueError: too short to hold a nonce
            raise bad_parameter("Cannot decrypt backup blob: it is not a certificate backup of this service.") from exc
        payload: dict[str, Any] = json.loads(zlib.decompress(plain))  # authentic, so well-formed
        cert = cert_from_json(payload["certificate"])
        return Opened(cert, payload["subscription"], payload["geography"])
