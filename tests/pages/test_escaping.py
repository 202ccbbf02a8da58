"""Script and HTML payloads typed into free-text fields are shown as text on
every page that shows them, never run; export parameters cannot name files."""

import pytest

from approvals import services
from tests.pages.helpers import MIGRATE_WITHIN_DEV, submit

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_payloads_are_escaped_on_the_pages(page, lab, requester, approver, auditor):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV, justification=f"Go-live {PAYLOAD}")
    services.ticket_reject(ticket_id=ticket.pk, approver=approver, comment=f"No: {PAYLOAD}")
    for user, url in [
        (requester, f"/tickets/{ticket.pk}/"),
        (requester, f"/tickets/{ticket.pk}/live/"),
        (requester, "/tickets/"),
        (requester, "/"),
        (auditor, f"/audit/?ticket={ticket.ref}"),
    ]:
        html = page(user).get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html, url
    detail = page(requester).get(f"/tickets/{ticket.pk}/").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in detail


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd", "csv/../../x", "%2e%2e%2f", "csv\x00.txt"])
def test_export_format_cannot_name_a_file(api, auditor, value):
    response = api(auditor).get("/api/audit/export/", {"format": value})
    assert response.status_code == 400
    assert "format" in response.json()
    assert "root:" not in response.content.decode()
