"""The shared passkey verifier (audit/passkeys.py), which the portal, the
worker and the offline check of an export all run: a proof verifies only
over the statement it was made for, under the key it was made with."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit import passkeys as proofs
from tests.audit.passkey_authenticator import SoftAuthenticator, flip_byte

TERMS = {"required_approvals": 2, "approver_group": 3, "require_otp": False, "require_passkey": True}


def body(ticket_id=7, nonce="n-1", content_hash="ab" * 32):
    return proofs.statement(
        ticket_id=ticket_id, content_hash=content_hash, objects={"vm": {"id": "vm-1"}}, terms=TERMS, nonce=nonce
    )


def signed(authenticator, statement, **kwargs):
    assertion = authenticator.get(proofs.b64url(proofs.challenge_for(statement)), **kwargs)
    r = assertion["response"]
    return proofs.Proof(
        credential_id=assertion["id"],
        authenticator_data=r["authenticatorData"],
        client_data_json=r["clientDataJSON"],
        signature=r["signature"],
        nonce=statement["nonce"],
    )


def problem(authenticator, proof, statement, **kwargs):
    return proofs.proof_problem(
        proof,
        public_key=proofs.public_key_spki(authenticator.key.public_key()),
        alg=proofs.ES256,
        rp_id="testserver",
        expected_challenge=proofs.challenge_for(statement),
        **kwargs,
    )


def test_a_proof_verifies_over_its_own_statement():
    authenticator = SoftAuthenticator()
    statement = body()
    assert problem(authenticator, signed(authenticator, statement), statement, origins=["http://testserver"]) is None


@pytest.mark.parametrize("field", ["signature", "authenticator_data", "client_data_json"])
def test_one_byte_changed_anywhere_fails(field):
    authenticator = SoftAuthenticator()
    statement = body()
    proof = signed(authenticator, statement)
    index = 40 if field == "signature" else 12
    tampered = proofs.Proof(**{**proof.as_dict(), field: flip_byte(getattr(proof, field), index)})
    assert problem(authenticator, tampered, statement) is not None


@pytest.mark.parametrize(
    "other", [body(ticket_id=8), body(nonce="n-2"), body(content_hash="cd" * 32)], ids=["ticket", "nonce", "content"]
)
def test_a_proof_for_another_statement_fails(other):
    authenticator = SoftAuthenticator()
    proof = signed(authenticator, body())
    assert "another challenge" in problem(authenticator, proof, other)


def test_another_key_another_site_or_origin_fails():
    authenticator, thief = SoftAuthenticator(), SoftAuthenticator()
    statement = body()
    assert "does not verify" in problem(thief, signed(authenticator, statement), statement)
    assert "another site" in problem(authenticator, signed(authenticator, statement, rp_id="evil.example"), statement)
    assert "another origin" in problem(
        authenticator, signed(authenticator, statement), statement, origins=["https://x"]
    )


def test_a_key_of_another_algorithm_is_refused():
    authenticator = SoftAuthenticator()
    statement = body()
    other = proofs.public_key_spki(ed25519.Ed25519PrivateKey.generate().public_key())
    found = proofs.proof_problem(
        signed(authenticator, statement),
        public_key=other,
        alg=proofs.ES256,
        rp_id="testserver",
        expected_challenge=proofs.challenge_for(statement),
    )
    assert "does not fit" in found


def test_sign_count_must_rise():
    assert proofs.counter_problem(0, 0) is None  # an authenticator without a counter
    assert proofs.counter_problem(4, 5) is None
    assert "cloned" in proofs.counter_problem(5, 5)
    assert "went from 5 to 3" in proofs.counter_problem(5, 3)
    authenticator = SoftAuthenticator()
    assert proofs.sign_count(signed(authenticator, body(), count=41)) == 41


def test_content_digest_is_the_portals_content_hash():
    from datetime import UTC, datetime

    from approvals.services.tickets import content_hash

    class Connector:
        pk, instance_uuid, tls_fingerprint = 3, "uuid-1", "AB:CD"

    when = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    params = {"vm": "vm-1", "objects": {"vm": {"id": "vm-1", "name": "ü"}}}
    expected = content_hash(kind="vm_migrate", connector=Connector(), params=params, not_before=when, not_after=None)
    assert expected == proofs.content_digest(
        kind="vm_migrate",
        connector=3,
        connector_pin={"instance_uuid": "uuid-1", "tls_fingerprint": "AB:CD"},
        params=params,
        not_before=when.isoformat(),
        not_after=None,
    )
