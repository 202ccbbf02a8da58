"""Connector changes: the stored password is never sent to a new endpoint.
A new URL, user name or TLS setting needs a new password; after a URL change
the pin is taken from the new endpoint; a password change alone must meet
the pinned vCenter. Listeners in this process record what reaches them."""

import hashlib

import pytest

from approvals.errors import InvalidInput
from approvals.services.connectors import connector_update
from audit.models import AuditEntry
from connectors import credentials, vsphere
from connectors.base import AuthenticationFailed, ConnectorError, IdentityMismatch
from connectors.models import Connector
from connectors.vsphere import VSphereConnector
from tests.conftest import register_lab
from tests.connectors.relay import RecordingHTTPServer, Relay
from tests.fixtures.vcsim import VcsimProcess

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay():
    r = Relay()
    yield r
    r.close()


@pytest.fixture
def listener():
    server = RecordingHTTPServer()
    yield server
    server.close()


@pytest.fixture
def other_lab():
    """Another vCenter, with a password of its own."""
    with VcsimProcess() as lab:
        yield lab


@pytest.fixture(autouse=True)
def _fresh_sessions():
    vsphere.drop_sessions()
    yield
    vsphere.drop_sessions()


def stored(connector) -> dict:
    row = Connector.objects.get(pk=connector.pk)
    return {
        f: getattr(row, f)
        for f in ("name", "url", "username", "verify_tls", "password_encrypted", "instance_uuid", "tls_fingerprint")
    }


def audit_count() -> int:
    return AuditEntry.objects.count()


@pytest.mark.parametrize(
    "change",
    [{"url": "http://127.0.0.1:9/sdk"}, {"username": "someone-else"}, {"verify_tls": True}],
    ids=["url", "username", "verify_tls"],
)
def test_an_endpoint_change_without_a_new_password_is_refused(roles, fresh_vcsim, change):
    connector = register_lab(fresh_vcsim)
    before, entries = stored(connector), audit_count()
    with pytest.raises(InvalidInput) as refused:
        connector_update(actor_name="test", connector=connector, data=change)
    assert list(refused.value.errors) == ["password"]
    assert "never sent" in " ".join(refused.value.errors["password"])
    assert stored(connector) == before
    assert audit_count() == entries


def test_without_a_new_password_nothing_reaches_the_new_url(roles, fresh_vcsim, listener):
    connector = register_lab(fresh_vcsim)
    with pytest.raises(InvalidInput):
        connector_update(actor_name="test", connector=connector, data={"url": listener.url})
    assert listener.requests == []


def test_a_new_url_that_is_no_vcenter_gets_neither_password(roles, fresh_vcsim, listener):
    connector = register_lab(fresh_vcsim)
    before = stored(connector)
    with pytest.raises(ConnectorError, match="not a vSphere endpoint"):
        connector_update(
            actor_name="test",
            connector=connector,
            data={"url": listener.url},
            sealed_password=credentials.seal("the-new-password-1"),
        )
    assert listener.requests, "the listener was asked who it is"
    assert fresh_vcsim.password.encode() not in listener.received
    assert b"the-new-password-1" not in listener.received  # identify sends no login
    assert stored(connector) == before


def test_a_url_change_takes_the_new_pin_and_never_sends_the_old_password(roles, fresh_vcsim, other_lab, relay):
    connector = register_lab(fresh_vcsim)
    old_pin = connector.instance_uuid, connector.tls_fingerprint
    relay.point_at(other_lab, intercept=True)  # records every byte the portal sends it
    updated = connector_update(
        actor_name="test",
        connector=connector,
        data={"url": relay.url},
        sealed_password=credentials.seal(other_lab.password),
    )
    seen = bytes(relay.plaintext)
    assert b"Login" in seen and other_lab.password.encode() in seen  # the recording works
    assert fresh_vcsim.password.encode() not in seen

    row = Connector.objects.get(pk=connector.pk)
    assert row.url == relay.url == updated.url
    assert row.instance_uuid == other_lab.connect().RetrieveContent().about.instanceUuid.lower()
    assert row.tls_fingerprint == hashlib.sha256(relay.certificate_der).hexdigest()
    assert (row.instance_uuid, row.tls_fingerprint) != old_pin
    assert row.connection_config().password == other_lab.password

    entry = AuditEntry.objects.filter(action="config.connector.updated", object_id=str(connector.pk)).latest("seq")
    assert set(entry.details["changes"]) == {"url", "instance_uuid", "tls_fingerprint"}
    assert AuditEntry.objects.filter(action="config.connector.password_changed", object_id=str(connector.pk)).exists()
    everything = str(list(AuditEntry.objects.values_list("details", flat=True)))
    for secret in (fresh_vcsim.password, other_lab.password, row.password_encrypted):
        assert secret not in everything


