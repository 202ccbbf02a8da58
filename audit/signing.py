"""Signed checkpoints of the audit chain, in plain Python (the standard
library and `cryptography`, no Django), shared by the portal that signs, the
witness that countersigns and the offline verifier.

A checkpoint says "the chain's entry #seq has this hash", signed at a time
with the portal's Ed25519 key (AUDIT_SIGNING_KEY). The witness countersigns
the checkpoint together with the time it witnessed it. Keys travel as url-safe
base64 of their 32 raw bytes; signatures as url-safe base64 of 64 bytes.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.chain import canonical

CHECKPOINT_FORMAT = "twokey-audit-checkpoint/1"
COSIGNATURE_FORMAT = "twokey-audit-cosignature/1"


class SigningKeyError(ValueError):
    """A key that cannot be read."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError, AttributeError) as exc:
        raise SigningKeyError(f"{what} is not url-safe base64") from exc
    if len(raw) != size:
        raise SigningKeyError(f"{what} must encode exactly {size} bytes")
    return raw


def generate_private_key() -> str:
    """A new Ed25519 private key: 32 random bytes, url-safe base64."""
    return _b64(secrets.token_bytes(32))


def private_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_unb64(text, 32, "the signing key"))


def public_key_text(key: Ed25519PrivateKey | str) -> str:
    """The public key of a private key (object or text), as text."""
    if isinstance(key, str):
        key = private_key(key)
    return _b64(key.public_key().public_bytes_raw())


def public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(text, 32, "the public key"))


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return _b64(key.sign(message))


def signature_holds(key: Ed25519PublicKey | str, message: bytes, signature: str) -> bool:
    """Whether `signature` (text) is `key`'s over `message`; False for any
    malformed key or signature."""
    try:
        if isinstance(key, str):
            key = public_key(key)
        key.verify(_unb64(signature, 64, "the signature"), message)
    except (InvalidSignature, SigningKeyError, TypeError, ValueError):
        return False
    return True


def checkpoint_message(*, seq: int, hash: str, signed_at: str) -> bytes:
    """What the portal signs: entry #seq has `hash`, as of `signed_at` (ISO 8601)."""
    return canonical({"format": CHECKPOINT_FORMAT, "seq": seq, "hash": hash, "signed_at": signed_at})


def cosignature_message(*, seq: int, hash: str, signed_at: str, signature: str, witnessed_at: str) -> bytes:
    """What the witness signs: the portal's checkpoint and its signature, and
    when the witness saw that the checkpoint extended what it had witnessed."""
    return canonical(
        {
            "format": COSIGNATURE_FORMAT,
            "seq": seq,
            "hash": hash,
            "signed_at": signed_at,
            "signature": signature,
            "witnessed_at": witnessed_at,
        }
    )


def cosigned_problem(checkpoint: dict[str, Any], *, portal_key: str, witness_key: str) -> str | None:
    """Why a cosigned checkpoint (seq, hash, signed_at, signature,
    witnessed_at, cosignature) does not hold under the two public keys, or
    None when both signatures do."""
    try:
        seq, digest = checkpoint["seq"], checkpoint["hash"]
        signed_at, signature = checkpoint["signed_at"], checkpoint["signature"]
        witnessed_at, cosignature = checkpoint["witnessed_at"], checkpoint["cosignature"]
    except (KeyError, TypeError):
        return "the witnessed checkpoint lacks a field"
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or not all(isinstance(v, str) for v in (digest, signed_at, signature, witnessed_at, cosignature))
    ):
        return "the witnessed checkpoint has a bad value"
    if not signature_holds(portal_key, checkpoint_message(seq=seq, hash=digest, signed_at=signed_at), signature):
        return f"checkpoint #{seq}: the portal's signature does not verify"
    cosigned = cosignature_message(
        seq=seq, hash=digest, signed_at=signed_at, signature=signature, witnessed_at=witnessed_at
    )
    if not signature_holds(witness_key, cosigned, cosignature):
        return f"checkpoint #{seq}: the witness's signature does not verify"
    return None


def short_time(iso: str) -> str:
    """An ISO 8601 time as the reports print it (to the second, UTC as given)."""
    return iso.replace("T", " ")[:19]


def truncated_reason(
    *, witnessed_seq: int, witnessed_at: str, last_seq: int, ends: str = "the database now ends"
) -> str:
    return f"entries up to #{witnessed_seq:,} were witnessed at {short_time(witnessed_at)}; {ends} at #{last_seq:,}"


def differs_reason(*, seq: int, witnessed_at: str) -> str:
    return (
        f"entry #{seq:,} differs from what was witnessed at {short_time(witnessed_at)} "
        "(rewritten, or the log was forked or restored from an older copy)"
    )
