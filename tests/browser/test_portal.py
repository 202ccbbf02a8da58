"""The portal in a real browser (Debian's Chromium through Playwright) against
the live server, real Celery workers, Redis, PostgreSQL and a vcsim lab."""

import csv
import re

import pytest
import redis
from django.conf import settings
from playwright.sync_api import expect
from pyVmomi import vim

from approvals.models import Ticket
from tests.approvals.test_execution import find_vms
from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.pages import check_usable, nav, pick, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def find_objects(si, vimtype, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return [obj for obj in view.view if obj.name == name]
    finally:
        view.Destroy()


def test_vm_migrate_from_form_to_succeeded_then_audited(
    new_context, screenshots, live_server, own_lab, requester, approver, approver2, auditor, workers, fresh_vcsim
):
    # Nothing queued by earlier tests may reach these workers.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    workers(1)
    base = live_server.url

    # The requester files a cross-zone migration through the form: the disks
    # and the card go into prod too. Options read name — path (zone).
    alice_context = new_context(viewport=DESKTOP)
    alice = sign_in(alice_context, base, "alice")
    screenshots(alice, "dashboard-requester")
    nav(alice, "New ticket").click()
    alice.get_by_role("link", name="Migrate VM").click()
    expect(alice.get_by_role("heading", name="New ticket: Migrate VM")).to_be_visible()
    check_usable(alice)
    # The objects are searched as one types, and chosen with the keyboard.
    pick(alice, "VM", "dev-app", "/lab/vm/dev-vms/dev-app-01", keyboard=True)
    alice.get_by_label("Target host", exact=True).press_sequentially("esx")
    expect(alice.locator("#id_target_host-options [role=option]").first).to_be_visible()
    screenshots(alice, "new-ticket-picker")
    expect(alice.locator("#id_vm-picked")).to_contain_text("VM · zone dev")
    pick(alice, "Target host", "prod-esx", "/lab/host/prod/prod-esx-02", keyboard=True)
    pick(alice, "Target datastore", "ds-pr", "/lab/datastore/dsc-prod/ds-prod")
    pick(alice, "Network after the move", "pg-prod", "/lab/network/pg-prod")
    alice.get_by_label("Justification").fill("Promote the app server to production for go-live.")
    screenshots(alice, "new-ticket-vm-migrate")
    alice.get_by_role("button", name="File the ticket").click()
    expect(alice).to_have_url(re.compile(r"/tickets/\d+/$"))
    ticket = Ticket.objects.get(requester=requester)
    si = fresh_vcsim.connect()
    [prod_esx_02] = find_objects(si, vim.HostSystem, "prod-esx-02")
    [pg_dev] = find_objects(si, vim.Network, "pg-dev")
    [pg_prod] = find_objects(si, vim.Network, "pg-prod")
    # Bound by id, shown by name.
    assert ticket.kind == "vm_migrate" and ticket.params["target_host"] == prod_esx_02._moId
    assert ticket.params["objects"]["target_host"]["name"] == "prod-esx-02"
    assert ticket.params["objects"]["target_datastore"]["name"] == "ds-prod"
    assert ticket.params["network_map"] == {pg_dev._moId: pg_prod._moId}
    expect(alice.get_by_role("status")).to_contain_text(f"{ticket.ref} filed")
    expect(alice.locator("#ticket-state")).to_have_text("pending")
    expect(alice.locator("#ticket-approvals")).to_contain_text("0 of 2 required")
    # The requester may not approve their own ticket: no button to press.
    expect(alice.get_by_role("button", name="Approve")).to_have_count(0)
    expect(alice.get_by_text("Reject…")).to_have_count(0)
    expect(alice.get_by_role("button", name="Cancel this ticket")).to_be_visible()
    check_usable(alice)
    screenshots(alice, "ticket-pending-requester")
    # From here on the page must change without being reloaded.
    alice.evaluate("() => { window.notReloaded = true; }")

    # Two approvers, each in a browser context of their own.
    for username, comment in (("bob", "Change board said yes."), ("carol", "")):
        context = new_context(viewport=DESKTOP)
        page = sign_in(context, base, username)
        queue = page.locator("section", has=page.get_by_role("heading", name="Awaiting your decision"))
        expect(queue.get_by_role("link", name=ticket.ref)).to_be_visible()
        if username == "bob":
            screenshots(page, "dashboard-approver")
        queue.get_by_role("link", name=ticket.ref).click()
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        check_usable(page)
        if username == "bob":
            page.get_by_text("Reject…").click()  # the rejection form asks for a reason
            expect(page.get_by_label("Why reject?")).to_be_visible()
            screenshots(page, "ticket-decision-approver")
        page.get_by_label("Comment (optional)").fill(comment)
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text(f"You approved {ticket.ref}.")
        expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        context.close()

    # The requester's open page follows the ticket to the end, live.
    expect(alice.locator("#ticket-state")).to_have_text("succeeded", timeout=90_000)
    assert alice.evaluate("() => window.notReloaded") is True
    timeline = alice.locator("#timeline")
    for step in (
        "Filed by alice",
        "Approved by bob (1 of 2)",
        "Approved by carol (2 of 2)",
        "Approved: queued for a worker",
        "Running, attempt 1",
        "Hypervisor task task-",
        "Succeeded",
    ):
        expect(timeline).to_contain_text(step)
    expect(alice.locator("#ticket-approvals")).to_contain_text("2 of 2 required")
    # The cancel button went away with the state, without a reload.
    expect(alice.get_by_role("button", name="Cancel this ticket")).to_have_count(0)
    screenshots(alice, "ticket-succeeded")
    ticket.refresh_from_db()
    assert ticket.state == "succeeded" and ticket.hypervisor_task_id.startswith("task-")
    [vm] = find_vms(fresh_vcsim.connect(), "dev-app-01")
    assert vm.runtime.host._moId == prod_esx_02._moId
    assert [ds.name for ds in vm.datastore] == ["ds-prod"] and [net.name for net in vm.network] == ["pg-prod"]

    nav(alice, "Tickets").click()
    expect(alice.get_by_role("link", name=ticket.ref)).to_be_visible()
    screenshots(alice, "ticket-list")

    # An auditor finds the ticket's entries in the audit log and downloads them.
    erin_context = new_context(viewport=DESKTOP)
    erin = sign_in(erin_context, base, "erin")
    screenshots(erin, "dashboard-auditor")
    nav(erin, "Audit log").click()
    erin.get_by_label("Ticket").fill(ticket.ref)
    erin.get_by_role("button", name="Filter").click()
    entries = erin.locator("table.entries tbody tr")
    for action in ("ticket.submitted", "ticket.approval", "ticket.approved", "ticket.succeeded"):
        expect(entries.filter(has_text=action).first).to_be_visible()
    expect(entries.filter(has_text="auth.login")).to_have_count(0)
    expect(erin.locator("#chain-status")).to_contain_text("verified", timeout=30_000)
    check_usable(erin)
    screenshots(erin, "audit-log")
    with erin.expect_download() as download_info:
        erin.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), newline="", encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    assert rows and {row["ticket_ref"] for row in rows} == {ticket.ref}
    actions = [row["action"] for row in rows]
    assert actions[0] == "ticket.submitted" and actions[-1] == "ticket.succeeded"
    assert actions.count("ticket.approval") == 2
    nav(erin, "Findings").click()
    expect(erin.get_by_role("heading", name="Findings")).to_be_visible()
    check_usable(erin)
    screenshots(erin, "findings")

    # The same pages on a 390 px wide phone: readable, nothing scrolls sideways.
    for context, start in ((alice_context, alice), (erin_context, erin)):
        phone = new_context(viewport=PHONE, storage_state=context.storage_state())
        page = phone.new_page()
        urls = (
            [
                ("phone-dashboard", "/"),
                ("phone-ticket", f"/tickets/{ticket.pk}/"),
                ("phone-tickets", "/tickets/"),
                ("phone-new-ticket", "/tickets/new/vm_create/"),
            ]
            if start is alice
            else [("phone-audit-log", f"/audit/?ticket={ticket.ref}"), ("phone-findings", "/findings/")]
        )
        for name, path in urls:
            page.goto(base + path)
            expect(page.locator("h1")).to_be_visible()
            check_usable(page)
            screenshots(page, name)


