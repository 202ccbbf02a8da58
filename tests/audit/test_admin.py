"""Role and account changes made in the Django admin are audited."""

import pytest

from audit.models import AuditEntry
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
        "user_permissions": [],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "09:00:00",
    }


def test_role_changes_in_the_admin_are_audited(client, roles, portal_admin):
    target = UserFactory(username="frank", roles=["requester"])
    client.force_login(portal_admin)
    response = client.post(f"/admin/auth/user/{target.pk}/change/", change_form(target, [roles["approver"]]))
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="config.user.roles_changed")
    assert (entry.actor_name, entry.object_type, entry.object_id) == ("pat", "auth.user", str(target.pk))
    assert entry.details == {
        "username": "frank",
        "added": ["approver"],
        "removed": ["requester"],
        "roles": ["approver"],
    }
    # Saving again without a change writes nothing more.
    client.post(f"/admin/auth/user/{target.pk}/change/", change_form(target, [roles["approver"]]))
    assert AuditEntry.objects.filter(action="config.user.roles_changed").count() == 1
    assert verify_chain().ok


def test_deactivating_a_user_in_the_admin_is_audited(client, roles, portal_admin):
    target = UserFactory(username="gina", roles=["approver"])
    client.force_login(portal_admin)
    data = change_form(target, [roles["approver"]])
    del data["is_active"]
    assert client.post(f"/admin/auth/user/{target.pk}/change/", data).status_code == 302
    entry = AuditEntry.objects.get(action="config.user.updated")
    assert entry.details["changes"] == {"is_active": {"from": True, "to": False}}
