"""Every API endpoint × every role, and anonymous. An endpoint added without
a row here fails test_every_api_route_is_in_the_matrix."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import get_resolver
from django.utils import timezone

from approvals.models import ChatHook, FreezeWindow, Policy, Ticket, Zone
from audit.models import Finding
from connectors import credentials
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, body, file_ticket
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "requester", "approver", "auditor", "portal_admin"]
R, A, U, P = "requester", "approver", "auditor", "portal_admin"
J = {"justification": "j"}


def statuses(anonymous=401, **by_role):
    """Expected status per role; `default` for roles not named."""
    default = by_role.pop("default", None)
    return {"anonymous": anonymous, **{role: by_role.get(role, default) for role in (R, A, U, P)}}


# (route name, method, path template, body, expected statuses). {t} is a ticket
# filed by the requester (an admin_access one for revoke), {c} the connector,
# {z} a zone, {m} a catalogue entry, {p} a policy, {f} an open finding, {u}
# the approver2 account (someone other than the caller). Configuration writes
# answer 202: they file a request and change nothing yet.
MATRIX = [
    ("api-root", "get", "/api/", None, statuses(default=200)),
    ("schema", "get", "/api/schema/", None, statuses(anonymous=200, default=200)),
    ("connector-list", "get", "/api/connectors/", None, statuses(default=200)),
    ("connector-list", "post", "/api/connectors/", {}, statuses(default=403, portal_admin=400)),
    ("connector-detail", "get", "/api/connectors/{c}/", None, statuses(default=200)),
    ("connector-detail", "patch", "/api/connectors/{c}/", {}, statuses(default=403, portal_admin=400)),
    (
        "connector-detail",
        "patch",
        "/api/connectors/{c}/",
        {"username": "other", "justification": "j"},
        statuses(default=403, portal_admin=400),  # a new username needs the password again
    ),
    ("connector-detail", "delete", "/api/connectors/{c}/", J, statuses(default=403, portal_admin=400)),
    ("connector-inventory", "get", "/api/connectors/{c}/inventory/", None, statuses(default=200)),
    ("zone-list", "get", "/api/zones/", None, statuses(default=200)),
    ("zone-list", "post", "/api/zones/", {}, statuses(default=403, portal_admin=400)),
    ("zone-detail", "get", "/api/zones/{z}/", None, statuses(default=200)),
    ("zone-detail", "patch", "/api/zones/{z}/", {}, statuses(default=403, portal_admin=400)),
    ("zone-detail", "patch", "/api/zones/{z}/", {"trust_level": 31, **J}, statuses(default=403, portal_admin=202)),
    ("zone-detail", "delete", "/api/zones/{z}/", J, statuses(default=403, portal_admin=202)),
    ("freezewindow-list", "get", "/api/freezes/", None, statuses(default=200)),
    ("freezewindow-list", "post", "/api/freezes/", {}, statuses(default=403, portal_admin=400)),
    ("freezewindow-detail", "get", "/api/freezes/{w}/", None, statuses(default=200)),
    (
        "freezewindow-detail",
        "patch",
        "/api/freezes/{w}/",
        {"reason": "audit", **J},
        statuses(default=403, portal_admin=202),
    ),
    ("freezewindow-detail", "delete", "/api/freezes/{w}/", J, statuses(default=403, portal_admin=202)),
    ("chathook-list", "get", "/api/chat-hooks/", None, statuses(default=200)),
    ("chathook-list", "post", "/api/chat-hooks/", {}, statuses(default=403, portal_admin=400)),
    ("chathook-detail", "get", "/api/chat-hooks/{h}/", None, statuses(default=200)),
    (
        "chathook-detail",
        "patch",
        "/api/chat-hooks/{h}/",
        {"service": "teams", **J},
        statuses(default=403, portal_admin=202),
    ),
    ("chathook-detail", "delete", "/api/chat-hooks/{h}/", J, statuses(default=403, portal_admin=202)),
    ("cataloguetemplate-list", "get", "/api/templates/", None, statuses(default=200)),
    ("cataloguetemplate-list", "post", "/api/templates/", {}, statuses(default=403, portal_admin=400)),
    ("cataloguetemplate-detail", "get", "/api/templates/{m}/", None, statuses(default=200)),
    ("cataloguetemplate-detail", "patch", "/api/templates/{m}/", {}, statuses(default=403, portal_admin=400)),
    (
        "cataloguetemplate-detail",
        "patch",
        "/api/templates/{m}/",
        {"description": "new words", **J},
        statuses(default=403, portal_admin=202),
    ),
    ("cataloguetemplate-detail", "delete", "/api/templates/{m}/", J, statuses(default=403, portal_admin=202)),
    ("cataloguetemplate-revet", "post", "/api/templates/{m}/revet/", J, statuses(default=403, portal_admin=202)),
    ("policy-list", "get", "/api/policies/", None, statuses(default=200)),
    ("policy-list", "post", "/api/policies/", {}, statuses(default=403, portal_admin=400)),
    ("policy-detail", "get", "/api/policies/{p}/", None, statuses(default=200)),
    ("policy-detail", "patch", "/api/policies/{p}/", {}, statuses(default=403, portal_admin=400)),
    (
        "policy-detail",
        "patch",
        "/api/policies/{p}/",
        {"required_approvals": 3, **J},
        statuses(default=403, portal_admin=202),
    ),
    ("policy-detail", "delete", "/api/policies/{p}/", J, statuses(default=403, portal_admin=202)),
    ("user-list", "get", "/api/users/", None, statuses(default=403, auditor=200, portal_admin=200)),
    ("user-list", "post", "/api/users/", {}, statuses(default=403, portal_admin=400)),
    (
        "user-list",
        "post",
        "/api/users/",
        {"username": "newbie", "roles": ["requester"], **J},
        statuses(default=403, portal_admin=202),
    ),
    ("user-detail", "get", "/api/users/{u}/", None, statuses(default=403, auditor=200, portal_admin=200)),
    ("user-detail", "patch", "/api/users/{u}/", {"first_name": "A", **J}, statuses(default=403, portal_admin=202)),
    ("user-deactivate", "post", "/api/users/{u}/deactivate/", J, statuses(default=403, portal_admin=202)),
    ("user-reactivate", "post", "/api/users/{u}/reactivate/", J, statuses(default=403, portal_admin=400)),
    ("user-otp-reset", "post", "/api/users/{u}/otp-reset/", J, statuses(default=403, portal_admin=400)),
    ("ticket-list", "get", "/api/tickets/", None, statuses(default=200)),
    ("ticket-list", "post", "/api/tickets/", {}, statuses(default=403, requester=400)),
    ("ticket-detail", "get", "/api/tickets/{t}/", None, statuses(default=200, portal_admin=404)),
    (
        "ticket-approve",
        "post",
        "/api/tickets/{t}/approve/",
        {},
        statuses(requester=403, approver=200, auditor=403, portal_admin=404),
    ),
    (
        "ticket-passkey-challenge",
        "post",
        "/api/tickets/{t}/passkey-challenge/",
        None,
        # The matrix's tickets do not ask for passkeys.
        statuses(requester=403, approver=409, auditor=403, portal_admin=404),
    ),
    (
        "ticket-reject",
        "post",
        "/api/tickets/{t}/reject/",
        {"comment": "no"},
        statuses(requester=403, approver=200, auditor=403, portal_admin=404),
    ),
    (
        "ticket-review",
        "post",
        "/api/tickets/{t}/review/",
        {"comment": "looked"},
        # The matrix's tickets are no emergencies: nothing to review.
        statuses(requester=403, approver=409, auditor=403, portal_admin=404),
    ),
    (
        "ticket-cancel",
        "post",
        "/api/tickets/{t}/cancel/",
        None,
        statuses(requester=200, approver=403, auditor=403, portal_admin=404),
    ),
    (
        "ticket-revoke",
        "post",
        "/api/tickets/{t}/revoke/",
        None,
        statuses(requester=409, approver=409, auditor=403, portal_admin=404),
    ),
    ("audit-list", "get", "/api/audit/", None, statuses(default=403, approver=200, auditor=200)),
    ("audit-verify", "get", "/api/audit/verify/", None, statuses(default=403, approver=200, auditor=200)),
    ("audit-export", "get", "/api/audit/export/?format=json", None, statuses(default=403, approver=200, auditor=200)),
    ("audit-checkpoints", "get", "/api/audit/checkpoints/", None, statuses(default=403, approver=200, auditor=200)),
    ("audit-links", "get", "/api/audit/links/", None, statuses(default=403, approver=200, auditor=200)),
    ("finding-list", "get", "/api/findings/", None, statuses(default=403, approver=200, auditor=200)),
    ("finding-detail", "get", "/api/findings/{f}/", None, statuses(default=403, approver=200, auditor=200)),
    (
        "finding-acknowledge",
        "post",
        "/api/findings/{f}/acknowledge/",
        {"comment": "known"},
        statuses(default=403, approver=200),
    ),
]


def test_every_api_route_is_in_the_matrix():
    names = {name for name, *_ in MATRIX}
    resolver = get_resolver()
    api_names = set()
    for pattern in resolver.url_patterns:
        if str(pattern.pattern).startswith("api/"):
            stack = [pattern]
            while stack:
                p = stack.pop()
                if hasattr(p, "url_patterns"):
                    stack.extend(p.url_patterns)
                elif p.name and "format" not in str(p.pattern):
                    api_names.add(p.name)
    assert api_names - names == set(), "routes without a permission matrix entry"


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(api, lab, role, requester, approver2):
    user = None if role == "anonymous" else (requester if role == R else UserFactory(roles=[role]))
    client = api(user)
    zone, template, policy = lab.zones.first(), lab.templates.first(), Policy.objects.first()
    finding = Finding.objects.create(
        connector=lab,
        kind="vm_unexplained",
        object_ref="vm:matrix",
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )
    now = timezone.now()
    frozen = FreezeWindow.objects.create(
        connector=lab, name="matrix", starts_at=now + timedelta(days=30), ends_at=now + timedelta(days=31)
    )
    hook = ChatHook.objects.create(
        name="matrix",
        service="slack",
        url_sealed=credentials.seal("https://hooks.invalid/x"),
        url_hint="https://hooks.invalid/…",
    )
    names = iter(range(1000))
    for name, method, path, data, expected in MATRIX:
        kind, params = (
            ("admin_access", ADMIN_ACCESS)
            if name == "ticket-revoke"
            else ("vm_create", {**VM_CREATE, "name": f"perm-{next(names)}"})
        )
        ticket = file_ticket(api(requester), lab, kind, params) if "{t}" in path else None
        url = path.format(
            t=ticket["id"] if ticket else 0,
            c=lab.pk,
            z=zone.pk,
            m=template.pk,
            p=policy.pk,
            f=finding.pk,
            u=approver2.pk,
            w=frozen.pk,
            h=hook.pk,
        )
        call = getattr(client, method)
        response = call(url, data, format="json") if data is not None else call(url)
        assert response.status_code == expected[role], (
            f"{role} {method.upper()} {url}: {response.status_code} {response.content[:200]}"
        )
        if ticket and expected[role] in (401, 403, 404):
            assert Ticket.objects.get(pk=ticket["id"]).state == "pending", f"{role} {method} {url} changed the ticket"
    # Nothing any role did through these routes changed the configuration itself.
    assert Zone.objects.get(pk=zone.pk).trust_level == zone.trust_level
    assert FreezeWindow.objects.get(pk=frozen.pk).reason == "" and ChatHook.objects.get(pk=hook.pk).service == "slack"
    assert Policy.objects.get(pk=policy.pk).required_approvals == policy.required_approvals
    assert not get_user_model().objects.filter(username="newbie").exists()
    assert get_user_model().objects.get(pk=approver2.pk).is_active


def test_anonymous_cannot_file(api, lab):
    assert api().post("/api/tickets/", body(lab, "vm_create", VM_CREATE), format="json").status_code == 401
    assert Ticket.objects.count() == 0
