"""The Django admin only shows. Portal admins and superusers alike read
connectors, zones, policies, catalogue, users, roles, tickets, tokens and
authenticators there; nobody adds, changes or deletes anything through it
(changes are configuration requests a second portal admin approves), no page
shows or sets superuser status, per-user permissions or a password hash, and
each page says where changes are made."""

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken
from accounts.services import token_issue
from approvals.models import CatalogueTemplate, Policy, Ticket, Zone
from connectors.models import Connector
from tests.approvals.helpers import VM_CREATE, file_ticket
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOTICE = 'Changes are made as configuration requests in the portal: <a href="/config/">/config/</a>'
User = get_user_model()
CONFIGURATION = [Connector, Zone, Policy, CatalogueTemplate, User, Group]


@pytest.fixture
def superuser(roles):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def every_model(api, lab, requester, roles):
    """At least one row of every model the admin registers, where the test can make one."""
    file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    token_issue(user=requester, actor_name="test")
    TOTPDevice.objects.create(user=requester, name="authenticator", confirmed=True)
    Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})  # sign-in records
    return [model for model in admin.site._registry]


def url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def test_no_admin_page_adds_changes_or_deletes_for_anyone(superuser):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    for model, model_admin in admin.site._registry.items():
        obj = model._default_manager.first()
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request, obj), model
        assert not model_admin.has_delete_permission(request, obj), model


@pytest.mark.parametrize("who", ["superuser", "portal_admin"])
def test_add_change_and_delete_are_refused_on_every_admin_page(page, every_model, who, request):
    client = page(request.getfixturevalue(who))
    for model in every_model:
        changelist = client.get(url(model, "changelist"))
        assert changelist.status_code in (200, 403), model
        assert 'class="addlink"' not in changelist.content.decode(), model
        assert client.get(url(model, "add")).status_code == 403, model
        assert client.post(url(model, "add"), {}).status_code == 403, model
        obj = model._default_manager.first()
        if obj is None:
            continue
        before = model._default_manager.filter(pk=obj.pk).values().get()
        change = client.get(url(model, "change", quote(obj.pk)))
        assert change.status_code in (200, 403), model
        assert 'name="_save"' not in change.content.decode(), model
        assert client.post(url(model, "change", quote(obj.pk)), {"name": "changed"}).status_code == 403, model
        assert client.get(url(model, "delete", quote(obj.pk))).status_code == 403, model
        assert client.post(url(model, "delete", quote(obj.pk)), {"post": "yes"}).status_code == 403, model
        assert model._default_manager.filter(pk=obj.pk).values().get() == before, model


def test_portal_admin_reads_the_configuration_pages(page, lab, portal_admin):
    client = page(portal_admin)
    assert 'href="/admin/"' in client.get("/").content.decode()  # the header links to the admin
    for model in CONFIGURATION:
        listing = client.get(url(model, "changelist"))
        assert listing.status_code == 200, model
        assert NOTICE in listing.content.decode()
        obj = model._default_manager.first()
        detail = client.get(url(model, "change", quote(obj.pk)))
        assert detail.status_code == 200 and NOTICE in detail.content.decode(), model
    searched = client.get(url(Zone, "changelist"), {"q": "prod"}).content.decode()
    assert "prod" in searched and "dev</a>" not in searched


def test_every_admin_page_says_where_changes_are_made(page, superuser, every_model):
    client = page(superuser)
    assert NOTICE in client.get("/admin/").content.decode()
    for model in every_model:
        assert NOTICE in client.get(url(model, "changelist")).content.decode(), model
    assert NOTICE in page().get("/admin/login/").content.decode()


def test_connector_password_is_never_shown_in_the_admin(page, lab, portal_admin, vcsim):
    html = page(portal_admin).get(url(Connector, "change", lab.pk)).content.decode()
    assert lab.name in html
    assert 'name="password"' not in html
    assert vcsim.password not in html and lab.password_encrypted not in html


def test_superuser_status_permissions_and_password_hash_are_never_shown_or_set(page, superuser, portal_admin):
    target = UserFactory(username="frank", roles=["requester"])
    for user in (superuser, portal_admin):
        client = page(user)
        for html in (
            client.get(url(User, "changelist")).content.decode(),
            client.get(url(User, "change", target.pk)).content.decode(),
        ):
            assert "frank" in html
            assert "is_superuser" not in html and "superuser status" not in html.lower()
            assert "user_permissions" not in html and "pbkdf2" not in html and target.password not in html
        group = client.get(url(Group, "change", target.groups.get().pk)).content.decode()
        assert "frank" in group and "permissions" not in group.lower()
        # Not as a filter either: a lookup on the hash or the flag is refused.
        listing = url(User, "changelist")
        assert client.get(listing, {"password__startswith": "pbkdf2"}).status_code == 400
        assert client.get(listing, {"is_superuser__exact": "1"}).status_code == 400
        data = {"username": "frank", "is_active": "on", "is_superuser": "on", "is_staff": "on"}
        assert client.post(url(User, "change", target.pk), data).status_code == 403
        assert client.post(url(User, "add"), {**data, "username": "mallory"}).status_code == 403
        password = {"password1": "a-new-long-passphrase", "password2": "a-new-long-passphrase"}
        assert client.post(f"/admin/auth/user/{target.pk}/password/", password).status_code in (302, 403, 404)
    target.refresh_from_db()
    assert not target.is_superuser and not target.is_staff and not target.check_password("a-new-long-passphrase")
    assert not User.objects.filter(username="mallory").exists()


def test_tokens_can_still_be_revoked_in_the_admin(page, superuser, requester):
    token_issue(user=requester, actor_name="test")
    token = ApiToken.objects.get(user=requester)
    response = page(superuser).post(
        url(ApiToken, "changelist"), {"action": "revoke", "_selected_action": [token.pk], "index": "0"}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_authenticator_keys_are_never_shown_in_the_admin(page, superuser, requester):
    device = TOTPDevice.objects.create(user=requester, name="authenticator", confirmed=True)
    client = page(superuser)
    html = client.get(url(TOTPDevice, "change", device.pk)).content.decode()
    assert "alice" in html and device.key not in html and "qrcode" not in html.lower()
    # django-otp's own admin pages for a device's key and QR code are gone.
    for view in ("config", "qrcode"):
        response = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/{view}/", follow=True)
        assert response["Content-Type"].startswith("text/html") and device.key not in response.content.decode()


def test_other_roles_get_no_admin(page, lab, requester, approver, auditor):
    for user in (requester, approver, auditor):
        client = page(user)
        assert 'href="/admin/"' not in client.get("/").content.decode()
        response = client.get("/admin/connectors/connector/")
        assert response.status_code == 302 and response.url.startswith("/admin/login/")


def test_tickets_are_read_only_in_the_admin(page, superuser, api, lab, requester):
    ticket = Ticket.objects.get(pk=file_ticket(api(requester), lab, "vm_create", VM_CREATE)["id"])
    client = page(superuser)
    assert ticket.ref in client.get(url(Ticket, "changelist")).content.decode()
    assert client.post(url(Ticket, "change", ticket.pk), {"state": "approved"}).status_code == 403
    ticket.refresh_from_db()
    assert ticket.state == "pending"
