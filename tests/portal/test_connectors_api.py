"""Connector credentials: sealed at once, applied only through an approved
configuration request, never shown."""

import pytest
from django.db import connection

from audit.models import AuditEntry
from connectors.models import Connector

pytestmark = pytest.mark.django_db


def _apply(api, admin, other, response):
    assert response.status_code == 202, response.content
    return configure_approve(api, other, response.json()["id"])


def configure_approve(api, other, request_id):
    from approvals.models import Ticket
    from approvals.services.execution import ticket_execute

    assert api(other).post(f"/api/tickets/{request_id}/approve/", {}, format="json").status_code == 200
    ticket_execute(ticket_id=request_id, worker="test-worker")
    return Ticket.objects.get(pk=request_id)


def test_password_is_write_only_and_encrypted_at_rest(api, vcsim, portal_admin, portal_admin2, approver, client):
    body = {
        "name": "vc-api",
        "url": vcsim.url,
        "username": vcsim.username,
        "password": vcsim.password,
        "verify_tls": False,
        "justification": "second vCenter",
    }
    response = api(portal_admin).post("/api/connectors/", body, format="json")
    assert vcsim.password not in response.content.decode()
    assert not Connector.objects.filter(name="vc-api").exists()  # nothing until approved
    ticket = _apply(api, portal_admin, portal_admin2, response)
    assert ticket.state == "succeeded", ticket.error
    connector = Connector.objects.get(name="vc-api")
    for user in (portal_admin, approver):
        assert vcsim.password not in api(user).get("/api/connectors/").content.decode()
        assert vcsim.password not in api(user).get(f"/api/connectors/{connector.pk}/").content.decode()
        assert vcsim.password not in api(user).get(f"/api/tickets/{ticket.pk}/").content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connectors_connector WHERE name = 'vc-api'")
        row = " ".join(map(str, cursor.fetchone()))
        cursor.execute("SELECT params::text FROM approvals_ticket WHERE id = %s", [ticket.pk])
        request_row = cursor.fetchone()[0]
    assert vcsim.password not in row and vcsim.password not in request_row
    assert connector.connection_config().password == vcsim.password
    assert not AuditEntry.objects.filter(details__icontains=vcsim.password).exists()
    # The Django admin never renders it either.
    client.force_login(portal_admin)
    page = client.get(f"/admin/connectors/connector/{connector.pk}/change/")
    assert page.status_code == 200
    assert vcsim.password not in page.content.decode()
    assert connector.password_encrypted not in page.content.decode()


def test_a_wrong_password_fails_the_request_and_nothing_is_stored(api, vcsim, portal_admin, portal_admin2):
    body = {
        "name": "vc-bad",
        "url": vcsim.url,
        "username": vcsim.username,
        "password": "nope",
        "verify_tls": False,
        "justification": "j",
    }
    ticket = _apply(api, portal_admin, portal_admin2, api(portal_admin).post("/api/connectors/", body, format="json"))
    assert ticket.state == "failed" and "refused the login" in ticket.error
    assert not Connector.objects.filter(name="vc-bad").exists()


def test_an_unreachable_hypervisor_fails_the_request(api, portal_admin, portal_admin2):
    body = {
        "name": "vc-down",
        "url": "https://127.0.0.1:9/sdk",
        "username": "x",
        "password": "y",
        "verify_tls": False,
        "justification": "j",
    }
    ticket = _apply(api, portal_admin, portal_admin2, api(portal_admin).post("/api/connectors/", body, format="json"))
    assert ticket.state == "failed" and "127.0.0.1:9" in ticket.error
    assert not Connector.objects.exists()


def test_a_password_change_is_checked_and_audited_without_the_secret(api, vcsim, portal_admin, portal_admin2, lab):
    wrong = api(portal_admin).patch(
        f"/api/connectors/{lab.pk}/", {"password": "wrong", "justification": "j"}, format="json"
    )
    assert _apply(api, portal_admin, portal_admin2, wrong).state == "failed"
    assert Connector.objects.get(pk=lab.pk).connection_config().password == vcsim.password
    right = api(portal_admin).patch(
        f"/api/connectors/{lab.pk}/", {"password": vcsim.password, "justification": "rotated"}, format="json"
    )
    ticket = _apply(api, portal_admin, portal_admin2, right)
    assert ticket.state == "succeeded", ticket.error
    entry = AuditEntry.objects.get(action="config.connector.update", ticket=ticket)
    assert entry.details["requested_by"] == "pat" and vcsim.password not in str(entry.details)
    assert entry.details["after"]["password"] == "[redacted]"


def test_inventory_shows_zones(api, lab, requester):
    inventory = api(requester).get(f"/api/connectors/{lab.pk}/inventory/").json()
    hosts = {h["name"]: h["zone"] for h in inventory["hosts"]}
    assert hosts == {
        "prod-esx-01": "prod",
        "prod-esx-02": "prod",
        "dev-esx-01": "dev",
        "dev-esx-02": "dev",
        "dmz-esx-01": "dmz",
    }
    assert {n["name"]: n["zone"] for n in inventory["networks"]} == {
        "pg-prod": "prod",
        "pg-dev": "dev",
        "pg-dmz": "dmz",
    }
    assert {t["name"] for t in inventory["templates"]} == {"tpl-debian12", "tpl-rhel9", "tpl-win2022"}
    assert {v["name"] for v in inventory["vms"]} >= {"prod-web-01", "dev-app-01", "dmz-proxy-01"}
    assert "Admin" in inventory["roles"]


def test_zone_labels_must_exist_and_not_overlap(api, lab, portal_admin):
    client = api(portal_admin)
    bad = client.post(
        "/api/zones/",
        {"name": "x", "trust_level": 5, "connector": lab.pk, "hosts": ["ghost-esx"], "justification": "j"},
        format="json",
    )
    assert bad.status_code == 400 and "No host named 'ghost-esx'" in bad.json()["hosts"][0]
    clash = client.post(
        "/api/zones/",
        {"name": "y", "trust_level": 5, "connector": lab.pk, "networks": ["pg-prod"], "justification": "j"},
        format="json",
    )
    assert clash.status_code == 400 and "Already labelled" in clash.json()["networks"][0]
    assert lab.zones.count() == 3


def test_catalogue_entries_must_be_template_vms(api, lab, portal_admin, portal_admin2):
    client = api(portal_admin)
    bad = client.post(
        "/api/templates/", {"connector": lab.pk, "name": "prod-web-01", "justification": "j"}, format="json"
    )
    assert bad.status_code == 400 and "No template named 'prod-web-01'" in bad.json()["name"][0]
    template = lab.templates.first()
    entry = client.patch(
        f"/api/templates/{template.pk}/", {"description": "vetted 2026-11", "justification": "j"}, format="json"
    )
    ticket = _apply(api, portal_admin, portal_admin2, entry)
    assert ticket.state == "succeeded", ticket.error
    assert lab.templates.get(pk=template.pk).description == "vetted 2026-11"
    assert AuditEntry.objects.filter(action="config.template.update", actor_name="test-worker", ticket=ticket).exists()
