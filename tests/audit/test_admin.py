"""Roles and accounts cannot be changed in the Django admin (they change
through configuration requests, audited there), and the audit log is not
in the admin at all: nothing there writes to it or around it."""

import pytest
from django.contrib import admin

from audit.models import AuditEntry, ChainHead, DriftBaseline, Finding
from audit.verify import verify_chain
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def change_form(user, groups):
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "groups": [g.pk for g in groups],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "09:00:00",
    }


@pytest.fixture
def superuser(roles):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.mark.parametrize("who", ["portal_admin", "superuser"])
def test_roles_cannot_be_changed_in_the_admin(client, roles, who, request):
    target = UserFactory(username="frank", roles=["requester"])
    client.force_login(request.getfixturevalue(who))
    entries = AuditEntry.objects.count()
    response = client.post(f"/admin/auth/user/{target.pk}/change/", change_form(target, [roles["approver"]]))
    assert response.status_code == 403
    assert set(target.groups.values_list("name", flat=True)) == {"requester"}
    group = client.post(f"/admin/auth/group/{roles['approver'].pk}/change/", {"name": "approver", "permissions": []})
    assert group.status_code == 403
    assert roles["approver"].permissions.count() == 0 and roles["portal_admin"].permissions.exists()
    assert AuditEntry.objects.count() == entries
    assert verify_chain().ok


def test_users_cannot_be_deactivated_or_deleted_in_the_admin(client, roles, portal_admin):
    target = UserFactory(username="gina", roles=["approver"])
    client.force_login(portal_admin)
    data = change_form(target, [roles["approver"]])
    del data["is_active"]
    assert client.post(f"/admin/auth/user/{target.pk}/change/", data).status_code == 403
    assert client.post(f"/admin/auth/user/{target.pk}/delete/", {"post": "yes"}).status_code == 403
    target.refresh_from_db()
    assert target.is_active


def test_the_audit_log_is_not_in_the_admin(client, superuser):
    client.force_login(superuser)
    for model in (AuditEntry, ChainHead, Finding, DriftBaseline):
        assert not admin.site.is_registered(model), model
        assert client.get(f"/admin/audit/{model._meta.model_name}/").status_code == 404, model
