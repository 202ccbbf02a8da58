"""Connectors are pinned to the vCenter that answered at registration: its
instance UUID and its TLS certificate. When the same URL later answers from
another server, the worker refuses before anything carrying credentials is
sent, the ticket fails in words, and one finding records it. Real vcsim labs
behind a relay in this process whose target the test switches."""

import hashlib
import ssl
from types import SimpleNamespace

import pytest

from approvals.inventory import inventory_answer
from approvals.services import execution
from audit.drift import detect_drift_everywhere
from audit.models import AuditEntry, Finding, FindingKind
from connectors import vsphere
from connectors.base import ConnectionConfig, IdentityMismatch
from connectors.vsphere import VSphereConnector
from tests.approvals.helpers import file_ticket
from tests.conftest import register_lab
from tests.connectors.relay import Relay
from tests.fixtures.vcsim import VcsimProcess, host_of


def via(relay, lab):
    """The lab's credentials, at the relay's URL."""
    return SimpleNamespace(url=relay.url, username=lab.username, password=lab.password)


def lab_certificate_sha256(lab) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", lab.port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def logged_in_users(si) -> list[str]:
    """Everyone with a session on this lab, the reading session included."""
    return sorted(s.userName for s in si.RetrieveContent().sessionManager.sessionList or [])


@pytest.fixture
def relay():
    r = Relay()
    yield r
    r.close()


@pytest.fixture
def lab_b(fresh_vcsim):
    """A second lab that would accept the first one's credentials: had the
    login been sent to it, it would have a session to show for it."""
    with VcsimProcess(username=fresh_vcsim.username, password=fresh_vcsim.password) as lab:
        yield lab


@pytest.fixture(autouse=True)
def _fresh_sessions():
    # Each step must log in anew, as a freshly started worker would.
    vsphere.drop_sessions()
    yield
    vsphere.drop_sessions()


def test_identify_reads_uuid_and_certificate_without_logging_in(fresh_vcsim):
    check = fresh_vcsim.connect()
    before = logged_in_users(check)
    wrong = ConnectionConfig(url=fresh_vcsim.url, username="nobody", password="not-the-password", verify_tls=False)
    identity = VSphereConnector(wrong).identify()
    assert identity.instance_uuid == check.RetrieveContent().about.instanceUuid.lower()
    assert identity.tls_fingerprint == lab_certificate_sha256(fresh_vcsim)
    assert len(identity.tls_fingerprint) == 64 and ":" not in identity.tls_fingerprint
    assert logged_in_users(check) == before  # identify sent no login, not even a wrong one


def test_each_lab_start_has_its_own_instance_uuid(fresh_vcsim, lab_b):
    a = VSphereConnector(fresh_vcsim.config).identify()
    b = VSphereConnector(lab_b.config).identify()
    assert a.instance_uuid and b.instance_uuid and a.instance_uuid != b.instance_uuid


def test_registration_stores_the_pin(db, roles, fresh_vcsim):
    connector = register_lab(fresh_vcsim, name="pinned")
    assert connector.instance_uuid == fresh_vcsim.connect().RetrieveContent().about.instanceUuid.lower()
    assert connector.tls_fingerprint == lab_certificate_sha256(fresh_vcsim)
    config = connector.connection_config()
    assert (config.instance_uuid, config.tls_fingerprint) == (connector.instance_uuid, connector.tls_fingerprint)


