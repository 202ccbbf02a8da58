"""The lone-actor matrix: one person, holding any set of roles the portal
lets one person hold — and a superuser on top — tries every path they have
(the API, the pages, the Django admin, self-service) to get a change onto
the hypervisor without a second person. A real worker (with beat) runs
throughout, so anything that slipped through would be carried out; the
hypervisor is then read back through a separate pyVmomi session.

A route added to the portal without a path here (or a place in READ_ONLY)
fails test_every_route_is_tried_or_read_only, as in the permission
matrices. Pages are driven with Django's test client: it runs the same
views, forms and services as the browser, and the browser tests cover the
pages themselves."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from pyVmomi import vim

from approvals.choices import TicketState
from approvals.models import ChatHook, FreezeWindow, Policy, Ticket, Zone
from audit.models import AuditEntry
from connectors.models import Connector
from tests.approvals.helpers import ADMIN_ACCESS, migrate_within_zone
from tests.conftest import register_lab
from tests.factories import UserFactory
from tests.fixtures import slapd as slapd_fixtures

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
User = get_user_model()

# Every set of roles one person may hold (portal_admin excludes approver and requester).
ROLE_SETS = [
    ("requester",),
    ("approver",),
    ("auditor",),
    ("portal_admin",),
    ("requester", "approver"),
    ("requester", "auditor"),
    ("approver", "auditor"),
    ("portal_admin", "auditor"),
    ("requester", "approver", "auditor"),
]
J = {"justification": "acting alone"}


@dataclass
class Ctx:
    actor: User
    api: object
    web: Client
    lab: Connector
    victim: User  # someone else's account (an approver who is not in on it)
    filed: list


def _file_migration(ctx, client_post, api=True):
    params = migrate_within_zone(ctx.api, ctx.lab)
    if api:
        body = {"kind": "vm_migrate", "connector": ctx.lab.pk, "params": params, **J}
        response = ctx.api.post("/api/tickets/", body, format="json")
        return response.json().get("id") if response.status_code == 201 else None
    response = ctx.web.post(
        f"/tickets/new/vm_migrate/?connector={ctx.lab.pk}", {"connector": ctx.lab.pk, **params, **J}
    )
    ticket = Ticket.objects.filter(requester=ctx.actor, kind="vm_migrate").order_by("-pk").first()
    return ticket.pk if ticket and response.status_code == 302 else None


def _self_approve(ctx, ticket_id, *, api=True):
    if ticket_id is None:
        return
    ctx.filed.append(ticket_id)
    if api:
        assert ctx.api.post(f"/api/tickets/{ticket_id}/approve/", {}, format="json").status_code in (403, 404)
    else:
        ctx.web.post(f"/tickets/{ticket_id}/approve/", {})


def api_file_and_approve_own(ctx):
    _self_approve(ctx, _file_migration(ctx, None))


def page_file_and_approve_own(ctx):
    _self_approve(ctx, _file_migration(ctx, None, api=False), api=False)


def api_admin_access_for_self(ctx):
    body = {"kind": "admin_access", "connector": ctx.lab.pk, "params": {**ADMIN_ACCESS, "principal": "LAB\\lone"}, **J}
    response = ctx.api.post("/api/tickets/", body, format="json")
    _self_approve(ctx, response.json().get("id") if response.status_code == 201 else None)


def api_write_state(ctx):
    ticket = Ticket.objects.filter(kind="vm_migrate").first()
    pk = ticket.pk if ticket else 1
    for method in ("patch", "put"):
        response = getattr(ctx.api, method)(f"/api/tickets/{pk}/", {"state": "approved"}, format="json")
        assert response.status_code in (403, 404, 405)


def _config(ctx, method, path, body):
    response = getattr(ctx.api, method)(path, {**body, **J}, format="json")
    if response.status_code == 202:
        _self_approve(ctx, response.json()["id"])
    else:
        assert response.status_code in (400, 403, 404), (path, response.status_code, response.content[:200])


def api_create_accomplices(ctx):
    _config(ctx, "post", "/api/users/", {"username": "acc-req", "roles": ["requester"], "email": "me@evil.invalid"})
    _config(ctx, "post", "/api/users/", {"username": "acc-app", "roles": ["approver"], "email": "me@evil.invalid"})


def api_grant_own_roles(ctx):
    _config(ctx, "patch", f"/api/users/{ctx.actor.pk}/", {"roles": ["requester", "approver"]})
    _config(ctx, "post", f"/api/users/{ctx.actor.pk}/reactivate/", {})
    _config(ctx, "post", f"/api/users/{ctx.actor.pk}/otp-reset/", {})


def api_take_over_another_account(ctx):
    _config(ctx, "patch", f"/api/users/{ctx.victim.pk}/", {"email": "me@evil.invalid"})
    _config(ctx, "post", f"/api/users/{ctx.victim.pk}/otp-reset/", {})
    _config(ctx, "post", f"/api/users/{ctx.victim.pk}/deactivate/", {})
    # Password reset to the new address: off without a mail backend that delivers.
    assert ctx.web.post("/accounts/password_reset/", {"email": "me@evil.invalid"}).status_code == 404


def api_bend_the_rules(ctx):
    policy = Policy.objects.get(kind="vm_migrate", zone=None)
    _config(ctx, "patch", f"/api/policies/{policy.pk}/", {"approver_group": "auditor"})
    _config(ctx, "patch", f"/api/policies/{policy.pk}/", {"approver_group": "requester"})
    _config(ctx, "patch", f"/api/policies/{policy.pk}/", {"required_approvals": 1, "allowed_zone_pairs": []})
    _config(ctx, "delete", f"/api/policies/{policy.pk}/", {})
    _config(ctx, "post", "/api/policies/", {"kind": "config_change", "approver_group": "auditor"})
    zone = Zone.objects.get(connector=ctx.lab, name="dmz")
    _config(ctx, "patch", f"/api/zones/{zone.pk}/", {"trust_level": 99})
    _config(ctx, "delete", f"/api/zones/{zone.pk}/", {})
    _config(ctx, "post", "/api/zones/", {"connector": ctx.lab.pk, "name": "mine", "trust_level": 99})
    template = ctx.lab.templates.first()
    _config(ctx, "patch", f"/api/templates/{template.pk}/", {"description": "fine"})
    _config(ctx, "delete", f"/api/templates/{template.pk}/", {})
    _config(ctx, "post", f"/api/templates/{template.pk}/revet/", {})
    _config(ctx, "post", "/api/templates/", {"connector": ctx.lab.pk, "name": "tpl-win2022"})


def api_repoint_the_connector(ctx):
    _config(ctx, "patch", f"/api/connectors/{ctx.lab.pk}/", {"url": "https://127.0.0.1:1/sdk"})
    _config(ctx, "patch", f"/api/connectors/{ctx.lab.pk}/", {"url": "https://127.0.0.1:1/sdk", "password": "guess"})
    _config(ctx, "delete", f"/api/connectors/{ctx.lab.pk}/", {})
    _config(ctx, "post", "/api/connectors/", {"name": "mine", "url": "https://127.0.0.1:1/sdk", "username": "u"})


def api_freezes_and_chat_hooks(ctx):
    """Neither a freeze (which holds work) nor a chat webhook (which hears of
    every ticket) is set by one person."""
    now = timezone.now()
    window = {"starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat()}
    _config(ctx, "post", "/api/freezes/", {"connector": ctx.lab.pk, "name": "mine", **window})
    _config(ctx, "patch", "/api/freezes/1/", {"ends_at": now.isoformat()})
    _config(ctx, "delete", "/api/freezes/1/", {})
    _config(ctx, "post", "/api/chat-hooks/", {"name": "mine", "service": "slack", "url": "https://hooks.invalid/x"})
    _config(ctx, "patch", "/api/chat-hooks/1/", {"url": "https://hooks.invalid/y"})
    _config(ctx, "delete", "/api/chat-hooks/1/", {})
    assert not FreezeWindow.objects.exists() and not ChatHook.objects.exists()


def page_configuration_requests(ctx):
    ctx.web.post("/config/user/new/", {"username": "acc-page", "roles": ["approver"], **J})
    ctx.web.post(f"/config/user/{ctx.actor.pk}/update/", {"roles": ["requester", "approver"], **J})
    ctx.web.post(f"/config/user/{ctx.victim.pk}/deactivate/", J)
    for ticket in Ticket.objects.filter(requester=ctx.actor, kind="config_change", state="pending"):
        _self_approve(ctx, ticket.pk, api=False)


def admin_writes(ctx):
    ctx.web.post("/admin/auth/user/add/", {"username": "acc-admin", "password1": "x" * 20, "password2": "x" * 20})
    ctx.web.post(
        f"/admin/auth/user/{ctx.actor.pk}/change/",
        {"username": ctx.actor.username, "groups": [g.pk for g in ctx.actor.groups.all()], "is_superuser": "on"},
    )
    policy = Policy.objects.get(kind="vm_migrate", zone=None)
    ctx.web.post(f"/admin/approvals/policy/{policy.pk}/change/", {"required_approvals": 1, "kind": "vm_migrate"})
    ctx.web.post(f"/admin/connectors/connector/{ctx.lab.pk}/change/", {"url": "https://127.0.0.1:1/sdk"})
    ticket = Ticket.objects.filter(kind="vm_migrate").first()
    if ticket:
        ctx.web.post(f"/admin/approvals/ticket/{ticket.pk}/change/", {"state": "approved"})


# (name, the routes it tries, how). Routes are URL names (API, pages, admin prefixes).
PATHS = [
    ("API: file a ticket and approve it oneself", {"ticket-list", "ticket-approve"}, api_file_and_approve_own),
    ("pages: file a ticket and approve it oneself", {"ticket-new-kind", "ticket-new"}, page_file_and_approve_own),
    ("API: access for one's own account", {"ticket-list"}, api_admin_access_for_self),
    ("API: write a ticket's state", {"ticket-detail"}, api_write_state),
    ("API: create accomplice accounts", {"user-list"}, api_create_accomplices),
    ("API: grant oneself roles", {"user-detail", "user-reactivate", "user-otp-reset"}, api_grant_own_roles),
    (
        "API and self-service: take over another account",
        {"user-detail", "user-otp-reset", "user-deactivate", "password_reset"},
        api_take_over_another_account,
    ),
    (
        "API: bend policies, zones and catalogue",
        {
            "policy-list",
            "policy-detail",
            "zone-list",
            "zone-detail",
            "cataloguetemplate-list",
            "cataloguetemplate-detail",
            "cataloguetemplate-revet",
        },
        api_bend_the_rules,
    ),
    ("API: re-point or replace the connector", {"connector-list", "connector-detail"}, api_repoint_the_connector),
    (
        "API: set or lift a freeze, add a chat webhook",
        {"freezewindow-list", "freezewindow-detail", "chathook-list", "chathook-detail"},
        api_freezes_and_chat_hooks,
    ),
    ("pages: configuration requests", {"config-new", "config-request", "ticket-approve"}, page_configuration_requests),
    ("Django admin: write anything", {"admin"}, admin_writes),
]

# Routes that change nothing a second person guards: reads, one's own sign-in,
# a rejection, cancelling or revoking (each only takes power away).
READ_ONLY = {
    "api-root",
    "schema",
    "connector-inventory",
    "inventory-search",
    "ticket-reject",
    "ticket-cancel",
    "ticket-revoke",
    "audit-list",
    "audit-verify",
    "audit-export",
    "audit-checkpoints",
    "audit-links",
    "finding-list",
    "finding-detail",
    "finding-acknowledge",
    "home",
    "healthz",
    "tickets",
    "ticket",
    "ticket-live",
    "audit",
    "audit-chain",
    "findings",
    "config",
    "login",
    "logout",
    "oidc_start",
    "oidc_callback",
    "logout_everywhere",
    "password_change",
    "password_change_done",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "otp_enrol",
    "otp_verify",
    # Passkeys are one's own second factor; a challenge signs nothing by itself.
    "passkeys",
    "passkey_register_options",
    "passkey_register",
    "ticket-passkey-challenge",
    # A post-review of an emergency that already ran: it changes nothing on the hypervisor.
    "ticket-review",
    "ticket-review-page",
    # One's own new VM's password, shown once: it changes nothing on the hypervisor.
    "ticket-guest-password",
    "account-activate",
}


def _route_names():
    names = set()

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if route.startswith("admin/"):
                names.add("admin")
            elif isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and p.name and "format" not in route and not route.startswith("bench/"):
                names.add(p.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_route_is_tried_or_read_only():
    tried = set().union(*(routes for _, routes, _ in PATHS))
    assert _route_names() - tried - READ_ONLY == set(), "routes no lone-actor path tries"


def hypervisor_state(si) -> dict:
    """Every VM's host and datastores and every permission, read through a
    pyVmomi session of the test's own."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        vms = {vm.name: (vm.runtime.host.name if vm.runtime.host else None) for vm in view.view}
    finally:
        view.Destroy()
    perms = {(p.principal, p.roleId, p.entity._moId) for p in content.authorizationManager.RetrieveAllPermissions()}
    return {"vms": vms, "permissions": perms}


