"""Freeze windows: set by configuration requests, one-off or recurring by
RRULE; a change window wholly inside one is refused at submission; the
worker holds approved tickets until the freeze ends, believing the audit
log's applied requests rather than the table. Real PostgreSQL, Redis,
Celery workers and vcsim."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from pyVmomi import vim

from approvals.errors import InvalidInput
from approvals.freezes import Freeze, check_not_frozen, freezes_in_log
from approvals.models import FreezeWindow, Ticket
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, configure, file_ticket, wait_for
from tests.conftest import register_lab
from tests.fixtures.vcsim import VcsimProcess


@pytest.fixture(scope="module")
def module_vcsim():
    """One vcsim for this module's worker tests; each changes other objects."""
    with VcsimProcess() as lab:
        yield lab


def freeze(api, admin, admin2, connector, **fields):
    body = {"connector": connector.pk, "name": "year-end", **fields}
    request = configure(api(admin), api(admin2), "/api/freezes/", body, method="post")
    assert request.state == "succeeded", request.error
    return FreezeWindow.objects.get(connector=connector, name=body["name"])


def iso(moment):
    return moment.astimezone(UTC).isoformat()


def test_recurring_freeze_by_rrule():
    # Every Friday 16:00 for 64 h (to Monday 08:00), four weekends.
    friday = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
    weekend = Freeze(1, "weekends", 1, "", friday, friday + timedelta(hours=64), "FREQ=WEEKLY;BYDAY=FR;COUNT=4")
    saturday = datetime(2026, 12, 12, 3, 0, tzinfo=UTC)
    assert weekend.covering(saturday) == (friday + timedelta(days=7), friday + timedelta(days=7, hours=64))
    assert weekend.covering(datetime(2026, 12, 8, 12, 0, tzinfo=UTC)) is None  # a Tuesday
    assert weekend.covering(friday - timedelta(minutes=1)) is None
    assert weekend.covering(datetime(2027, 1, 2, 12, 0, tzinfo=UTC)) is None  # after COUNT=4
    # Occurrences that overlap merge into one hold.
    daily = Freeze(2, "long", 1, "prod", friday, friday + timedelta(hours=30), "FREQ=DAILY;COUNT=3")
    assert daily.covering(friday + timedelta(hours=20)) == (friday, friday + timedelta(days=3, hours=6))
    assert daily.applies_to(1, "prod") and not daily.applies_to(1, "dev") and not daily.applies_to(2, "prod")


BERLIN = ZoneInfo("Europe/Berlin")
# Every night 22:00 to 06:00 Berlin time, from Saturday 17 October 2026;
# Berlin leaves summer time in the night of 24 to 25 October (03:00 -> 02:00).
NIGHTLY_BERLIN = "DTSTART;TZID=Europe/Berlin:20261017T220000 RRULE:FREQ=DAILY"


def berlin(*args):
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


def test_a_recurring_freeze_follows_the_wall_clock_of_the_zone_its_rule_names():
    nightly = Freeze(3, "nightly", 1, "", berlin(2026, 10, 17, 22), berlin(2026, 10, 18, 6), NIGHTLY_BERLIN)
    # Summer time (UTC+2): 20:00 to 04:00 UTC.
    summer = (datetime(2026, 10, 20, 20, 0, tzinfo=UTC), datetime(2026, 10, 21, 4, 0, tzinfo=UTC))
    assert nightly.covering(datetime(2026, 10, 20, 21, 0, tzinfo=UTC)) == summer
    assert nightly.covering(datetime(2026, 10, 20, 19, 59, tzinfo=UTC)) is None  # 21:59 in Berlin
    # The night of the change lasts nine hours: 22:00 CEST to 06:00 CET.
    change = (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), datetime(2026, 10, 25, 5, 0, tzinfo=UTC))
    assert nightly.covering(datetime(2026, 10, 25, 4, 30, tzinfo=UTC)) == change
    # Winter time (UTC+1): 21:00 to 05:00 UTC; at 20:30 UTC it is 21:30 in Berlin.
    assert nightly.covering(datetime(2026, 10, 26, 20, 30, tzinfo=UTC)) is None
    winter = (datetime(2026, 10, 26, 21, 0, tzinfo=UTC), datetime(2026, 10, 27, 5, 0, tzinfo=UTC))
    assert nightly.covering(datetime(2026, 10, 27, 4, 59, tzinfo=UTC)) == winter
    # The same rule in UTC would have kept 20:00 UTC.
    utc = Freeze(4, "utc", 1, "", summer[0], summer[1], "FREQ=DAILY")
    assert utc.covering(datetime(2026, 10, 26, 20, 30, tzinfo=UTC)) is not None