def test_another_vcenter_at_the_pinned_url_is_refused_before_login(
    db, roles, api, requester, approver, fresh_vcsim, lab_b, relay
):
    relay.point_at(fresh_vcsim)
    connector = register_lab(via(relay, fresh_vcsim), name="relayed")
    ticket = file_ticket(api(requester), connector, "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    assert api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
    check_a, check_b = fresh_vcsim.connect(), lab_b.connect()
    hosts_before = host_of(check_a, "dev-app-01"), host_of(check_b, "dev-app-01")
    vsphere.drop_sessions()

    relay.point_at(lab_b)  # the same URL now answers from another vCenter, same certificate
    with pytest.raises(IdentityMismatch) as refused:
        VSphereConnector(connector.connection_config()).check_login()
    assert refused.value.what == "instance_uuid"
    assert refused.value.seen == check_b.RetrieveContent().about.instanceUuid.lower()
    assert connector.instance_uuid in str(refused.value) and refused.value.seen in str(refused.value)
    assert fresh_vcsim.password not in str(refused.value)

    assert execution.ticket_execute(ticket_id=ticket["id"], worker="test-worker") == "failed"
    failed = connector.tickets.get(pk=ticket["id"])
    assert failed.state == "failed"
    assert "not the pinned hypervisor" in failed.error and "instance UUID" in failed.error
    assert "retry" not in failed.error.lower()

    # Two more readers meet it: still one open finding, audited once.
    inventory_answer(connector_id=connector.pk, nonce="pinning", actor_name="test-worker")
    assert [r.error for r in detect_drift_everywhere() if r.connector == "relayed"][0]
    findings = Finding.objects.filter(connector=connector, kind=FindingKind.CONNECTOR_IDENTITY)
    assert findings.count() == 1
    finding = findings.get()
    assert finding.is_open and finding.object_ref == "identity:instance_uuid"
    assert finding.observed["seen"] == refused.value.seen and finding.expected["pinned"] == connector.instance_uuid
    entries = AuditEntry.objects.filter(action="connector.identity_refused", object_id=str(connector.pk))
    assert entries.count() == 1
    assert fresh_vcsim.password not in str(entries.get().details)

    # Lab B never saw a login (only this reading session), and neither lab changed.
    assert logged_in_users(check_b) == [lab_b.username]
    assert (host_of(check_a, "dev-app-01"), host_of(check_b, "dev-app-01")) == hosts_before
    assert not AuditEntry.objects.filter(action="hypervisor.operation", ticket_id=ticket["id"]).exists()


def test_another_certificate_at_the_pinned_url_is_refused_before_any_request(db, roles, fresh_vcsim, relay):
    relay.point_at(fresh_vcsim)
    connector = register_lab(via(relay, fresh_vcsim), name="relayed")
    vsphere.drop_sessions()

    # A man in the middle with a certificate of its own, relaying to the right vCenter.
    relay.point_at(fresh_vcsim, intercept=True)
    with pytest.raises(IdentityMismatch) as refused:
        VSphereConnector(connector.connection_config()).check_login()
    assert refused.value.what == "tls_fingerprint"
    assert refused.value.expected == lab_certificate_sha256(fresh_vcsim)
    assert refused.value.seen == hashlib.sha256(relay.certificate_der).hexdigest()
    assert "TLS certificate" in str(refused.value)
    assert relay.connections >= 1
    assert bytes(relay.plaintext) == b""  # not even the API version request, let alone the password


def test_certificate_pin_holds_with_tls_verification_off(fresh_vcsim, relay):
    """verify_tls=False is exactly when only the pin stands between the
    password and whoever answers."""
    relay.point_at(fresh_vcsim, intercept=True)
    config = ConnectionConfig(
        url=relay.url,
        username=fresh_vcsim.username,
        password=fresh_vcsim.password,
        verify_tls=False,
        tls_fingerprint=lab_certificate_sha256(fresh_vcsim),
    )
    with pytest.raises(IdentityMismatch):
        VSphereConnector(config).inventory()
    assert fresh_vcsim.password.encode() not in bytes(relay.plaintext)
    assert bytes(relay.plaintext) == b""


def test_a_pinned_connector_refuses_a_plain_http_url(fresh_vcsim):
    config = ConnectionConfig(
        url=fresh_vcsim.url.replace("https://", "http://"),
        username=fresh_vcsim.username,
        password=fresh_vcsim.password,
        verify_tls=False,
        tls_fingerprint="ab" * 32,
    )
    with pytest.raises(IdentityMismatch, match="TLS certificate"):
        VSphereConnector(config).check_login()


def test_the_pinned_vcenter_still_logs_in(db, roles, fresh_vcsim, relay):
    relay.point_at(fresh_vcsim)
    connector = register_lab(via(relay, fresh_vcsim), name="relayed")
    vsphere.drop_sessions()
    VSphereConnector(connector.connection_config()).check_login()
    assert "dev-app-01" in {vm.name for vm in VSphereConnector(connector.connection_config()).inventory().vms}


def test_a_restarted_lab_is_the_same_vcenter(fresh_vcsim):
    """The lab keeps its instance UUID in its data folder, as a vCenter keeps
    its own across reboots: restarts in the tests are not identity changes."""
    before = VSphereConnector(fresh_vcsim.config).identify()
    fresh_vcsim.restart()
    assert VSphereConnector(fresh_vcsim.config).identify() == before