@pytest.mark.parametrize("role_set", ROLE_SETS, ids="+".join)
def test_one_person_cannot_get_a_change_onto_the_hypervisor(role_set, fresh_vcsim, roles, api, workers):
    lab = register_lab(fresh_vcsim)
    actor = UserFactory(username="lone", roles=list(role_set), is_superuser=True, is_staff=True)
    victim = UserFactory(username="victim", roles=["approver"], email="victim@example.invalid")
    UserFactory(username="bystander", roles=["portal_admin"], is_staff=True)  # the admin who is not in on it
    check = fresh_vcsim.connect()
    before = hypervisor_state(check)
    policies = list(Policy.objects.values())
    zones = list(Zone.objects.values())
    groups_before = sorted(actor.groups.values_list("name", flat=True))
    workers(1)  # with beat: the sweeper would queue anything approved
    web = Client()
    web.force_login(actor)
    ctx = Ctx(actor=actor, api=api(actor), web=web, lab=lab, victim=victim, filed=[])
    for name, _routes, attempt in PATHS:
        attempt(ctx)
        assert not Ticket.objects.exclude(state__in=[TicketState.PENDING, TicketState.CANCELLED]).exists(), name
    time.sleep(3)  # a sweep or two of the worker's beat
    assert not Ticket.objects.exclude(state=TicketState.PENDING).exists()
    assert hypervisor_state(check) == before
    # Nobody new, no role, rule or connector moved.
    assert set(User.objects.values_list("username", flat=True)) == {"lone", "victim", "bystander"}
    assert sorted(User.objects.get(pk=actor.pk).groups.values_list("name", flat=True)) == groups_before
    assert not User.objects.filter(is_superuser=True).exclude(pk=actor.pk).exists()
    assert User.objects.get(pk=victim.pk).email == "victim@example.invalid"
    assert User.objects.get(pk=victim.pk).is_active
    assert list(Policy.objects.values()) == policies and list(Zone.objects.values()) == zones
    assert Connector.objects.get(pk=lab.pk).url == fresh_vcsim.url
    # The log says what was tried: every ticket filed, and every self-approval refused.
    for ticket_id in set(ctx.filed):
        assert AuditEntry.objects.filter(ticket_id=ticket_id, action="ticket.submitted", actor=actor).exists()
        refused = AuditEntry.objects.filter(ticket_id=ticket_id, action="ticket.decision_refused", actor=actor)
        assert refused.exists(), f"no refusal logged for {ticket_id}"
    if "portal_admin" in role_set:
        assert AuditEntry.objects.filter(action="config.request_refused", actor=actor).exists()


