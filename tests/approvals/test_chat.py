"""Chat notifications to Slack, Mattermost and Teams incoming webhooks, sent
to a local HTTP receiver started here (real HTTP) by a real Celery worker:
retried with backoff while the receiver is down, delivered once it is back,
audited when they finally fail; the webhook URL is shown nowhere."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from approvals.models import ChatHook, Policy, Ticket, Zone
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, configure, file_ticket

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SECRET = "T0SECRET-B1-xoxb-7f3a9c"
CHAT_ENV = {"CHAT_WEBHOOK_ALLOW_HTTP": "1", "CHAT_RETRY_BASE_SECONDS": "0.4", "CHAT_MAX_ATTEMPTS": "4"}


class Receiver:
    """An incoming-webhook endpoint on 127.0.0.1:`port`, started on demand."""

    def __init__(self):
        with socket.socket() as probe:  # a port nothing listens on: the receiver is down
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.posts: list[tuple[str, dict]] = []
        self.server = None

    def about(self, ref: str) -> list[tuple[str, dict]]:
        """The posts that speak of ticket `ref` (a hook for every ticket
        hears of the configuration requests too)."""
        return [(path, body) for path, body in self.posts if ref in json.dumps(body)]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{path}/{SECRET}"

    def start(self):
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def until(condition, timeout=20, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_webhook_url_must_be_https_unless_allowed(api, lab, portal_admin):
    body = {"name": "ops", "service": "slack", "url": "http://hooks.example.invalid/x", "justification": "x"}
    response = api(portal_admin).post("/api/chat-hooks/", body, format="json")
    assert response.status_code == 400 and "url" in response.json()
    assert not Ticket.objects.exists()


def test_chat_deliveries_retry_while_the_receiver_is_down_and_audit_final_failure(
    api, lab, requester, approver, portal_admin, portal_admin2, receiver, settings, workers
):
    settings.CHAT_WEBHOOK_ALLOW_HTTP = True
    dead = Receiver()  # never started
    policy = Policy.objects.get(kind="admin_access", zone=None)
    prod = Zone.objects.get(connector=lab, name="prod")
    hooks = [
        {"name": "ops-slack", "service": "slack", "url": receiver.url("slack"), "policy": policy.pk},
        {"name": "ops-mattermost", "service": "mattermost", "url": receiver.url("mm"), "zone": prod.pk},
        {"name": "ops-teams", "service": "teams", "url": receiver.url("teams")},
        {"name": "ops-gone", "service": "slack", "url": dead.url("gone"), "zone": prod.pk},
    ]
    requests_filed = [
        configure(api(portal_admin), api(portal_admin2), "/api/chat-hooks/", h, method="post") for h in hooks
    ]
    assert all(r.state == "succeeded" for r in requests_filed), [r.error for r in requests_filed]
    [worker] = workers(1, beat=False, env=CHAT_ENV)
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    # The receiver is down: the worker retries with backoff; the ticket is untouched.
    until(lambda: "Retry in" in worker.output(), what="a retry")
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"
    receiver.start()
    until(lambda: len(receiver.about(ticket["ref"])) == 3, what="the three deliveries")
    posts = dict(receiver.about(ticket["ref"]))
    slack = posts[f"/hooks/slack/{SECRET}"]["text"]
    link = f"/tickets/{ticket['id']}/"
    assert f"{link}|{ticket['ref']} awaits your approval>" in slack
    assert "LAB\\alice" in slack and "Zone: prod" in slack and "cannot approve" in slack
    mattermost = posts[f"/hooks/mm/{SECRET}"]["text"]
    assert f"[{ticket['ref']} awaits your approval](" in mattermost and link in mattermost
    [card] = [a["content"] for a in posts[f"/hooks/teams/{SECRET}"]["attachments"]]
    texts = " ".join(block["text"] for block in card["body"])
    assert f"{ticket['ref']} awaits your approval" in texts and "Zone: prod" in texts
    # A link to the portal is the card's only action: nothing is approved from a chat.
    assert [(a["type"], a["url"]) for a in card["actions"]] == [
        ("Action.OpenUrl", posts[f"/hooks/slack/{SECRET}"]["text"][1:].split("|")[0])
    ]
    # ops-gone never answered: after CHAT_MAX_ATTEMPTS the failure is audited, in words without the URL.
    failures = AuditEntry.objects.filter(action="notification.chat_failed", ticket_id=ticket["id"])
    until(failures.exists, what="the failure audited")
    [failed] = failures
    assert failed.details["webhook"] == "ops-gone" and failed.details["attempts"] == 4
    assert failed.details["ticket"] == ticket["ref"] and failed.details["event"] == "awaiting_approval"
    assert failed.details["error"] == f"http://127.0.0.1:{dead.port}/… could not be reached (ConnectionError)"
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"
    # A decision in the portal is what moves the ticket; its notification goes out too.
    rejected = api(approver).post(f"/api/tickets/{ticket['id']}/reject/", {"comment": "not now"}, format="json")
    assert rejected.status_code == 200
    until(lambda: len(receiver.about(f"{ticket['ref']} was rejected")) == 3, what="the rejection's notifications")

    # The URL's secret part is nowhere people or the log can read.
    assert set(ChatHook.objects.values_list("url_hint", flat=True)) == {
        f"http://127.0.0.1:{receiver.port}/…",
        f"http://127.0.0.1:{dead.port}/…",
    }
    admin_api = api(portal_admin)
    reads = [admin_api.get("/api/chat-hooks/").content]
    reads += [admin_api.get(f"/api/chat-hooks/{h.pk}/").content for h in ChatHook.objects.all()]
    reads += [api(portal_admin2).get(f"/api/tickets/{r.pk}/").content for r in requests_filed]
    web = Client()
    web.force_login(portal_admin2)
    reads += [web.get("/config/").content, web.get(f"/config/chat_hook/{ChatHook.objects.first().pk}/update/").content]
    reads += [web.get(f"/tickets/{r.pk}/").content for r in requests_filed]
    reads += [json.dumps(list(AuditEntry.objects.values("details", "object_id"))).encode()]
    reads += [worker.output().encode()]
    for text in reads:
        assert SECRET.encode() not in text
    assert b"/hooks/" not in reads[-2]
