"""The witness against a table owner. Real processes throughout: a Celery
worker (with beat) signs checkpoints every second, gunicorn serves the
portal's API, `python -m audit.witness` polls it as an auditor, keeps its own
SQLite store and serves what it witnessed; the test PostgreSQL and Redis.

Each attack is one the chain alone does not catch (the triggers off, as the
table's owner can; the entries re-chained with the HMAC key, which the test
holds; an older copy restored from pg_dump). Each is named at the right entry
by `verify_audit`, by GET /api/audit/verify/ and by the offline verifier
given only the witness's file and the two public keys."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.services import token_issue
from approvals.models import Ticket
from audit import signing
from audit.checkpoints import public_key as portal_public_key
from audit.export import stream_json
from audit.models import AuditEntry, ChainHead, Checkpoint
from audit.verify import verify_chain
from audit.witness import witness_key
from audit.writer import entry_fields, entry_hash, record
from tests.approvals.helpers import file_ticket, migrate_within_zone
from tests.audit.conftest import triggers_off
from tests.fixtures.slapd import free_port
from tests.fixtures.workers import subprocess_database_url
from tests.portal.test_web_without_keys import Web, web_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_checkpoints")]

ROOT = Path(__file__).resolve().parents[2]
# What the witness and the offline verifier get: no portal keys, no database.
BARE_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LOG_LEVEL": "INFO"}  # noqa: S108


@pytest.fixture
def fast_checkpoints(monkeypatch):
    """Read by the workers fixture when it starts: beat signs every second."""
    monkeypatch.setenv("AUDIT_CHECKPOINT_SECONDS", "1")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http
        return json.loads(response.read())


class WitnessProcess:
    """python -m audit.witness run, against the portal at `portal_url`."""

    def __init__(self, *, port: int, portal_url: str, token: str, data_dir: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="twokey-witness-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(  # noqa: S603 - our own witness
            [
                *(sys.executable, "-m", "audit.witness", "run", "--portal", portal_url),
                *("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--interval", "0.3"),
            ],
            cwd=ROOT,
            env={**BARE_ENV, "WITNESS_API_TOKEN": token},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def newest(self) -> dict | None:
        return get_json(f"{self.url}/latest")["checkpoint"]

    def wait_for(self, seq: int, timeout: float = 45) -> dict:
        """The newest cosigned checkpoint once it covers entry #seq."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the witness exited:\n{self.output()}")
            try:
                newest = self.newest()
                if newest and newest["seq"] >= seq:
                    return newest
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"nothing witnessed up to #{seq} after {timeout}s:\n{self.output()}")

    def forks(self) -> list[dict]:
        return get_json(f"{self.url}/forks")["forks"]

    def export(self, path: Path) -> Path:
        with urllib.request.urlopen(f"{self.url}/export", timeout=30) as response:  # noqa: S310
            path.write_bytes(response.read())
        return path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=10)


@pytest.fixture
def witnessed(auditor, entries, workers, settings, tmp_path):
    """A worker signing checkpoints every second, the web, and a witness
    watching it; the web and this process verify against that witness."""
    workers(1, beat=True)
    witness_dir = tmp_path / "witness"
    witness_public = signing.public_key_text(witness_key(witness_dir))
    witness_url = f"http://127.0.0.1:{free_port()}"
    settings.WITNESS_URL, settings.WITNESS_PUBLIC_KEY = witness_url, witness_public
    started = []

    def web(**extra) -> Web:
        env = web_env(
            AUDIT_SIGNING_PUBLIC_KEY=portal_public_key(),
            WITNESS_URL=witness_url,
            WITNESS_PUBLIC_KEY=witness_public,
            **extra,
        )
        started.append(Web(env))
        return started[-1].wait_ready()

    server = web()
    token = token_issue(user=auditor, actor_name="test")
    entries(40)
    witness = WitnessProcess(
        port=int(witness_url.rsplit(":", 1)[1]),
        portal_url=f"http://127.0.0.1:{server.port}",
        token=token,
        data_dir=witness_dir,
    )
    started.append(witness)
    yield SimpleNamespace(
        web=web, server=server, witness=witness, token=token, witness_key=witness_public, tmp=tmp_path
    )
    for process in started:
        process.stop()


def witnessed_up_to_head(scene) -> dict:
    return scene.witness.wait_for(ChainHead.objects.get(id=1).seq)


def api_verify(server: Web, token: str) -> dict:
    status, report = server.call("GET", "/api/audit/verify/", token)
    assert status == 200, report
    return report


def command_verify() -> str:
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit")
    return str(broken.value)