@pytest.mark.django_db
def test_a_freeze_with_a_zoned_rule_is_set_and_bad_zones_are_refused(api, lab, portal_admin, portal_admin2):
    start, end = iso(berlin(2026, 10, 17, 22)), iso(berlin(2026, 10, 18, 6))
    for rrule, words in [
        ("DTSTART;TZID=Mars/Olympus:20261017T220000 RRULE:FREQ=DAILY", "Unknown time zone 'Mars/Olympus'"),
        ("DTSTART:20261017T220000 RRULE:FREQ=DAILY", "Name the DTSTART's time zone"),
        ("DTSTART;TZID=Europe/Berlin:20261017T230000 RRULE:FREQ=DAILY", "make them the same"),
        ("DTSTART;TZID=Europe/Berlin:20261017T220000", "Give one RRULE"),
    ]:
        body = {"connector": lab.pk, "name": "f", "justification": "x", "starts_at": start, "ends_at": end}
        response = api(portal_admin).post("/api/freezes/", {**body, "rrule": rrule}, format="json")
        assert response.status_code == 400, response.content
        assert words in " ".join(response.json()["rrule"]), response.json()
    assert not Ticket.objects.filter(kind="config_change").exists()
    made = freeze(
        api, portal_admin, portal_admin2, lab, name="nightly", starts_at=start, ends_at=end, rrule=NIGHTLY_BERLIN
    )
    assert made.rrule == NIGHTLY_BERLIN
    [applied] = freezes_in_log(lab.pk, "prod")  # the worker's reading, from the audit log
    assert applied.covering(datetime(2026, 10, 26, 21, 30, tzinfo=UTC))[0] == datetime(2026, 10, 26, 21, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_bad_freezes_are_refused_with_field_errors(api, lab, portal_admin):
    now = timezone.now()
    bad = [
        ({"starts_at": iso(now), "ends_at": iso(now - timedelta(hours=1))}, "ends_at"),
        ({"starts_at": iso(now), "ends_at": iso(now + timedelta(hours=1)), "rrule": "FREQ=MINUTELY"}, "rrule"),
        ({"starts_at": iso(now), "ends_at": iso(now + timedelta(hours=1)), "rrule": "FREQ=NEVER"}, "rrule"),
        ({"starts_at": iso(now), "ends_at": iso(now + timedelta(hours=1)), "zone": "nowhere"}, "zone"),
    ]
    for fields, field in bad:
        body = {"connector": lab.pk, "name": "f", "justification": "x", **fields}
        response = api(portal_admin).post("/api/freezes/", body, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json(), response.json()
    assert not Ticket.objects.filter(kind="config_change").exists()


@pytest.mark.django_db
def test_window_wholly_inside_a_freeze_is_refused_at_submission(api, lab, requester, portal_admin, portal_admin2):
    now = timezone.now()
    # Daily 02:00–06:00 UTC from yesterday; the prod zone only.
    start = (now - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    freeze(
        api,
        portal_admin,
        portal_admin2,
        lab,
        name="nightly",
        zone="prod",
        rrule="FREQ=DAILY",
        starts_at=iso(start),
        ends_at=iso(start + timedelta(hours=4)),
    )
    inside = {
        "not_before": iso(start + timedelta(days=3, hours=1)),
        "not_after": iso(start + timedelta(days=3, hours=3)),
    }
    response = api(requester).post(
        "/api/tickets/",
        {"kind": "admin_access", "connector": lab.pk, "justification": "x", "params": ADMIN_ACCESS, **inside},
        format="json",
    )
    assert response.status_code == 400, response.content
    [words] = response.json()["not_after"]
    assert "wholly inside the freeze nightly" in words and "recurring" in words
    assert not Ticket.objects.exclude(kind="config_change").exists()
    # A window reaching past the freeze is filed (the worker holds it), as is one in another zone.
    past = {**inside, "not_after": iso(start + timedelta(days=3, hours=7))}
    file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS, **past)
    check_not_frozen(
        connector=lab,
        zone="dev",
        not_before=start + timedelta(days=3, hours=1),
        not_after=start + timedelta(days=3, hours=3),
    )
    with pytest.raises(InvalidInput):
        check_not_frozen(
            connector=lab,
            zone="prod",
            not_before=start + timedelta(days=3, hours=1),
            not_after=start + timedelta(days=3, hours=3),
        )


def granted(si, entity_name, principal):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ManagedEntity], True)
    entity = next(e for e in view.view if e.name == entity_name)
    view.Destroy()
    perms = content.authorizationManager.RetrieveEntityPermissions(entity=entity, inherited=False)
    return [p for p in perms if p.principal.lower() == principal.lower()]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_freeze_holds_an_approved_ticket_until_its_end(
    api, module_vcsim, roles, requester, approver, approver2, portal_admin, portal_admin2, workers
):
    connector = register_lab(module_vcsim, name="frozen")
    ends = timezone.now() + timedelta(seconds=9)
    row = freeze(
        api,
        portal_admin,
        portal_admin2,
        connector,
        name="release-freeze",
        starts_at=iso(timezone.now() - timedelta(minutes=1)),
        ends_at=iso(ends),
        reason="release day",
    )
    workers(1)
    params = {**ADMIN_ACCESS, "principal": "LAB\\frozen", "duration_minutes": 400}
    ticket = file_ticket(api(requester), connector, "admin_access", params)
    for user in (approver, approver2):
        assert api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
    held = wait_for_progress(ticket["id"], "held by freeze release-freeze")
    assert held.state == "approved"
    # A database writer deletes the freeze row: the worker believes the audit log, not the table.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM approvals_freezewindow WHERE id = %s", [row.pk])
    detail = api(approver).get(f"/api/tickets/{ticket['id']}/").json()
    assert detail["state"] == "approved" and detail["held"].startswith("held by freeze release-freeze until ")
    page = Client()
    page.force_login(approver)
    text = page.get(f"/tickets/{ticket['id']}/").text
    assert "This ticket is held by freeze release-freeze until" in text
    assert "Held by freeze release-freeze until" in text  # the timeline
    check = module_vcsim.connect()
    while timezone.now() < ends - timedelta(seconds=1):
        assert Ticket.objects.get(pk=ticket["id"]).state == "approved"
        assert granted(check, "prod-web-01", "LAB\\frozen") == []
    done = wait_for(ticket["id"], "succeeded", "failed", timeout=30)
    assert done.state == "succeeded", done.error
    assert done.started_at >= ends
    assert len(granted(check, "prod-web-01", "LAB\\frozen")) == 1
    # Once held (audited once, however often the sweeper queued it again), then run.
    [entry] = AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.held")
    assert entry.details["freeze"] == "release-freeze" and entry.details["until"] == iso(ends)


