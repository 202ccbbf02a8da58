"""The web runs without CREDENTIALS_KEY: a real gunicorn started as the web
service (TWOKEY_SERVICE=web, only the public key), a real Celery worker
holding the key, the vcsim lab, the test PostgreSQL and Redis. A vm_migrate
filed and approved through the web's API moves the VM, the inventory the web
shows comes from the worker, and the audit chain still verifies."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from accounts.services import token_issue
from approvals.errors import InventoryUnavailable
from approvals.inventory import fill_inventory
from approvals.models import Ticket
from audit.drift import detect_drift
from audit.models import AuditEntry, Finding, FindingKind
from audit.verify import verify_chain
from tests.approvals.helpers import body
from tests.conftest import register_lab
from tests.connectors.relay import Relay
from tests.fixtures.slapd import free_port
from tests.fixtures.vcsim import VcsimProcess, host_of
from tests.fixtures.workers import subprocess_database_url

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


class Web:
    """gunicorn serving portal.wsgi, as the Procfile starts it."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="twokey-web-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(  # noqa: S603 - our own web server
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "60",
                "--access-logfile",
                "-",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> "Web":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the web exited ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/accounts/login/", timeout=5) as r:  # noqa: S310
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the web did not answer within {timeout}s:\n{self.output()}")

    def call(self, method: str, path: str, token: str, payload: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(  # noqa: S310 - loopback http
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(payload).encode() if payload is not None else None,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)


def web_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_KEY"}
    env.update(
        TWOKEY_SERVICE="web",
        CREDENTIALS_PUBLIC_KEY=settings.CREDENTIALS_PUBLIC_KEY,  # derived from the tests' key
        DATABASE_URL=subprocess_database_url(),
        INVENTORY_WAIT_SECONDS="20",
    )
    env.update(extra)
    return env


@pytest.fixture
def web():
    started = []

    def start(**extra) -> Web:
        server = Web(web_env(**extra))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_for(ticket_id: int, state: str, timeout: float = 90) -> Ticket:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = Ticket.objects.get(pk=ticket_id)
        if ticket.state == state:
            return ticket
        if ticket.state in ("failed", "rejected", "expired", "cancelled"):
            break
        time.sleep(0.2)
    raise AssertionError(f"ticket {ticket_id} is {ticket.state} ({ticket.error}), not {state}")


def test_the_web_refuses_to_start_with_the_credentials_key(web):
    server = web(CREDENTIALS_KEY=settings.CREDENTIALS_KEY)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the web started with CREDENTIALS_KEY in its environment:\n{server.output()}")
    assert server.proc.returncode != 0
    output = server.output()
    assert "CREDENTIALS_KEY must not be in the environment of the web process" in output
    assert settings.CREDENTIALS_KEY not in output


def test_a_migration_through_a_web_without_keys(own_lab, fresh_vcsim, requester, approver, workers, web):
    (worker,) = workers(1)
    server = web().wait_ready()
    requester_token = token_issue(user=requester, actor_name="test")
    approver_token = token_issue(user=approver, actor_name="test")

    # The inventory the web shows is read by the worker for it.
    status, inventory = server.call("GET", f"/api/connectors/{own_lab.pk}/inventory/?refresh=1", requester_token)
    assert status == 200, inventory
    source_id = next(vm["host"] for vm in inventory["vms"] if vm["name"] == "dev-app-01")
    source = next(h["name"] for h in inventory["hosts"] if h["id"] == source_id)
    target = "dev-esx-02" if source == "dev-esx-01" else "dev-esx-01"
    assert "approvals.tasks.read_inventory" in worker.output()

    status, ticket = server.call(
        "POST",
        "/api/tickets/",
        requester_token,
        body(own_lab, "vm_migrate", {"vm": "dev-app-01", "target_host": target}),
    )
    assert status == 201, ticket
    status, approved = server.call("POST", f"/api/tickets/{ticket['id']}/approve/", approver_token, {})
    assert status == 200, approved

    done = wait_for(ticket["id"], "succeeded")
    assert done.result["object_id"]
    check = fresh_vcsim.connect()
    assert host_of(check, "dev-app-01") == target

    report = detect_drift(connector=own_lab)
    assert report.error == "" and report.raised == ()
    assert not Finding.objects.filter(connector=own_lab).exists()
    chain = verify_chain()
    assert chain.ok, chain.reason

    for text in (server.output(), json.dumps(inventory), json.dumps(ticket), json.dumps(approved)):
        assert fresh_vcsim.password not in text
        assert settings.CREDENTIALS_KEY not in text


def test_without_a_worker_the_web_says_the_inventory_is_unavailable(own_lab, requester, web):
    server = web(INVENTORY_WAIT_SECONDS="1").wait_ready()
    token = token_issue(user=requester, actor_name="test")
    status, answer = server.call("GET", f"/api/connectors/{own_lab.pk}/inventory/?refresh=1", token)
    assert status == 503
    assert "no worker read the inventory" in json.dumps(answer)


def test_the_worker_refuses_an_unpinned_vcenter_and_the_web_says_why(db, roles, fresh_vcsim, workers, settings):
    relay = Relay()
    try:
        relay.point_at(fresh_vcsim)
        connector = register_lab(
            SimpleNamespace(url=relay.url, username=fresh_vcsim.username, password=fresh_vcsim.password),
            name="relayed",
        )
        with VcsimProcess(username=fresh_vcsim.username, password=fresh_vcsim.password) as other:
            relay.point_at(other)
            workers(1, beat=False)
            settings.CREDENTIALS_KEY = ""  # from here on this process is the web: it must ask the worker
            settings.INVENTORY_WAIT_SECONDS = 20
            with pytest.raises(InventoryUnavailable, match="not the pinned hypervisor") as unavailable:
                fill_inventory(connector)
            assert fresh_vcsim.password not in str(unavailable.value)
            finding = Finding.objects.get(connector=connector, kind=FindingKind.CONNECTOR_IDENTITY)
            assert finding.observed["seen"] == other.connect().RetrieveContent().about.instanceUuid.lower()
            assert AuditEntry.objects.filter(action="connector.identity_refused", object_id=str(connector.pk)).exists()
    finally:
        relay.close()
