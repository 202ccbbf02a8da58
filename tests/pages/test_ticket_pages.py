"""The ticket pages through Django's test client: forms validated by the
services, buttons only for those allowed to press them, refusals in words."""

import re
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts import otp
from approvals import services
from approvals.inventory import inventory_outdated
from approvals.models import Approval, Ticket
from tests.approvals.helpers import ADMIN_ACCESS
from tests.pages.helpers import CREATE_FORM, MIGRATE_WITHIN_DEV, make_succeeded, object_id, posted, submit

pytestmark = pytest.mark.django_db


def field_error(html: str, field: str) -> str:
    """The error text shown next to a form field, '' when none."""
    match = re.search(rf'id="id_{field}_error">(.*?)</div>', html, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def test_sign_in_failure_is_a_plain_message(client, requester):
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_pages_need_sign_in(client):
    for url in ("/", "/tickets/", "/tickets/new/", "/tickets/1/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), url


def test_sign_out_by_post(page, requester):
    client = page(requester)
    response = client.post("/accounts/logout/")
    assert response.status_code == 200 and "signed out" in response.content.decode()
    assert client.get("/").status_code == 302


def search(client, lab, kind: str, field: str, query: str) -> str:
    """What an object picker of the `kind` form lists for `query`."""
    response = client.get(f"/inventory/{lab.pk}/search/", {"ticket_kind": kind, "field": field, field: query})
    assert response.status_code == 200, response.content
    return response.content.decode()


def test_new_ticket_pickers_search_the_inventory_with_zones(page, lab, requester):
    client = page(requester)
    html = client.get("/tickets/new/vm_create/").content.decode()
    # The catalogue's few templates are a select, by managed-object id.
    template = object_id(lab, ("template",), "tpl-debian12")
    assert (
        f'<option value="{template}">tpl-debian12 — /lab/vm/templates/tpl-debian12 (1 network card(s))</option>' in html
    )
    # Objects of the estate are searched, never listed whole in the page.
    assert f'hx-get="/inventory/{lab.pk}/search/?ticket_kind=vm_create&amp;field=placement"' in html
    assert 'role="combobox"' in html and "prod-esx-01" not in html and "pg-dev" not in html
    # Each option gives the name, the path and the zone; its value is the path.
    placement = search(client, lab, "vm_create", "placement", "esx-01")
    assert 'data-value="/lab/host/prod/prod-esx-01"' in placement and "host · zone prod" in placement
    assert 'data-value="/lab/host/dmz-esx-01/dmz-esx-01"' in placement and "host · zone dmz" in placement
    cluster = search(client, lab, "vm_create", "placement", "prod")
    assert 'data-value="/lab/host/prod"' in cluster and "cluster · zone prod" in cluster
    # The exact name comes first.
    assert cluster.index('data-value="/lab/host/prod"') < cluster.index('data-value="/lab/host/prod/prod-esx-01"')
    assert "network · zone dev" in search(client, lab, "vm_create", "network", "pg-dev")
    assert "datastore · zone prod" in search(client, lab, "vm_create", "datastore", "ds-prod")
    # A VM field offers VMs with their power state, never templates.
    vms = search(client, lab, "vm_migrate", "vm", "dev-app")
    assert 'data-value="/lab/vm/dev-vms/dev-app-01"' in vms and "VM · zone dev · poweredOn" in vms
    assert "Nothing matches" in search(client, lab, "vm_migrate", "vm", "tpl-debian12")


def test_picker_search_refuses_what_no_form_asks_and_caps_its_answer(page, lab, requester, approver):
    client = page(requester)
    for query in ({"ticket_kind": "vm_migrate", "field": "justification"}, {"ticket_kind": "nope", "field": "vm"}, {}):
        response = client.get(f"/inventory/{lab.pk}/search/", query)
        assert response.status_code == 400 and "has an object field" in response.content.decode()
    assert client.get("/inventory/999999/search/", {"ticket_kind": "vm_migrate", "field": "vm"}).status_code == 404
    # Only people who file tickets search for one.
    denied = page(approver).get(f"/inventory/{lab.pk}/search/", {"ticket_kind": "vm_migrate", "field": "vm"})
    assert denied.status_code == 403
    # An empty query lists the first objects by name and says when there are more.
    every_vm = search(client, lab, "admin_access", "entity", "")
    assert every_vm.count('role="option"') == 20 and "More than 20 match; type more to narrow." in every_vm


def test_requester_files_vm_create_through_the_form(page, lab, requester):
    response = page(requester).post("/tickets/new/vm_create/", {**posted(lab, CREATE_FORM), "connector": lab.pk})
    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response.url == f"/tickets/{ticket.pk}/"
    assert ticket.requester == requester and ticket.state == "pending"
    assert ticket.params["host"] == object_id(lab, ("host",), "prod-esx-01") and "cluster" not in ticket.params
    assert ticket.params["objects"]["host"]["name"] == "prod-esx-01"
    assert ticket.params["networks"] == [object_id(lab, ("network",), "pg-prod")]
    assert ticket.params["cpus"] == 2 and ticket.justification == "New web node for the shop"


def test_value_over_policy_shows_the_error_at_the_field_and_stores_nothing(page, lab, requester):
    response = page(requester).post("/tickets/new/vm_create/", posted(lab, {**CREATE_FORM, "cpus": "64"}))
    assert response.status_code == 400
    html = response.content.decode()
    assert field_error(html, "cpus") == "At most 8 CPUs by policy."
    assert 'aria-invalid="true"' in html
    # What was typed stays in the form.
    assert 'value="web-page-01"' in html
    assert Ticket.objects.count() == 0


def test_justification_is_required(page, lab, requester):
    response = page(requester).post(
        "/tickets/new/vm_migrate/", posted(lab, {**MIGRATE_WITHIN_DEV, "justification": "  "})
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert field_error(html, "justification")
    # The only complaint: the objects chosen were fine.
    assert (field_error(html, "vm"), field_error(html, "target_host")) == ("", "")
    assert Ticket.objects.count() == 0


def test_zone_rule_error_sits_next_to_the_target_host(page, lab, requester):
    response = page(requester).post(
        "/tickets/new/vm_migrate/",
        posted(lab, {"vm": "prod-web-01", "target_host": "dmz-esx-01", "justification": "try the dmz"}),
    )
    assert response.status_code == 400
    assert "less trusted zone dmz is never allowed" in field_error(response.content.decode(), "target_host")
    assert Ticket.objects.count() == 0


def test_a_cross_zone_move_through_the_form_takes_disks_and_cards_along(page, lab, requester):
    move = {"vm": "dev-app-01", "target_host": "prod-esx-01", "justification": "promote to prod"}
    # The cards stay on pg-dev unless a network is chosen: refused at that field.
    response = page(requester).post("/tickets/new/vm_migrate/", posted(lab, {**move, "target_datastore": "ds-prod"}))
    assert response.status_code == 400
    assert "map it to a network of zone prod" in field_error(response.content.decode(), "target_network")
    assert Ticket.objects.count() == 0
    response = page(requester).post(
        "/tickets/new/vm_migrate/", posted(lab, {**move, "target_datastore": "ds-prod", "target_network": "pg-prod"})
    )
    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response.url == f"/tickets/{ticket.pk}/"
    dev_net, prod_net = object_id(lab, ("network",), "pg-dev"), object_id(lab, ("network",), "pg-prod")
    assert ticket.params["network_map"] == {dev_net: prod_net}
    assert ticket.params["target_datastore"] == object_id(lab, ("datastore",), "ds-prod")
    assert ticket.params["objects"]["target_datastore"]["name"] == "ds-prod"
    assert (ticket.zone, ticket.required_approvals) == ("prod", 2)


def test_placement_errors_from_the_service_land_on_the_placement_field(page, lab, requester):
    response = page(requester).post("/tickets/new/vm_create/", posted(lab, {**CREATE_FORM, "network": "pg-dmz"}))
    assert response.status_code == 400
    error = field_error(response.content.decode(), "network")
    assert f"pg-dmz ({object_id(lab, ('network',), 'pg-dmz')}) is in zone dmz" in error
    assert "the placement is in zone prod" in error
    assert Ticket.objects.count() == 0


def test_only_requesters_open_the_new_ticket_form(page, lab, approver, auditor):
    for user in (approver, auditor):
        response = page(user).get("/tickets/new/vm_create/")
        assert response.status_code == 403
        assert "Only requesters file tickets." in response.content.decode()


def test_unknown_kind_is_a_404_page_in_words(page, lab, requester):
    response = page(requester).get("/tickets/new/vm_delete/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()


def test_buttons_follow_the_permission_rules(page, lab, requester, approver, auditor):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    url = f"/tickets/{ticket.pk}/"
    own = page(requester).get(url).content.decode()
    assert ">Approve<" not in own and "Reject" not in own
    assert "Cancel this ticket" in own
    decider = page(approver).get(url).content.decode()
    assert ">Approve<" in decider and "Why reject?" in decider and "Cancel this ticket" not in decider
    reader = page(auditor).get(url).content.decode()
    assert ">Approve<" not in reader and "Cancel this ticket" not in reader and "Revoke" not in reader
    # Parameters, requester and the policy are all on the page.
    assert "dev-esx-02" in reader and "alice" in reader and "0 of 1 required" in reader


def test_requester_may_not_see_another_requesters_ticket(page, lab, requester, requester2):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    assert page(requester2).get(f"/tickets/{ticket.pk}/").status_code == 404
    assert page(requester2).get(f"/tickets/{ticket.pk}/live/").status_code == 404
    assert page(requester2).post(f"/tickets/{ticket.pk}/cancel/").status_code == 404
    assert Ticket.objects.get(pk=ticket.pk).state == "pending"


def test_approve_through_the_page(page, lab, requester, approver):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    client = page(approver)
    response = client.post(f"/tickets/{ticket.pk}/approve/", {"comment": "fine"}, follow=True)
    assert f"You approved {ticket.ref}." in response.content.decode()
    approval = Approval.objects.get(ticket=ticket)
    assert approval.approver == approver and approval.comment == "fine"
    assert Ticket.objects.get(pk=ticket.pk).state == "approved"
    # Deciding twice is a message, not a crash.
    again = client.post(f"/tickets/{ticket.pk}/approve/", follow=True).content.decode()
    assert "no longer takes decisions" in again


def test_requester_posting_approve_gets_a_plain_refusal(page, lab, requester):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    response = page(requester).post(f"/tickets/{ticket.pk}/approve/", follow=True)
    assert "You cannot decide on a ticket you requested." in response.content.decode()
    assert not Approval.objects.exists()


def test_reject_asks_for_a_comment(page, lab, requester, approver):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    client = page(approver)
    response = client.post(f"/tickets/{ticket.pk}/reject/", {"comment": " "})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Say why you reject this ticket." in html and '<details class="reject" open>' in html
    assert Ticket.objects.get(pk=ticket.pk).state == "pending"
    client.post(f"/tickets/{ticket.pk}/reject/", {"comment": "not this week"})
    ticket.refresh_from_db()
    assert ticket.state == "rejected"
    assert Approval.objects.get(ticket=ticket).comment == "not this week"


def test_cancel_by_the_requester(page, lab, requester):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    response = page(requester).post(f"/tickets/{ticket.pk}/cancel/", follow=True)
    assert f"{ticket.ref} is cancelled." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).state == "cancelled"
    html = page(requester).get(f"/tickets/{ticket.pk}/").content.decode()
    assert "Cancel this ticket" not in html


def test_revoke_only_for_active_access(page, lab, requester, approver, approver2, auditor):
    ticket = submit(requester, lab, "admin_access", ADMIN_ACCESS)
    url = f"/tickets/{ticket.pk}/"
    assert "Revoke access now" not in page(requester).get(url).content.decode()
    make_succeeded(ticket, approver, approver2)
    assert "Revoke access now" in page(requester).get(url).content.decode()
    assert "Revoke access now" in page(approver).get(url).content.decode()
    assert "Revoke access now" not in page(auditor).get(url).content.decode()
    response = page(approver).post(f"{url}revoke/", follow=True)
    assert f"Access of {ticket.ref} is being removed." in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.access_expires_at is not None and ticket.access_expires_at <= ticket.updated_at.__class__.now(
        ticket.access_expires_at.tzinfo
    )


def test_live_part_stops_polling_at_a_final_state_and_sends_changed_actions(page, lab, requester, approver):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    client = page(requester)
    live = client.get(f"/tickets/{ticket.pk}/live/?shown=pending").content.decode()
    assert 'hx-trigger="every 2s"' in live and 'id="ticket-actions"' not in live
    make_succeeded(ticket, approver)
    live = client.get(f"/tickets/{ticket.pk}/live/?shown=pending").content.decode()
    assert 'id="ticket-state" class="state state-succeeded">succeeded<' in live
    assert "hx-trigger" not in live
    # The actions follow the new state: no more cancel button.
    assert 'id="ticket-actions"' in live and 'hx-swap-oob="true"' in live and "Cancel this ticket" not in live
    steps = (
        "Filed by alice",
        "Approved by bob (1 of 1)",
        "Approved: queued for a worker",
        "Running",
        "Worker worker",
        "Succeeded",
    )
    for title in steps:
        assert title in live


def test_live_part_for_a_signed_out_browser_stops_polling(client, lab, requester):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    assert client.get(f"/tickets/{ticket.pk}/live/").status_code == 286


def test_ticket_list_filters_and_pages(page, lab, requester, requester2, approver):
    first = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    submit(requester2, lab, "admin_access", ADMIN_ACCESS)
    html = page(approver).get("/tickets/?kind=vm_migrate").content.decode()
    assert first.ref in html and "admin_access" not in html.split("<tbody>")[1]
    html = page(approver).get("/tickets/?requester=dave").content.decode()
    assert first.ref not in html
    # Requesters see their own only, whatever they ask for.
    html = page(requester2).get("/tickets/?requester=alice").content.decode()
    assert first.ref not in html
    html = page(approver).get(f"/tickets/?state=pending&connector={lab.pk}&created_after=2020-01-01").content.decode()
    assert '<option value="pending" selected>' in html and f'<option value="{lab.pk}" selected>' in html
    assert 'type="date" value="2020-01-01"' in html and first.ref in html
    html = page(approver).get("/tickets/?state=bogus").content.decode()
    assert "Select a valid choice" in html, html
    assert 'aria-describedby="id_state_error" aria-invalid="true" id="id_state"' in html
    html = page(approver).get(f"/tickets/?connector={lab.pk + 1000}").content.decode()
    assert 'aria-invalid="true" id="id_connector"' in html and "Select a valid choice" in html


def test_requester_column_only_where_tickets_of_others_are_listed(page, lab, requester, approver):
    submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    for path in ("/", "/tickets/"):
        html = page(requester).get(path).content.decode()
        assert 'data-label="Ticket"' in html and 'data-label="Requester"' not in html, path
        html = page(approver).get(path).content.decode()
        assert f'<td data-label="Requester">{requester.username}</td>' in html, path


def test_ticket_list_pagination(page, lab, requester, approver):
    from tests.approvals.test_query_counts import add_tickets

    add_tickets(lab, requester, [], requester.groups.first().__class__.objects.get(name="approver"), 30)
    html = page(approver).get("/tickets/").content.decode()
    assert html.count('data-label="Ticket"') == 25 and 'rel="next"' in html and 'rel="prev"' not in html
    second = page(approver).get("/tickets/?page=2").content.decode()
    assert second.count('data-label="Ticket"') == 5 and 'rel="prev"' in second and 'rel="next"' not in second


def test_dashboard_per_role(page, lab, requester, approver, auditor, requester2):
    mine = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    html = page(requester).get("/").content.decode()
    assert "Your open tickets" in html and mine.ref in html and "Awaiting your decision" not in html
    assert "Tickets filed per day" in html and "<svg" in html
    html = page(approver).get("/").content.decode()
    assert "Awaiting your decision" in html and mine.ref in html
    html = page(auditor).get("/").content.decode()
    assert "Recent activity" in html and "ticket.submitted" in html
    assert "Awaiting your decision" not in html


def test_dashboard_counts_tickets_by_state_and_by_day(page, lab, requester, requester2):
    tickets = [submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV) for _ in range(4)]
    submit(requester2, lab, "vm_migrate", MIGRATE_WITHIN_DEV)  # someone else's: not in the requester's counts
    Ticket.objects.filter(pk=tickets[1].pk).update(created_at=timezone.now() - timedelta(days=3))
    Ticket.objects.filter(pk=tickets[2].pk).update(created_at=timezone.now() - timedelta(days=40))
    services.ticket_cancel(ticket_id=tickets[3].pk, user=requester)
    context = page(requester).get("/").context
    counts = dict(context["state_counts"])
    assert (counts["pending"], counts["cancelled"], sum(counts.values())) == (3, 1, 4)
    daily, today = dict(context["daily"]), timezone.localdate()
    # The chart covers the last 30 days: the ticket filed 40 days ago is counted by state only.
    assert len(daily) == 30 and max(daily) == today
    assert (daily[today], daily[today - timedelta(days=3)], sum(daily.values())) == (2, 1, 3)


def test_approver_queue_never_lists_their_own_tickets(page, lab, roles):
    from tests.factories import UserFactory

    both = UserFactory(username="sam", roles=["requester", "approver"])
    own = submit(both, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    html = page(both).get("/").content.decode()
    queue = html.split('id="queue-title"')[1].split("</section>")[0]
    assert own.ref not in queue and "Nothing waits for you." in queue


def test_error_pages_are_words(page, requester):
    response = page(requester).get("/no/such/page/")
    assert response.status_code == 404 and "Not found" in response.content.decode()
    # Django renders 500.html with no context at all when a view fails.
    from django.template.loader import render_to_string

    html = render_to_string("500.html")
    assert "Something went wrong" in html and "portal.css" in html


def test_dashboard_counts_of_all_tickets_are_cached_briefly(page, lab, requester, requester2, approver):
    submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    assert page(approver).get("/").context["state_counts"][0] == ("pending", 1)
    assert page(requester2).get("/").context["state_counts"][0] == ("pending", 0)
    submit(requester2, lab, "vm_migrate", {"vm": "dev-app-02", "target_host": "dev-esx-01"})
    # Within the cache time the shared "all tickets" counts stay as they were,
    # and say how old they are...
    response = page(approver).get("/")
    assert response.context["state_counts"][0] == ("pending", 1) and "Counts as of" in response.content.decode()
    # ...while a requester's own are always current.
    assert page(requester2).get("/").context["state_counts"][0] == ("pending", 1)
    cache.clear()
    assert page(approver).get("/").context["state_counts"][0] == ("pending", 2)


def test_password_page_is_the_portals_own(page, requester):
    html = page(requester).get("/accounts/password_change/").content.decode()
    assert "Change your password" in html and "Sign out everywhere" in html and "portal.css" in html


def test_unreachable_hypervisor_is_said_in_words(page, own_lab, fresh_vcsim, requester):
    fresh_vcsim.stop()
    inventory_outdated(own_lab.pk)  # labelling the lab read (and stored) it
    response = page(requester).get("/tickets/new/vm_migrate/")
    assert response.status_code == 503
    html = response.content.decode()
    assert "inventory cannot be read now" in html and "Traceback" not in html and 'name="vm"' not in html


def test_policy_asking_for_a_one_time_password_sends_the_approver_to_confirm_one(page, lab, requester, approver):
    from approvals.models import Policy

    Policy.objects.filter(kind="vm_migrate").update(require_otp=True)
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    client = page(approver)
    html = client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert f'href="/accounts/otp/verify/?next=/tickets/{ticket.pk}/"' in html and ">Approve<" not in html
    assert "Why reject?" in html  # rejecting needs no code
    refused = client.post(f"/tickets/{ticket.pk}/approve/", follow=True).content.decode()
    assert "requires a one-time password" in refused and not Approval.objects.exists()
    # With a code confirmed in this session the approval goes through.
    session = client.session
    session[otp.SESSION_KEY] = time.time()  # what confirming a code at /accounts/otp/verify/ records
    session.save()
    assert ">Approve<" in client.get(f"/tickets/{ticket.pk}/").content.decode()
    client.post(f"/tickets/{ticket.pk}/approve/")
    assert Approval.objects.get().approver == approver


def test_live_updates_stop_before_they_would_outlive_the_idle_session(page, lab, requester, settings):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    client = page(requester)
    started = int(time.time()) - settings.SESSION_COOKIE_AGE + 60
    live = client.get(f"/tickets/{ticket.pk}/live/?shown=pending&since={started}").content.decode()
    assert f"since={started}" in live and 'hx-trigger="every 2s"' in live
    # Each poll renews the session, so a page left open stops polling after the idle timeout.
    long_ago = int(time.time()) - settings.SESSION_COOKIE_AGE - 60
    live = client.get(f"/tickets/{ticket.pk}/live/?shown=pending&since={long_ago}").content.decode()
    assert "hx-trigger" not in live and "Live updates stopped" in live


def test_the_access_form_offers_only_roles_a_policy_grants(page, lab, requester):
    html = page(requester).get(f"/tickets/new/admin_access/?connector={lab.pk}").content.decode()
    offered = set(re.findall(r'<option value="([A-Za-z]+)"', html))
    assert offered == {"ReadOnly", "VirtualMachineUser", "VirtualMachinePowerUser"}
    assert "Admin" not in offered
