"""Connector credentials: encrypted at rest, write-only, never shown."""

import pytest
from django.db import connection

from audit.models import AuditEntry
from connectors.models import Connector

pytestmark = pytest.mark.django_db


def test_password_is_write_only_and_encrypted_at_rest(api, vcsim, portal_admin, approver, client):
    body = {
        "name": "vc-api",
        "url": vcsim.url,
        "username": vcsim.username,
        "password": vcsim.password,
        "verify_tls": False,
    }
    response = api(portal_admin).post("/api/connectors/", body, format="json")
    assert response.status_code == 201, response.content
    assert "password" not in response.json()
    for user in (portal_admin, approver):
        assert vcsim.password not in api(user).get("/api/connectors/").content.decode()
        assert vcsim.password not in api(user).get(f"/api/connectors/{response.json()['id']}/").content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connectors_connector WHERE name = 'vc-api'")
        row = " ".join(map(str, cursor.fetchone()))
    assert vcsim.password not in row
    assert Connector.objects.get(name="vc-api").connection_config().password == vcsim.password
    assert not AuditEntry.objects.filter(details__icontains=vcsim.password).exists()
    assert all(vcsim.password not in str(e.details) for e in AuditEntry.objects.all())
    # The Django admin form never renders it either.
    portal_admin.is_staff = True
    portal_admin.save()
    client.force_login(portal_admin)
    page = client.get(f"/admin/connectors/connector/{response.json()['id']}/change/")
    assert page.status_code == 200
    assert vcsim.password not in page.content.decode()
    assert Connector.objects.get(name="vc-api").password_encrypted not in page.content.decode()


def test_a_wrong_password_is_refused_and_nothing_stored(api, vcsim, portal_admin):
    body = {"name": "vc-bad", "url": vcsim.url, "username": vcsim.username, "password": "nope", "verify_tls": False}
    response = api(portal_admin).post("/api/connectors/", body, format="json")
    assert response.status_code == 400
    assert "Cannot log in" in response.json()["password"][0]
    assert not Connector.objects.filter(name="vc-bad").exists()


def test_an_unreachable_hypervisor_is_refused(api, portal_admin):
    body = {"name": "vc-down", "url": "https://127.0.0.1:9/sdk", "username": "x", "password": "y", "verify_tls": False}
    response = api(portal_admin).post("/api/connectors/", body, format="json")
    assert response.status_code == 400 and "url" in response.json()
    assert not Connector.objects.exists()


def test_a_password_change_is_checked_and_audited_without_the_secret(api, vcsim, portal_admin, lab):
    response = api(portal_admin).patch(f"/api/connectors/{lab.pk}/", {"password": "wrong"}, format="json")
    assert response.status_code == 400
    assert Connector.objects.get(pk=lab.pk).connection_config().password == vcsim.password
    response = api(portal_admin).patch(f"/api/connectors/{lab.pk}/", {"password": vcsim.password}, format="json")
    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="config.connector.password_changed")
    assert entry.actor_name == "pat" and vcsim.password not in str(entry.details)


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
        "/api/zones/", {"name": "x", "trust_level": 5, "connector": lab.pk, "hosts": ["ghost-esx"]}, format="json"
    )
    assert bad.status_code == 400 and "Not in the inventory: ghost-esx" in bad.json()["hosts"][0]
    clash = client.post(
        "/api/zones/", {"name": "y", "trust_level": 5, "connector": lab.pk, "networks": ["pg-prod"]}, format="json"
    )
    assert clash.status_code == 400 and "Already labelled" in clash.json()["networks"][0]
    assert lab.zones.count() == 3


def test_catalogue_entries_must_be_template_vms(api, lab, portal_admin):
    client = api(portal_admin)
    bad = client.post("/api/templates/", {"connector": lab.pk, "name": "prod-web-01"}, format="json")
    assert bad.status_code == 400 and "No template VM" in bad.json()["name"][0]
    entry = client.patch(
        f"/api/templates/{lab.templates.first().pk}/", {"description": "vetted 2026-11"}, format="json"
    )
    assert entry.status_code == 200
    assert AuditEntry.objects.filter(action="config.cataloguetemplate.updated", actor_name="pat").exists()
