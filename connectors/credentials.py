"""Connector passwords at rest: sealed to the worker's public key.

CREDENTIALS_KEY (url-safe base64 of 32 random bytes) is an X25519 private
key held only by the worker and the server shell. Every other process holds
CREDENTIALS_PUBLIC_KEY and can seal a password (libsodium sealed box:
an ephemeral X25519 key, XSalsa20-Poly1305) but never open one, so neither
a database dump nor a compromised web process reveals the passwords.

Tokens written before sealing existed are Fernet tokens under the same
CREDENTIALS_KEY; they are still read where the private key is held.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

SEALED_PREFIX = "sealed:"
FERNET_PREFIX = "gAAAA"


class CredentialsUnavailable(Exception):
    """This process holds no key for the operation (the web process never
    holds CREDENTIALS_KEY)."""


class CredentialsUnreadable(Exception):
    """The stored secret was sealed to another key, or was altered."""


def _key_bytes(value: str, name: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError) as exc:
        raise CredentialsUnavailable(f"{name} is not url-safe base64") from exc
    if len(raw) != 32:
        raise CredentialsUnavailable(f"{name} must encode exactly 32 bytes")
    return raw


def can_unseal() -> bool:
    """Whether this process holds the private key (worker, shell)."""
    return bool(getattr(settings, "CREDENTIALS_KEY", ""))


def _private_key() -> bytes:
    if not can_unseal():
        raise CredentialsUnavailable("this process holds no CREDENTIALS_KEY: only the worker reads connector passwords")
    return _key_bytes(settings.CREDENTIALS_KEY, "CREDENTIALS_KEY")


def seal(plaintext: str) -> str:
    """Seal `plaintext` to the worker's public key. Needs only the public key."""
    public = getattr(settings, "CREDENTIALS_PUBLIC_KEY", "")
    if not public:
        raise CredentialsUnavailable("CREDENTIALS_PUBLIC_KEY is not set: cannot seal connector passwords")
    box = SealedBox(PublicKey(_key_bytes(public, "CREDENTIALS_PUBLIC_KEY")))
    return SEALED_PREFIX + base64.urlsafe_b64encode(box.encrypt(plaintext.encode("utf-8"))).decode()


def is_sealed(token: str) -> bool:
    """Whether `token` looks like something seal() made (it is not opened)."""
    if not token.startswith(SEALED_PREFIX):
        return False
    try:
        body = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) :].encode())
    except (binascii.Error, ValueError):
        return False
    # An ephemeral public key (32 bytes) and a MAC (16 bytes) at least.
    return len(body) >= 48


def unseal(token: str) -> str:
    """The plaintext of a sealed (or legacy Fernet) token. Raises
    CredentialsUnavailable where this process holds no private key,
    CredentialsUnreadable when the token does not open with it."""
    raw = _private_key()
    if token.startswith(FERNET_PREFIX):
        try:
            return Fernet(settings.CREDENTIALS_KEY.encode()).decrypt(token.encode()).decode("utf-8")
        except InvalidToken as exc:
            raise CredentialsUnreadable("connector password cannot be decrypted with CREDENTIALS_KEY") from exc
    if not is_sealed(token):
        raise CredentialsUnreadable("connector password is neither sealed nor a known legacy token")
    body = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) :].encode())
    try:
        return SealedBox(PrivateKey(raw)).decrypt(body).decode("utf-8")
    except (CryptoError, UnicodeDecodeError) as exc:
        raise CredentialsUnreadable("connector password cannot be opened with CREDENTIALS_KEY") from exc