def wait_for_progress(ticket_id, words, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = Ticket.objects.get(pk=ticket_id)
        if ticket.progress.startswith(words):
            return ticket
        time.sleep(0.2)
    raise AssertionError(f"ticket {ticket_id}: {ticket.state}, {ticket.progress!r}, not {words!r}")


@pytest.mark.django_db
def test_emergency_ticket_passes_a_freeze_with_a_notice(
    api, lab, requester, approver, approver2, portal_admin, portal_admin2
):
    from approvals.services.holds import freeze_gate

    now = timezone.now()
    freeze(
        api,
        portal_admin,
        portal_admin2,
        lab,
        name="change-freeze",
        starts_at=iso(now - timedelta(minutes=5)),
        ends_at=iso(now + timedelta(hours=2)),
    )
    filed = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    for user in (approver, approver2):
        assert api(user).post(f"/api/tickets/{filed['id']}/approve/", {}, format="json").status_code == 200
    ticket = Ticket.objects.get(pk=filed["id"])
    assert freeze_gate(ticket, emergency=True, actor_name="worker") is None
    [notice] = AuditEntry.objects.filter(ticket_id=ticket.pk, action="ticket.freeze_overridden")
    assert notice.details["freeze"] == "change-freeze"
    assert freeze_gate(ticket, emergency=False, actor_name="worker").startswith("held by freeze change-freeze until ")
    assert Ticket.objects.get(pk=ticket.pk).state == "approved"


@pytest.mark.django_db
def test_freeze_request_through_the_config_page(lab, portal_admin):
    page = Client()
    page.force_login(portal_admin)
    assert page.get("/config/freeze/new/").status_code == 200
    body = {
        "connector": lab.pk,
        "name": "audit-week",
        "zone": "prod",
        "starts_at": "2027-01-04 00:00",
        "ends_at": "2027-01-04 08:00",
        "rrule": "FREQ=WEEKLY;COUNT=2",
        "justification": "audit week",
    }
    response = page.post("/config/freeze/new/", body)
    assert response.status_code == 302, response.content.decode()[-2000:]
    request = Ticket.objects.get(kind="config_change")
    assert request.params["after"]["starts_at"] == "2027-01-04T00:00:00+00:00"
    assert request.params["after"]["rrule"] == "FREQ=WEEKLY;COUNT=2"
    bad = page.post("/config/freeze/new/", {**body, "name": "other", "rrule": "FREQ=SECONDLY"})
    assert bad.status_code == 400 and "Recur at most hourly" in bad.content.decode()
    assert Ticket.objects.filter(kind="config_change").count() == 1
