"""A software WebAuthn authenticator for tests that need no browser: it
makes "none"-attested ES256 credentials and signs assertions, with a sign
count the test may set (a clone)."""

from __future__ import annotations

import hashlib
import json
import secrets

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from audit.passkeys import b64url, unb64url

UP_UV = 0x01 | 0x04
ATTESTED = 0x40


class SoftAuthenticator:
    def __init__(self, rp_id: str = "testserver", origin: str = "http://testserver"):
        self.rp_id, self.origin = rp_id, origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(16)
        self.count = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}).encode()

    def create(self, options: dict) -> dict:
        """navigator.credentials.create for the portal's registration options."""
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        auth_data = hashlib.sha256(self.rp_id.encode()).digest() + bytes([UP_UV | ATTESTED]) + (0).to_bytes(4, "big")
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data + attested})
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(self._client_data("webauthn.create", options["challenge"])),
                "attestationObject": b64url(attestation),
            },
        }

    def get(self, challenge: str, *, count: int | None = None, rp_id: str | None = None) -> dict:
        """navigator.credentials.get: an assertion over `challenge` (base64url)."""
        self.count = self.count + 1 if count is None else count
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([UP_UV]) + self.count.to_bytes(4, "big")
        )
        client = self._client_data("webauthn.get", challenge)
        signature = self.key.sign(auth_data + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(auth_data),
                "clientDataJSON": b64url(client),
                "signature": b64url(signature),
            },
        }


def flip_byte(text: str, index: int = 10) -> str:
    """base64url text with one byte of what it encodes changed."""
    data = bytearray(unb64url(text))
    data[index] ^= 0x01
    return b64url(bytes(data))