def test_a_password_change_must_meet_the_pinned_vcenter(roles, fresh_vcsim, other_lab, relay):
    relay.point_at(fresh_vcsim)
    connector = register_lab(
        type("Via", (), {"url": relay.url, "username": fresh_vcsim.username, "password": fresh_vcsim.password})
    )
    before, entries = stored(connector), audit_count()
    relay.point_at(other_lab)  # another vCenter answers at the same URL
    with pytest.raises(IdentityMismatch):
        connector_update(
            actor_name="test", connector=connector, data={}, sealed_password=credentials.seal(other_lab.password)
        )
    assert stored(connector) == before and audit_count() == entries


def test_a_password_change_is_checked_and_kept_pinned(roles, fresh_vcsim):
    connector = register_lab(fresh_vcsim)
    before = stored(connector)
    with pytest.raises(AuthenticationFailed):
        connector_update(
            actor_name="test", connector=connector, data={}, sealed_password=credentials.seal("wrong-password-1")
        )
    assert stored(connector) == before

    connector_update(
        actor_name="test", connector=connector, data={}, sealed_password=credentials.seal(fresh_vcsim.password)
    )
    after = stored(connector)
    assert after["password_encrypted"] != before["password_encrypted"]
    assert (after["instance_uuid"], after["tls_fingerprint"]) == (before["instance_uuid"], before["tls_fingerprint"])
    assert AuditEntry.objects.filter(action="config.connector.password_changed", object_id=str(connector.pk)).exists()


def test_a_rename_needs_no_password_and_reaches_no_hypervisor(roles, fresh_vcsim):
    connector = register_lab(fresh_vcsim)
    fresh_vcsim.stop()  # nothing to reach: a rename must not try
    connector_update(actor_name="test", connector=connector, data={"name": "renamed"})
    assert Connector.objects.get(pk=connector.pk).name == "renamed"


def test_fields_outside_the_connector_settings_are_refused(roles, fresh_vcsim):
    connector = register_lab(fresh_vcsim)
    with pytest.raises(InvalidInput) as refused:
        connector_update(actor_name="test", connector=connector, data={"instance_uuid": "0" * 32})
    assert list(refused.value.errors) == ["instance_uuid"]


def test_a_new_certificate_is_accepted_only_by_repinning_with_the_password(roles, fresh_vcsim, relay):
    relay.point_at(fresh_vcsim)
    connector = register_lab(
        type("Via", (), {"url": relay.url, "username": fresh_vcsim.username, "password": fresh_vcsim.password})
    )
    relay.point_at(fresh_vcsim, intercept=True)  # the vCenter's certificate "renewed"
    vsphere.drop_sessions()  # as a worker started after the renewal
    with pytest.raises(InvalidInput) as refused:
        connector_update(actor_name="test", connector=connector, data={}, repin=True)
    assert list(refused.value.errors) == ["password"]
    assert bytes(relay.plaintext) == b""
    with pytest.raises(IdentityMismatch):
        connector_update(
            actor_name="test", connector=connector, data={}, sealed_password=credentials.seal(fresh_vcsim.password)
        )

    connector_update(
        actor_name="test",
        connector=connector,
        data={},
        sealed_password=credentials.seal(fresh_vcsim.password),
        repin=True,
    )
    row = Connector.objects.get(pk=connector.pk)
    assert row.tls_fingerprint == hashlib.sha256(relay.certificate_der).hexdigest()
    entry = AuditEntry.objects.filter(action="config.connector.updated", object_id=str(connector.pk)).latest("seq")
    assert set(entry.details["changes"]) == {"tls_fingerprint"}
    vsphere.drop_sessions()
    assert row.connection_config().tls_fingerprint == row.tls_fingerprint
    VSphereConnector(row.connection_config()).check_login()
