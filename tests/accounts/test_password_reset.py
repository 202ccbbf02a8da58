"""Password reset by e-mail: absent without a mail backend that delivers;
with one, the mail arrives, its link works once, requests are throttled per
address and per client address, the answer never tells whether an account
has the address, and every step is audited.

The "real" backend here is Django's SMTP backend talking to a real SMTP
listener on a local port (tests/accounts/smtp.py): the production mail
server cannot be part of the suite, but the mail still leaves over SMTP."""

import re

import pytest

from accounts.models import AccountState
from audit.models import AuditEntry
from tests.accounts.smtp import SMTPListener

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple"  # the factory's
NEW_PASSWORD = "a-fresh-long-passphrase-42"
RESET_URLS = [
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/x/y/",
    "/accounts/reset/done/",
]


@pytest.fixture
def mailbox(settings):
    with SMTPListener() as listener:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = listener.port
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 10
        yield listener


def ask(client, email, ip="127.0.0.1"):
    return client.post("/accounts/password_reset/", {"email": email}, REMOTE_ADDR=ip)


def reset_path(delivery):
    match = re.search(r"https?://[^/\s]+(/accounts/reset/[^/\s]+/[^/\s]+/)", delivery.body())
    assert match, delivery.body()
    return match.group(1)


@pytest.mark.parametrize(
    "backend",
    ["django.core.mail.backends.console.EmailBackend", "django.core.mail.backends.locmem.EmailBackend"],
)
def test_reset_does_not_exist_without_a_delivering_mail_backend(client, requester, settings, backend):
    settings.EMAIL_BACKEND = backend
    for url in RESET_URLS:
        assert client.get(url).status_code == 404, url
    assert client.post("/accounts/password_reset/", {"email": requester.email}).status_code == 404
    login = client.get("/accounts/login/").content.decode()
    assert "/accounts/password_reset/" not in login and "Forgotten your password" not in login
    assert not AuditEntry.objects.filter(action__startswith="auth.password_reset").exists()


def test_reset_mail_arrives_and_its_link_works_once(client, requester, mailbox):
    AccountState.objects.create(user=requester, must_change_password=True)
    assert 'href="/accounts/password_reset/"' in client.get("/accounts/login/").content.decode()
    response = ask(client, "Alice@Example.invalid")
    assert response.status_code == 302 and response["Location"] == "/accounts/password_reset/done/"
    assert client.get(response["Location"]).status_code == 200
    [delivery] = mailbox.deliveries
    assert delivery.recipients == [requester.email]
    path = reset_path(delivery)

    to_form = client.get(path)
    assert to_form.status_code == 302 and to_form["Location"].endswith("/set-password/")
    assert 'name="new_password1"' in client.get(to_form["Location"]).content.decode()
    done = client.post(to_form["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    requester.refresh_from_db()
    assert requester.check_password(NEW_PASSWORD)

    # Used once, the link is dead: no form, and the password stays.
    again = type(client)()
    stale = again.get(path, follow=True)
    assert "This link no longer works" in stale.content.decode()
    assert 'name="new_password1"' not in stale.content.decode()

    token = path.rstrip("/").rsplit("/", 1)[1]
    requested = AuditEntry.objects.get(action="auth.password_reset_requested")
    assert requested.details == {"email": "alice@example.invalid", "accounts": ["alice"]}
    assert requested.source_ip == "127.0.0.1"
    completed = AuditEntry.objects.get(action="auth.password_reset_completed")
    assert (completed.actor_name, completed.object_id) == ("alice", str(requester.pk))
    assert completed.details["must_change_password"] == {"from": True, "to": False}
    assert not AccountState.objects.get(user=requester).must_change_password
    for entry in AuditEntry.objects.all():
        text = str(entry.details)
        assert token not in text and NEW_PASSWORD not in text and requester.password not in text


def test_the_answer_is_the_same_whether_or_not_an_account_has_the_address(client, requester, mailbox):
    known = ask(client, requester.email)
    unknown = ask(client, "nobody@example.invalid")
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [d.recipients for d in mailbox.deliveries] == [[requester.email]]
    nobody = AuditEntry.objects.get(action="auth.password_reset_requested", details__email="nobody@example.invalid")
    assert nobody.details["accounts"] == []


def test_reset_requests_are_throttled_per_address(client, requester, mailbox, settings):
    settings.PASSWORD_RESET_LIMIT_PER_HOUR = 3
    answers = [ask(client, requester.email, ip=f"10.0.0.{n}") for n in range(5)]
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, "/accounts/password_reset/done/")}
    assert len(mailbox.deliveries) == 3
    throttled = AuditEntry.objects.filter(action="auth.password_reset_throttled")
    assert throttled.count() == 2
    assert throttled.first().details == {"email": requester.email, "limit": "address"}


def test_reset_requests_are_throttled_per_client_address(client, requester, mailbox, settings):
    settings.PASSWORD_RESET_IP_LIMIT_PER_HOUR = 2
    for n in range(2):
        ask(client, f"someone{n}@example.invalid", ip="10.9.9.9")
    refused = ask(client, requester.email, ip="10.9.9.9")
    assert refused.status_code == 302 and refused["Location"] == "/accounts/password_reset/done/"
    assert mailbox.deliveries == []
    entry = AuditEntry.objects.get(action="auth.password_reset_throttled")
    assert entry.details == {"email": requester.email, "limit": "ip"} and entry.source_ip == "10.9.9.9"
    # From another address the same request goes through.
    ask(client, requester.email, ip="10.9.9.10")
    assert [d.recipients for d in mailbox.deliveries] == [[requester.email]]
