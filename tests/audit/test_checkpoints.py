"""Signed checkpoints: the worker's signature over the chain head, checked
with the public key alone; never over a tampered tail; served to auditors
with the chain's links. And the comparison with a witness, bisecting to the
first entry that differs. Real PostgreSQL."""

import pytest

from audit import signing
from audit.checkpoints import public_key, sign_checkpoint
from audit.models import Checkpoint
from audit.witnessed import compare_with_witness, first_difference
from tests.audit.conftest import tamper

pytestmark = pytest.mark.django_db


def test_a_checkpoint_signs_the_chain_head(entries):
    written = entries(4)
    checkpoint = sign_checkpoint()
    assert (checkpoint.seq, checkpoint.hash) == (written[-1].seq, written[-1].hash)
    message = signing.checkpoint_message(seq=checkpoint.seq, hash=checkpoint.hash, signed_at=checkpoint.signed_at)
    assert checkpoint.public_key == public_key()
    assert signing.signature_holds(public_key(), message, checkpoint.signature)
    # Another hash under the same signature does not verify.
    forged = signing.checkpoint_message(seq=checkpoint.seq, hash="0" * 64, signed_at=checkpoint.signed_at)
    assert not signing.signature_holds(public_key(), forged, checkpoint.signature)


def test_an_unmoved_head_is_not_signed_again(entries):
    entries(2)
    assert sign_checkpoint() is not None
    assert sign_checkpoint() is None
    entries(1)
    assert sign_checkpoint() is not None
    assert Checkpoint.objects.count() == 2


def test_a_tampered_tail_is_never_signed(entries, caplog):
    entries(3)
    first = sign_checkpoint()
    entries(3)
    tamper("UPDATE audit_auditentry SET details = '{\"n\": 99}' WHERE seq = %s", [first.seq + 2])
    assert sign_checkpoint() is None
    assert f"entry #{first.seq + 2}" in caplog.text and "not signing" in caplog.text
    assert Checkpoint.objects.count() == 1


def test_a_head_moved_back_is_never_signed(entries, caplog):
    written = entries(5)
    sign_checkpoint()
    tamper("DELETE FROM audit_auditentry WHERE seq > %s", [written[1].seq])
    tamper("UPDATE audit_chainhead SET seq = %s, hash = %s", [written[1].seq, written[1].hash])
    assert sign_checkpoint() is None
    assert "behind the last checkpoint" in caplog.text


def test_auditors_read_checkpoints_and_links(entries, api, auditor, requester):
    written = entries(3)
    checkpoint = sign_checkpoint()
    client = api(auditor)
    listed = client.get("/api/audit/checkpoints/", {"after": 0}).json()
    assert listed["public_key"] == public_key()
    assert listed["checkpoints"] == [
        {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "signed_at": checkpoint.signed_at,
            "public_key": public_key(),
            "signature": checkpoint.signature,
        }
    ]
    assert client.get("/api/audit/checkpoints/", {"after": checkpoint.seq}).json()["checkpoints"] == []
    links = client.get("/api/audit/links/", {"after": written[0].seq, "upto": written[2].seq}).json()["links"]
    assert links == [[e.seq, e.prev_hash, e.hash] for e in written[1:]]
    assert client.get("/api/audit/links/", {"after": "x"}).status_code == 400
    assert api(requester).get("/api/audit/links/").status_code == 403


def test_first_difference_finds_where_two_chains_part():
    for parted in (1, 2, 37, 99, 100):
        assert first_difference(1, 100, lambda seq, parted=parted: seq < parted) == parted


def test_the_witness_comparison_names_truncation_and_rewrite():
    witnessed = {seq: (f"h{seq}", "2026-01-01T12:03:00+00:00") for seq in range(1, 1205)}
    newest = {"seq": 1204, "hash": "h1204", "witnessed_at": "2026-01-01T12:03:00+00:00"}

    def compare(db):
        return compare_with_witness(last_seq=max(db), hash_at=db.get, newest=newest, witnessed_at=witnessed.get)

    assert compare({seq: f"h{seq}" for seq in range(1, 1300)}) is None
    seq, reason = compare({seq: f"h{seq}" for seq in range(1, 1181)})
    assert seq == 1181
    assert reason == "entries up to #1,204 were witnessed at 2026-01-01 12:03:00; the database now ends at #1,180"
    rewritten = {seq: (f"h{seq}" if seq < 700 else f"x{seq}") for seq in range(1, 1300)}
    seq, reason = compare(rewritten)
    assert seq == 700 and reason.startswith("entry #700 differs from what was witnessed at 2026-01-01 12:03:00")
