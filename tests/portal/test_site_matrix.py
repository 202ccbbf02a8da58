"""Every page URL of the site × every role and anonymous. (The API has its own
matrix in tests/approvals/test_permission_matrix.py.) A URL added without a
row here fails test_every_site_route_is_in_the_matrix."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from approvals.models import Ticket
from audit.models import Finding
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, file_ticket
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "requester", "approver", "auditor", "portal_admin"]
LOGIN = 302  # anonymous: sent to sign in


def row(anonymous=LOGIN, **by_role):
    default = by_role.pop("default", None)
    return {"anonymous": anonymous, **{r: by_role.get(r, default) for r in ROLES[1:]}}


# (route name, method, path, data, expected statuses, who changes what). {t}:
# a pending vm_create ticket of the requester's, {a}: a pending admin_access
# one, {f}: an open finding, {u}: another person's account, {c}: the lab connector. Page actions answer a refusal with a redirect and
# a message, so the last column says which role's POST takes effect: the
# ticket's resulting state, or "acknowledged" for the finding. Everyone else
# must leave it unchanged.
MATRIX = [
    ("home", "get", "/", None, row(default=200), None),
    ("healthz", "get", "/healthz", None, row(anonymous=200, default=200), None),
    ("tickets", "get", "/tickets/", None, row(default=200), None),
    ("ticket-new", "get", "/tickets/new/", None, row(default=403, requester=200), None),
    ("ticket-new-kind", "get", "/tickets/new/vm_migrate/", None, row(default=403, requester=200), None),
    (
        "inventory-search",
        "get",
        "/inventory/{c}/search/?ticket_kind=vm_migrate&field=vm&vm=dev",
        None,
        row(default=403, requester=200),
        None,
    ),
    ("ticket", "get", "/tickets/{t}/", None, row(default=200, portal_admin=404), None),
    # 286 tells htmx to stop polling: the browser is signed out.
    ("ticket-live", "get", "/tickets/{t}/live/", None, row(anonymous=286, default=200, portal_admin=404), None),
    (
        "ticket-approve",
        "post",
        "/tickets/{t}/approve/",
        {},
        row(default=302, portal_admin=404),
        ("approver", "approved"),
    ),
    (
        "ticket-reject",
        "post",
        "/tickets/{t}/reject/",
        {"comment": "no"},
        row(default=302, portal_admin=404),
        ("approver", "rejected"),
    ),
    (
        "ticket-cancel",
        "post",
        "/tickets/{t}/cancel/",
        {},
        row(default=302, portal_admin=404),
        ("requester", "cancelled"),
    ),
    ("ticket-revoke", "post", "/tickets/{a}/revoke/", {}, row(default=302, portal_admin=404), (None, None)),
    # A pending ticket has no password yet: every role that sees it is told so.
    (
        "ticket-guest-password",
        "post",
        "/tickets/{t}/guest-password/",
        {},
        row(default=302, portal_admin=404),
        (None, None),
    ),
    # The matrix's tickets are no emergencies: a review changes nothing.
    (
        "ticket-review-page",
        "post",
        "/tickets/{t}/review/",
        {"comment": "looked"},
        row(default=302, portal_admin=404),
        (None, None),
    ),
    ("audit", "get", "/audit/", None, row(default=403, approver=200, auditor=200), None),
    ("audit-chain", "get", "/audit/chain/", None, row(default=403, approver=200, auditor=200), None),
    ("findings", "get", "/findings/", None, row(default=403, approver=200, auditor=200), None),
    (
        "finding-acknowledge",
        "post",
        "/findings/{f}/acknowledge/",
        {"comment": "seen"},
        row(default=403, approver=302, auditor=302),
        ("approver", "acknowledged"),
    ),
    ("login", "get", "/accounts/login/", None, row(anonymous=200, default=200), None),
    ("logout", "post", "/accounts/logout/", {}, row(anonymous=200, default=200), None),
    # OpenID Connect sign-in exists only with OIDC_ISSUER set; the suite's matrix runs without.
    ("oidc_start", "get", "/accounts/oidc/start/", None, row(anonymous=404, default=404), None),
    ("oidc_callback", "get", "/accounts/oidc/callback/", None, row(anonymous=404, default=404), None),
    ("password_change", "get", "/accounts/password_change/", None, row(default=200), None),
    ("password_change_done", "get", "/accounts/password_change/done/", None, row(default=200), None),
    ("logout_everywhere", "post", "/accounts/logout-everywhere/", {}, row(default=302), None),
    ("otp_enrol", "get", "/accounts/otp/enrol/", None, row(default=200), None),
    ("otp_verify", "get", "/accounts/otp/verify/", None, row(default=302), None),  # not enrolled: sent to enrol
    ("passkeys", "get", "/accounts/passkeys/", None, row(default=200), None),
    # Adding a passkey needs a one-time password confirmed in this session.
    ("passkey_register_options", "post", "/accounts/passkeys/options/", {}, row(default=403), None),
    ("passkey_register", "post", "/accounts/passkeys/register/", {}, row(default=403), None),
    # Password reset exists only with a mail backend that delivers; the suite's does not.
    ("password_reset", "get", "/accounts/password_reset/", None, row(anonymous=404, default=404), None),
    ("password_reset_done", "get", "/accounts/password_reset/done/", None, row(anonymous=404, default=404), None),
    ("password_reset_confirm", "get", "/accounts/reset/x/y/", None, row(anonymous=404, default=404), None),
    ("password_reset_complete", "get", "/accounts/reset/done/", None, row(anonymous=404, default=404), None),
    ("admin", "get", "/admin/", None, row(default=302, portal_admin=200), None),
    # An activation link with a bad token says so on a page of its own.
    ("account-activate", "get", "/accounts/activate/x/y/", None, row(anonymous=200, default=200), None),
    ("config", "get", "/config/", None, row(default=200), None),
    ("config-new", "get", "/config/user/new/", None, row(default=403, portal_admin=200), None),
    # A form without a justification files nothing: 400 with the form again.
    ("config-new", "post", "/config/user/new/", {"username": "x"}, row(default=403, portal_admin=400), None),
    ("config-request", "get", "/config/user/{u}/update/", None, row(default=403, portal_admin=200), None),
    ("config-request", "get", "/config/user/{u}/deactivate/", None, row(default=403, portal_admin=200), None),
]


def site_route_names():
    names = set()

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                if route.startswith(("api/", "admin/")):
                    continue
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and p.name and not route.startswith(("api/", "admin/", "bench/")):
                names.add(p.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_site_route_is_in_the_matrix():
    assert site_route_names() - {name for name, *_ in MATRIX} == set(), "routes without a matrix row"


@pytest.mark.parametrize("role", ROLES)
def test_site_permission_matrix(client, api, lab, role, requester, approver2):
    if role != "anonymous":
        user = requester if role == "requester" else UserFactory(roles=[role], is_staff=role == "portal_admin")
    names = iter(range(1000))
    for _name, method, path, data, expected, effect in MATRIX:
        if role == "anonymous":
            client.logout()
        else:
            client.force_login(user)
        target = None
        if "{t}" in path:
            target = Ticket.objects.get(
                pk=file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": f"site-{next(names)}"})["id"]
            )
        elif "{a}" in path:
            target = Ticket.objects.get(pk=file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)["id"])
        elif "{f}" in path:
            now = timezone.now()
            target = Finding.objects.create(
                connector=lab, kind="vm_unexplained", object_ref=f"vm-{next(names)}", first_seen=now, last_seen=now
            )
        pk = getattr(target, "pk", 0)
        url = path.format(t=pk, a=pk, f=pk, u=approver2.pk, c=lab.pk)
        response = client.post(url, data) if method == "post" else client.get(url)
        assert response.status_code == expected[role], f"{role} {method.upper()} {url}: {response.status_code}"
        if effect is not None:
            changer, result = effect
            target.refresh_from_db()
            now_is = (
                target.state
                if isinstance(target, Ticket)
                else ("open" if target.acknowledged_at is None else "acknowledged")
            )
            before = "pending" if isinstance(target, Ticket) else "open"
            assert now_is == (result if role == changer else before), f"{role} {method.upper()} {url}: {now_is}"