# The directory row: with a directory configured, people and roles come from
# its groups, so even a portal admin the directory made has no path to a new
# account or a role (not alone, and not with a second admin either: nothing
# is filed for one to approve). A real OpenLDAP (tests/fixtures/slapd.py), one per module.
slapd, ldap_directory = slapd_fixtures.slapd, slapd_fixtures.ldap_directory


@pytest.mark.parametrize("extra", [(), ("auditor",)], ids=["portal_admin", "portal_admin+auditor"])
def test_with_a_directory_a_portal_admin_cannot_create_a_user_or_grant_a_role(
    extra, ldap_directory, roles, api, workers
):
    def sign_in(name):
        web = Client()
        web.post("/accounts/login/", {"username": name, "password": ldap_directory.password(name)})
        return web

    web = sign_in("adm1")
    for name in ("adm2", "sec1", "req"):
        sign_in(name)
    actor = User.objects.get(username="adm1")
    if extra:
        actor.groups.add(*[roles[r] for r in extra])  # as if the directory also put them in audit
    victim, other_admin = User.objects.get(username="sec1"), User.objects.get(username="adm2")
    local = UserFactory(username="local-approver", roles=[])
    workers(1)
    client = api(actor)
    people_before = set(User.objects.values_list("username", flat=True))
    groups_before = {u.pk: sorted(u.groups.values_list("name", flat=True)) for u in User.objects.all()}
    attempts = [
        ("post", "/api/users/", {"username": "acc-dir", "roles": ["approver"], "email": "me@evil.invalid"}),
        ("post", "/api/users/", {"username": "acc-dir2", "roles": []}),
        ("patch", f"/api/users/{actor.pk}/", {"roles": ["portal_admin", "auditor", "approver"]}),
        ("patch", f"/api/users/{victim.pk}/", {"roles": ["approver", "requester"]}),
        ("patch", f"/api/users/{other_admin.pk}/", {"roles": ["portal_admin", "auditor"]}),
        ("patch", f"/api/users/{local.pk}/", {"roles": ["approver"]}),
    ]
    for method, path, body in attempts:
        response = getattr(client, method)(path, {**body, **J}, format="json")
        assert response.status_code in (400, 403), (path, response.status_code, response.content[:200])
    web.post("/config/user/new/", {"username": "acc-page", "roles": ["approver"], **J})
    web.post(f"/config/user/{victim.pk}/update/", {"roles": ["approver", "requester"], **J})
    web.post(f"/config/user/{local.pk}/update/", {"roles": ["approver"], **J})
    web.post("/admin/auth/user/add/", {"username": "acc-admin", "password1": "x" * 20, "password2": "x" * 20})
    web.post(f"/admin/auth/user/{local.pk}/change/", {"username": local.username, "groups": [roles["approver"].pk]})
    # Nothing was filed that a second admin could approve, nobody new, no role moved.
    assert not Ticket.objects.filter(kind="config_change").exists()
    assert set(User.objects.values_list("username", flat=True)) == people_before
    assert {u.pk: sorted(u.groups.values_list("name", flat=True)) for u in User.objects.all()} == groups_before
    assert not User.objects.filter(is_superuser=True).exists()
