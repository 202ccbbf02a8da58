"""Passkey (WebAuthn) proofs of approval, in plain Python plus `cryptography`
(no Django), so that the portal, the worker and an auditor's offline check
of an export run the same code.

What an approver's authenticator signs: a challenge that is the SHA-256 of
the canonical JSON of a *statement* — the ticket, its content hash, the
objects it binds (by identity), the policy terms it was filed under and a
single-use nonce. The authenticator signs `authenticatorData ||
SHA-256(clientDataJSON)`, and clientDataJSON carries the challenge, so a
signature that verifies under the approver's public key proves that this
person's authenticator approved exactly that statement.

Binary values travel as unpadded base64url, as WebAuthn's JSON does."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

PURPOSE = "twokey-approval/1"
# COSE algorithm ids the portal accepts, and what each key must be.
ES256, EDDSA, RS256 = -7, -8, -257
ALGORITHMS = (ES256, EDDSA, RS256)
_FLAG_USER_PRESENT = 0x01
_FLAG_USER_VERIFIED = 0x04


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Bytes of unpadded (or padded) base64url text; ValueError when it is not."""
    if not isinstance(text, str):
        raise ValueError("not base64url text")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url text") from exc


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_digest(
    *, kind: str, connector: int | None, connector_pin: dict | None, params: dict, not_before, not_after
) -> str:
    """A ticket's content hash from its content (the portal's own formula,
    approvals.services.tickets.content_hash, with the window as ISO text)."""
    body = {
        "kind": kind,
        "connector": connector,
        "connector_pin": connector_pin,
        "params": params,
        "not_before": not_before,
        "not_after": not_after,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def statement(*, ticket_id: int, content_hash: str, objects: dict, terms: dict, nonce: str) -> dict:
    """What an approver signs: this ticket, this content, these objects,
    these terms, once."""
    return {
        "purpose": PURPOSE,
        "ticket": ticket_id,
        "content_hash": content_hash,
        "objects": objects,
        "terms": terms,
        "nonce": nonce,
    }


def challenge_for(body: dict) -> bytes:
    return hashlib.sha256(canonical(body)).digest()


@dataclass(frozen=True)
class Proof:
    """One passkey assertion, as stored with the approval and in its audit entry."""

    credential_id: str
    authenticator_data: str
    client_data_json: str
    signature: str
    nonce: str

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Proof:
        if not isinstance(raw, dict):
            raise ValueError("the passkey proof is not an object")
        values = {name: raw.get(name) for name in cls.__dataclass_fields__}
        if not all(isinstance(v, str) and v for v in values.values()):
            raise ValueError("the passkey proof lacks a field")
        return cls(**values)


def client_data(proof: Proof) -> dict:
    """The proof's clientDataJSON, parsed; ValueError when it cannot be."""
    try:
        data = json.loads(unb64url(proof.client_data_json))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("the client data is not JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("the client data is not a JSON object")
    return data


def sign_count(proof: Proof) -> int:
    data = unb64url(proof.authenticator_data)
    if len(data) < 37:
        raise ValueError("the authenticator data is too short")
    return int.from_bytes(data[33:37], "big")


def public_key_spki(public_key) -> str:
    """A `cryptography` public key as base64url SubjectPublicKeyInfo (DER):
    what the portal stores and exports."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(der)


def _verify_signature(public_key_b64: str, alg: int, signature: bytes, signed: bytes) -> str | None:
    try:
        key = serialization.load_der_public_key(unb64url(public_key_b64))
    except ValueError:
        return "the registered public key cannot be read"
    try:
        if alg == ES256 and isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        elif alg == EDDSA and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        elif alg == RS256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            return f"the registered key does not fit algorithm {alg}"
    except InvalidSignature:
        return "the signature does not verify under the approver's registered public key"
    return None


def proof_problem(
    proof: Proof,
    *,
    public_key: str,
    alg: int,
    rp_id: str,
    expected_challenge: bytes,
    origins: Iterable[str] | None = None,
) -> str | None:
    """Why `proof` does not prove an approval of the statement whose
    challenge is `expected_challenge`, in words, or None: the client data
    is a WebAuthn assertion over that challenge (from one of `origins`,
    when given), the authenticator data names `rp_id` and says the user was
    present and verified, and the signature verifies under `public_key`
    (base64url SPKI) with `alg`."""
    try:
        authenticator_data = unb64url(proof.authenticator_data)
        signature = unb64url(proof.signature)
        client_json = unb64url(proof.client_data_json)
        client = client_data(proof)
    except ValueError as exc:
        return f"the proof cannot be read ({exc})"
    if client.get("type") != "webauthn.get":
        return "the client data is not an assertion (type webauthn.get)"
    if client.get("challenge") != b64url(expected_challenge):
        return "the assertion was made for another challenge: another ticket, other content or other terms"
    if origins is not None and client.get("origin") not in set(origins):
        return f"the assertion comes from another origin ({client.get('origin')!r})"
    if len(authenticator_data) < 37:
        return "the authenticator data is too short"
    if authenticator_data[:32] != hashlib.sha256(rp_id.encode()).digest():
        return f"the assertion was made for another site than {rp_id!r}"
    flags = authenticator_data[32]
    if not flags & _FLAG_USER_PRESENT or not flags & _FLAG_USER_VERIFIED:
        return "the authenticator did not verify the user"
    return _verify_signature(public_key, alg, signature, authenticator_data + hashlib.sha256(client_json).digest())


def counter_problem(stored: int, new: int) -> str | None:
    """A sign count that does not rise means a second copy of the key (a
    cloned authenticator); authenticators without a counter send 0 always."""
    if stored == 0 and new == 0:
        return None
    if new <= stored:
        return f"the authenticator's sign count went from {stored} to {new}: a cloned authenticator?"
    return None


class ExportProofs:
    """The passkey proofs of an audit export, gathered entry by entry in seq
    order: the keys people registered (and removed), each ticket's signed
    terms and its approvals. `report()` then says, per ticket that asked
    for passkeys, how many approvals it required and how many are proved."""

    def __init__(self):
        self.keys: dict[str, dict] = {}  # credential id -> {user, public_key, alg, rp_id, removed}
        self.tickets: dict[int, dict] = {}  # ticket id -> {ref, required, statement fields, approved}
        self.proved: dict[int, set[int]] = {}
        self.failures: list[str] = []

    def take(self, *, seq: int, actor_id: int | None, action: str, ticket_id: int | None, details: dict) -> None:
        if action == "auth.passkey_registered":
            self.keys[details.get("credential_id", "")] = {
                "user": actor_id,
                "public_key": details.get("public_key", ""),
                "alg": details.get("alg"),
                "rp_id": details.get("rp_id", ""),
                "removed": False,
            }
        elif action == "auth.passkey_removed":
            key = self.keys.get(details.get("credential_id", ""))
            if key is not None:
                key["removed"] = True
        elif action == "ticket.submitted" and ticket_id is not None and details.get("require_passkey"):
            self._submitted(seq, ticket_id, details)
        elif action == "ticket.approval" and ticket_id in self.tickets:
            self._approval(seq, ticket_id, actor_id, details)
        elif action in ("ticket.approved", "ticket.running", "ticket.succeeded") and ticket_id in self.tickets:
            self.tickets[ticket_id]["approved"] = True

    def _submitted(self, seq: int, ticket_id: int, details: dict) -> None:
        content = details.get("content") or {}
        params = details.get("params") or {}
        recomputed = content_digest(
            kind=details.get("kind", ""),
            connector=content.get("connector"),
            connector_pin=content.get("connector_pin"),
            params=params,
            not_before=content.get("not_before"),
            not_after=content.get("not_after"),
        )
        ref = details.get("ref") or f"ticket {ticket_id}"
        if recomputed != content.get("content_hash"):
            self.failures.append(f"{ref} (entry #{seq}): its content does not hash to the content hash it names")
        self.tickets[ticket_id] = {
            "ref": ref,
            "required": details.get("required_approvals"),
            "content_hash": recomputed,
            "objects": params.get("objects") or {},
            "terms": details.get("terms") or {},
            "approved": False,
        }
        self.proved[ticket_id] = set()

    def _approval(self, seq: int, ticket_id: int, actor_id: int | None, details: dict) -> None:
        ticket = self.tickets[ticket_id]
        where = f"{ticket['ref']}, approval at entry #{seq}"
        try:
            proof = Proof.from_dict(details.get("passkey"))
        except ValueError as exc:
            self.failures.append(f"{where}: no passkey proof ({exc})")
            return
        key = self.keys.get(proof.credential_id)
        if key is None or key["user"] != actor_id:
            self.failures.append(f"{where}: signed with a credential the approver never registered")
            return
        if key["removed"]:
            self.failures.append(f"{where}: signed with a credential removed before")
            return
        body = statement(
            ticket_id=ticket_id,
            content_hash=ticket["content_hash"],
            objects=ticket["objects"],
            terms=ticket["terms"],
            nonce=proof.nonce,
        )
        problem = proof_problem(
            proof,
            public_key=key["public_key"],
            alg=key["alg"],
            rp_id=key["rp_id"],
            expected_challenge=challenge_for(body),
        )
        if problem:
            self.failures.append(f"{where}: {problem}")
            return
        self.proved[ticket_id].add(actor_id)

    def report(self) -> list[str]:
        """One line per ticket that required passkeys, in ticket order."""
        lines = []
        for ticket_id in sorted(self.tickets):
            ticket = self.tickets[ticket_id]
            proved = len(self.proved[ticket_id])
            short = ticket["approved"] and proved < (ticket["required"] or 0)
            lines.append(
                f"{ticket['ref']}: approvals required {ticket['required']}, proved {proved}"
                + (" — APPROVED WITHOUT ENOUGH PROOF" if short else "")
            )
        return lines

    def broken(self) -> list[str]:
        """What fails: proofs that do not verify, and tickets approved with fewer proofs than required."""
        short = [
            f"{t['ref']} went ahead with {len(self.proved[pk])} proved of {t['required']} required approvals"
            for pk, t in sorted(self.tickets.items())
            if t["approved"] and len(self.proved[pk]) < (t["required"] or 0)
        ]
        return [*self.failures, *short]