def test_bad_value_shows_the_error_and_files_nothing(new_context, screenshots, live_server, lab, requester):
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    # Signing in with the keyboard alone: the user name has the focus first.
    page.goto(f"{live_server.url}/accounts/login/")
    check_usable(page)
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Your username and password did not match. Please try again.")
    screenshots(page, "sign-in-failed")
    page.get_by_label("Password").fill("correct-horse-battery-staple")
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.goto(f"{live_server.url}/tickets/new/vm_create/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    page.get_by_label("VM name").fill("web-browser-01")
    page.get_by_label("Template").select_option(
        label="tpl-debian12 — /lab/vm/templates/tpl-debian12 (1 network card(s))"
    )
    pick(page, "Placement", "prod", "/lab/host/prod")
    pick(page, "Datastore", "ds-prod", "/lab/datastore/dsc-prod/ds-prod")
    pick(page, "Network", "pg-prod", "/lab/network/pg-prod")
    page.get_by_label("CPUs").fill("64")
    page.get_by_label("Justification").fill("A big box")
    page.get_by_role("button", name="File the ticket").click()
    cpus = page.get_by_label("CPUs")
    expect(cpus).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_cpus_error")).to_have_text("At most 8 CPUs by policy.")
    # The error is tied to its field for screen readers, and the input kept.
    expect(cpus).to_have_attribute("aria-describedby", re.compile("id_cpus_error"))
    expect(page.get_by_label("VM name")).to_have_value("web-browser-01")
    check_usable(page)
    screenshots(page, "new-ticket-error")
    assert Ticket.objects.count() == 0