def offline_verify(scene, export: Path) -> subprocess.CompletedProcess:
    """python -m audit.verify_export with the witness's file and the public keys only."""
    witness_file = scene.witness.export(scene.tmp / "witnessed.jsonl")
    return subprocess.run(  # noqa: S603 - our own verifier
        [
            *(sys.executable, "-m", "audit.verify_export", str(export), "--witness", str(witness_file)),
            f"--witness-public-key={scene.witness_key}",
            f"--portal-public-key={portal_public_key()}",
        ],
        cwd=ROOT,
        env=BARE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def export_here(path: Path) -> Path:
    """The JSON export the API streams, written by the same code without
    the request (whose own audit entry would change the log under test)."""
    path.write_text("".join(stream_json(AuditEntry.objects.all())))
    return path


def test_tail_truncation_with_the_head_reset_is_named(witnessed):
    scene = witnessed
    server = scene.server
    newest = witnessed_up_to_head(scene)
    assert verify_chain().ok and api_verify(server, scene.token)["witnessed_seq"] == newest["seq"]
    ends = newest["seq"] - 12
    kept = AuditEntry.objects.get(seq=ends)

    with triggers_off(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq > %s", [ends])
        cursor.execute("DELETE FROM audit_checkpoint WHERE seq > %s", [ends])
        cursor.execute(
            "UPDATE audit_chainhead SET seq = %s, hash = %s, created_at = %s", [ends, kept.hash, kept.created_at]
        )

    # The chain alone holds: this is the attack the issue saw pass.
    assert verify_chain(witness=None).ok
    expected = (
        f"entries up to #{newest['seq']:,} were witnessed at {signing.short_time(newest['witnessed_at'])}; "
        f"the database now ends at #{ends:,}"
    )
    assert command_verify() == f"BROKEN at entry #{ends + 1}: {expected} ({ends} entries read)"
    report = api_verify(server, scene.token)
    assert (report["ok"], report["first_broken"], report["reason"]) == (False, ends + 1, expected)
    offline = offline_verify(scene, export_here(scene.tmp / "truncated.json"))
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert offline.stdout.strip() == f"BROKEN at entry #{ends + 1}: " + expected.replace(
        "the database now ends", "the export ends"
    )

    # The witness saw it too, refused it and kept the evidence; what it witnessed stands.
    deadline = time.monotonic() + 20
    while not scene.witness.forks() and time.monotonic() < deadline:
        time.sleep(0.2)
    (fork,) = scene.witness.forks()
    assert fork["reason"].startswith(f"the portal no longer holds entry #{newest['seq']} as witnessed")
    assert fork["evidence"]["witnessed"]["hash"] == newest["hash"]
    assert "CRITICAL" in scene.witness.output() and "FORK" in scene.witness.output()
    assert scene.witness.newest() == newest


def rechain_from(seq: int, **changes) -> None:
    """Rewrite entry #seq with `changes` and every later entry's link, with
    fresh HMACs (the key in hand), and move the head: a chain that verifies."""
    rows = list(AuditEntry.objects.filter(seq__gte=seq).order_by("seq"))
    prev_hash = AuditEntry.objects.get(seq=seq - 1).hash
    with triggers_off(), connection.cursor() as cursor:
        for entry in rows:
            for name, value in (changes if entry.seq == seq else {}).items():
                setattr(entry, name, value)
            fields = entry_fields(
                seq=entry.seq,
                created_at=entry.created_at,
                actor_id=entry.actor_id,
                actor_name=entry.actor_name,
                action=entry.action,
                ticket_id=entry.ticket_id,
                object_type=entry.object_type,
                object_id=entry.object_id,
                source_ip=entry.source_ip,
                details=entry.details,
                prev_hash=prev_hash,
            )
            digest = entry_hash(fields)
            cursor.execute(
                "UPDATE audit_auditentry SET details = %s, prev_hash = %s, hash = %s WHERE seq = %s",
                [json.dumps(entry.details), prev_hash, digest, entry.seq],
            )
            prev_hash = digest
        cursor.execute("UPDATE audit_chainhead SET hash = %s", [prev_hash])
        cursor.execute("DELETE FROM audit_checkpoint WHERE seq >= %s", [seq])


def test_a_rewritten_entry_with_a_recomputed_hmac_is_named(witnessed):
    scene = witnessed
    server = scene.server
    newest = witnessed_up_to_head(scene)
    target = newest["seq"] - 20
    covering = json.loads(urllib.request.urlopen(f"{scene.witness.url}/entries/{target}").read())  # noqa: S310

    rechain_from(target, details={"n": -1, "note": "nothing happened here"})

    assert verify_chain(witness=None).ok  # the HMACs and links all hold
    expected = signing.differs_reason(seq=target, witnessed_at=covering["witnessed_at"])
    assert command_verify().startswith(f"BROKEN at entry #{target}: {expected}")
    report = api_verify(server, scene.token)
    assert (report["ok"], report["first_broken"], report["reason"]) == (False, target, expected)
    offline = offline_verify(scene, export_here(scene.tmp / "rewritten.json"))
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert offline.stdout.strip() == f"BROKEN at entry #{target}: {expected}"


def pg(tool: str, *args: str) -> None:
    """Run a PostgreSQL client tool against the test server, as its user."""
    db = connection.settings_dict
    subprocess.run(  # noqa: S603 - the PostgreSQL client tools
        [shutil.which(tool), "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"], *args],
        env={**os.environ, "PGPASSWORD": db["PASSWORD"] or ""},
        check=True,
        capture_output=True,
    )


def test_a_database_restored_from_an_old_backup_is_named(witnessed, settings):
    scene = witnessed
    backup = scene.tmp / "backup.sql"
    old = witnessed_up_to_head(scene)
    name = connection.settings_dict["NAME"]
    restored_seq = ChainHead.objects.get(id=1).seq
    pg("pg_dump", "--no-owner", "-f", str(backup), name)
    for i in range(25):
        record("test.after_backup", actor_name="tester", details={"n": i})
    newest = scene.witness.wait_for(ChainHead.objects.get(id=1).seq)
    assert newest["seq"] > old["seq"]

    restored = f"{name}_restored"
    server = None
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{restored}"')
        cursor.execute(f'CREATE DATABASE "{restored}"')
    try:
        pg("psql", "-q", "-d", restored, "-f", str(backup))
        restored_url = subprocess_database_url().rsplit("/", 1)[0] + f"/{restored}"
        expected = signing.truncated_reason(
            witnessed_seq=newest["seq"], witnessed_at=newest["witnessed_at"], last_seq=restored_seq
        )
        # The command, run as an operator would, against the restored database.
        command = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "verify_audit"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": restored_url,
                "WITNESS_URL": scene.witness.url,
                "WITNESS_PUBLIC_KEY": scene.witness_key,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert command.returncode == 1, command.stdout + command.stderr
        assert f"BROKEN at entry #{restored_seq + 1}: {expected}" in command.stderr
        server = scene.web(DATABASE_URL=restored_url)
        report = api_verify(server, scene.token)
        assert (report["ok"], report["first_broken"], report["reason"]) == (False, restored_seq + 1, expected)
        # The restored portal carries on: its export is itself a new entry, a fork from what was witnessed.
        export = scene.tmp / "restored.json"
        request = urllib.request.Request(  # noqa: S310
            f"http://127.0.0.1:{server.port}/api/audit/export/?format=json",
            headers={"Authorization": f"Token {scene.token}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            export.write_bytes(response.read())
        offline = offline_verify(scene, export)
        assert offline.returncode == 1, offline.stdout + offline.stderr
        witnessed_at = json.loads(
            urllib.request.urlopen(f"{scene.witness.url}/entries/{restored_seq + 1}").read()  # noqa: S310
        )["witnessed_at"]
        assert offline.stdout.strip() == (
            f"BROKEN at entry #{restored_seq + 1}: "
            + signing.differs_reason(seq=restored_seq + 1, witnessed_at=witnessed_at)
        )
    finally:
        if server is not None:
            server.stop()  # its connections would keep the database from being dropped
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')


def test_a_witnessed_log_verifies_everywhere(witnessed):
    scene = witnessed
    server = scene.server
    newest = witnessed_up_to_head(scene)
    report = api_verify(server, scene.token)
    assert (report["ok"], report["witness"], report["witnessed_seq"]) == (True, "checked", newest["seq"])
    out = call_command_output("verify_audit")
    assert f"witness: entries up to #{newest['seq']} witnessed at {newest['witnessed_at']}" in out
    offline = offline_verify(scene, export_here(scene.tmp / "all.json"))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert f"holds every entry witnessed up to #{newest['seq']}" in offline.stdout
    assert scene.witness.forks() == []


def call_command_output(name: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(name, stdout=out)
    return out.getvalue()


def test_a_ticket_reaching_its_final_state_is_checkpointed_at_once(lab, requester, api, workers):
    workers(1, beat=False)  # no beat: only the final state can ask for this checkpoint
    client = api(requester)
    ticket = file_ticket(client, lab, "vm_migrate", migrate_within_zone(client, lab))
    assert client.post(f"/api/tickets/{ticket['id']}/cancel/", {}, format="json").status_code == 200
    cancelled = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.cancelled")
    deadline = time.monotonic() + 30
    while not Checkpoint.objects.filter(seq__gte=cancelled.seq).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    checkpoint = Checkpoint.objects.get(seq__gte=cancelled.seq)
    assert Ticket.objects.get(pk=ticket["id"]).state == "cancelled"
    message = signing.checkpoint_message(seq=checkpoint.seq, hash=checkpoint.hash, signed_at=checkpoint.signed_at)
    assert signing.signature_holds(portal_public_key(), message, checkpoint.signature)
