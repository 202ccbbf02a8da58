"""Configuration requests: every change to people, roles and rules takes a
second portal admin, and the worker applies it only if nothing moved."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from accounts.lifecycle import activation_link
from accounts.models import AccountState, ApiToken
from accounts.services import token_issue
from approvals.errors import InvalidInput
from approvals.models import Policy, Ticket, Zone
from approvals.services import ticket_approve
from approvals.services.config_requests import config_request_file
from approvals.services.execution import ticket_execute
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, file_ticket
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def admins(roles):
    return (
        UserFactory(roles=["portal_admin"], username="pat", is_staff=True),
        UserFactory(roles=["portal_admin"], username="quinn", is_staff=True),
    )


def file(admin, target="user", action="create", object_id=None, **changes):
    return config_request_file(
        requester=admin,
        target=target,
        action=action,
        object_id=object_id,
        changes=changes,
        justification="Onboarding per HR-123",
    )


def approve_and_apply(ticket, approver):
    ticket_approve(ticket_id=ticket.pk, approver=approver)
    assert ticket_execute(ticket_id=ticket.pk, worker="test-worker") in ("succeeded", "re-check failed", "failed")
    return Ticket.objects.get(pk=ticket.pk)


def test_a_new_user_exists_only_after_a_second_portal_admin_approves(admins):
    pat, quinn = admins
    ticket = file(pat, username="newbie", email="newbie@example.invalid", roles=["approver"])
    assert ticket.kind == "config_change" and ticket.state == "pending"
    assert ticket.approver_group.name == "portal_admin"
    assert not User.objects.filter(username="newbie").exists()
    ticket = approve_and_apply(ticket, quinn)
    assert ticket.state == "succeeded", ticket.error
    newbie = User.objects.get(username="newbie")
    assert [g.name for g in newbie.groups.all()] == ["approver"]
    # Neither portal admin knows a password for it: the person sets one.
    assert not newbie.has_usable_password()
    assert "/accounts/activate/" in activation_link(newbie)
    entry = AuditEntry.objects.get(action="config.user.create")
    assert entry.ticket_id == ticket.pk
    assert entry.details["after"]["roles"] == ["approver"] and entry.details["before"] == {}
    assert AuditEntry.objects.filter(action="auth.activation_issued", object_id=str(newbie.pk)).exists()


def test_the_requester_of_a_configuration_request_cannot_approve_it(admins):
    pat, _ = admins
    pat.is_superuser = True
    pat.save()
    ticket = file(pat, username="sockpuppet", roles=["requester"])
    with pytest.raises(PermissionDenied):
        ticket_approve(ticket_id=ticket.pk, approver=pat)
    assert Ticket.objects.get(pk=ticket.pk).state == "pending"


@pytest.mark.parametrize("role", ["approver", "requester", "auditor"])
def test_only_portal_admins_decide_configuration_requests(admins, role):
    pat, _ = admins
    ticket = file(pat, username="x1", roles=["auditor"])
    other = UserFactory(roles=[role], is_superuser=True)
    with pytest.raises(PermissionDenied):
        ticket_approve(ticket_id=ticket.pk, approver=other)


@pytest.mark.parametrize("role", ["approver", "requester", "auditor"])
def test_only_portal_admins_file_configuration_requests(roles, role):
    someone = UserFactory(roles=[role], is_superuser=True)
    with pytest.raises(PermissionDenied):
        file(someone, username="x2", roles=["approver"])
    assert not Ticket.objects.exists()


def test_nobody_files_a_request_about_their_own_account(admins):
    pat, _ = admins
    for action, changes in (("update", {"email": "pat@evil.invalid"}), ("deactivate", {}), ("otp_reset", {})):
        with pytest.raises(PermissionDenied):
            file(pat, action=action, object_id=pat.pk, **changes)
    assert not Ticket.objects.exists()


def test_nobody_decides_a_request_about_their_own_account(admins, roles):
    pat, quinn = admins
    third = UserFactory(roles=["portal_admin"], username="rosa", is_staff=True)
    ticket = file(pat, action="update", object_id=quinn.pk, email="quinn@new.invalid")
    with pytest.raises(PermissionDenied, match="your own account"):
        ticket_approve(ticket_id=ticket.pk, approver=quinn)
    assert approve_and_apply(ticket, third).state == "succeeded"


@pytest.mark.parametrize("roles_", [["portal_admin", "approver"], ["portal_admin", "requester"]])
def test_portal_admin_is_never_held_with_a_ticket_role(admins, roles_):
    pat, quinn = admins
    with pytest.raises(InvalidInput) as exc:
        file(pat, username="both", roles=roles_)
    assert "portal admin cannot also hold" in str(exc.value.errors["roles"])
    with pytest.raises(InvalidInput):
        file(pat, action="update", object_id=quinn.pk, roles=roles_)


def test_an_email_change_is_a_request_with_before_and_after(admins, requester):
    pat, quinn = admins
    ticket = file(pat, action="update", object_id=requester.pk, email="alice@elsewhere.invalid")
    assert User.objects.get(pk=requester.pk).email == requester.email
    assert ticket.params["before"]["email"] == requester.email
    assert ticket.params["after"]["email"] == "alice@elsewhere.invalid"
    assert approve_and_apply(ticket, quinn).state == "succeeded"
    assert User.objects.get(pk=requester.pk).email == "alice@elsewhere.invalid"
    entry = AuditEntry.objects.get(action="config.user.update")
    assert entry.details["changes"] == {"email": {"from": requester.email, "to": "alice@elsewhere.invalid"}}


def test_a_stale_request_is_refused_at_apply_time(admins, requester):
    pat, quinn = admins
    first = file(pat, action="update", object_id=requester.pk, email="one@example.invalid")
    second = file(pat, action="update", object_id=requester.pk, first_name="Alice")
    assert approve_and_apply(first, quinn).state == "succeeded"
    second = approve_and_apply(second, quinn)
    assert second.state == "failed"
    assert "changed since this request was filed" in second.error
    assert User.objects.get(pk=requester.pk).first_name != "Alice"


def test_deactivation_ends_sessions_and_tokens(admins, requester):
    pat, quinn = admins
    token_issue(user=requester, actor_name="test")
    ticket = approve_and_apply(file(pat, action="deactivate", object_id=requester.pk), quinn)
    assert ticket.state == "succeeded", ticket.error
    assert not User.objects.get(pk=requester.pk).is_active
    assert not ApiToken.objects.filter(user=requester, revoked_at__isnull=True).exists()


def test_a_policy_routes_approvals_only_to_the_role_that_approves_its_kind(admins, roles):
    pat, _ = admins
    Policy.objects.create(kind="vm_create", approver_group=roles["approver"])
    policy = Policy.objects.get(kind="vm_create")
    for group in ("portal_admin", "requester", "auditor"):
        with pytest.raises(InvalidInput) as exc:
            file(pat, target="policy", action="update", object_id=policy.pk, approver_group=group)
        assert "approver_group" in exc.value.errors
    with pytest.raises(InvalidInput):
        file(pat, target="policy", action="create", kind="config_change", approver_group="approver")
    assert not Ticket.objects.exists()


def test_a_policy_change_applies_after_approval(admins, roles):
    pat, quinn = admins
    policy = Policy.objects.create(kind="vm_migrate", approver_group=roles["approver"], required_approvals=1)
    ticket = file(pat, target="policy", action="update", object_id=policy.pk, required_approvals=3)
    assert Policy.objects.get(pk=policy.pk).required_approvals == 1
    assert approve_and_apply(ticket, quinn).state == "succeeded"
    assert Policy.objects.get(pk=policy.pk).required_approvals == 3


def test_nothing_to_change_and_bad_fields_are_refused(admins, requester):
    pat, _ = admins
    with pytest.raises(InvalidInput) as exc:
        file(pat, action="update", object_id=requester.pk, email=requester.email)
    assert "Nothing would change" in str(exc.value.errors)
    with pytest.raises(InvalidInput) as exc:
        file(pat, username="bad name!", roles=["superuser"])
    assert set(exc.value.errors) >= {"username", "roles"}
    with pytest.raises(InvalidInput):
        file(pat, action="update", object_id=requester.pk, username="renamed")
    assert not Ticket.objects.exists()


def test_approvers_may_not_approve_access_for_their_own_hypervisor_account(api, lab, requester, approver, approver2):
    AccountState.objects.create(user=approver, hypervisor_principal="lab\\ALICE")
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    response = api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
    assert response.status_code == 403
    assert "your own hypervisor account" in response.json()["detail"]


def test_api_writes_file_requests_and_answer_202(api, lab, admins):
    pat, quinn = admins
    zones = Zone.objects.count()
    response = api(pat).post(
        "/api/zones/",
        {"connector": lab.pk, "name": "lab-extra", "trust_level": 5, "justification": "New segment"},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "config_change" and body["state"] == "pending"
    assert body["params"]["after"]["name"] == "lab-extra"
    assert Zone.objects.count() == zones
    response = api(pat).post("/api/zones/", {"connector": lab.pk, "name": "x", "trust_level": 5}, format="json")
    assert response.status_code == 400 and "justification" in response.json()
    response = api(pat).post(
        "/api/zones/",
        {"connector": lab.pk, "name": "y", "trust_level": 5, "hosts": ["no-such-host"], "justification": "j"},
        format="json",
    )
    assert response.status_code == 400 and "hosts" in response.json()
    approved = api(quinn).post(f"/api/tickets/{body['id']}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    ticket_execute(ticket_id=body["id"], worker="test-worker")
    assert Zone.objects.filter(name="lab-extra").exists()


def test_connector_password_in_a_request_is_sealed_and_never_shown(api, lab, admins):
    pat, _ = admins
    response = api(pat).patch(
        f"/api/connectors/{lab.pk}/",
        {"url": "https://127.0.0.1:1/sdk", "justification": "move"},
        format="json",
    )
    assert response.status_code == 400 and "password" in response.json()
    response = api(pat).patch(
        f"/api/connectors/{lab.pk}/",
        {"url": "https://127.0.0.1:1/sdk", "password": "hunter2-but-longer", "justification": "move"},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert "hunter2" not in response.content.decode()
    ticket = Ticket.objects.get(pk=response.json()["id"])
    assert ticket.params["after"]["password"] != "hunter2-but-longer"
    assert response.json()["params"]["after"]["password"].startswith("(new password")
    assert not AuditEntry.objects.filter(details__icontains="hunter2").exists()


def test_the_ticket_page_shows_before_and_after(client, admins, requester):
    pat, quinn = admins
    ticket = file(pat, action="update", object_id=requester.pk, email="page@example.invalid")
    client.force_login(quinn)
    page = client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "Before → after" in page
    assert requester.email in page and "page@example.invalid" in page
    assert "Approve" in page


def test_a_policy_change_through_the_page_sets_roles_and_passkeys(client, admins, roles):
    pat, _ = admins
    policy = Policy.objects.create(kind="admin_access", approver_group=roles["approver"], grantable_roles=["ReadOnly"])
    client.force_login(pat)
    form = client.get(f"/config/policy/{policy.pk}/update/").content.decode()
    assert 'value="ReadOnly"' in form  # the current roles, as text
    response = client.post(
        f"/config/policy/{policy.pk}/update/",
        {
            "required_approvals": policy.required_approvals,
            "approver_group": "approver",
            "pending_ttl_minutes": policy.pending_ttl_minutes,
            "max_duration_minutes": policy.max_duration_minutes,
            "max_cpus": policy.max_cpus,
            "max_memory_mb": policy.max_memory_mb,
            "require_passkey": "on",
            "grantable_roles": "ReadOnly, VirtualMachineUser",
            "allowed_zone_pairs": "[]",
            "justification": "passkeys for access",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    ticket = Ticket.objects.get(kind="config_change")
    changed = {k for k in ticket.params["after"] if ticket.params["after"][k] != ticket.params["before"][k]}
    assert changed == {"require_passkey", "grantable_roles"}
    assert ticket.params["after"]["grantable_roles"] == ["ReadOnly", "VirtualMachineUser"]
    assert Policy.objects.get(pk=policy.pk).grantable_roles == ["ReadOnly"]  # nothing changes until approved
