"""Connector passwords are sealed to the worker's public key: any process
can seal, only one holding CREDENTIALS_KEY can open, and tokens written
with the old Fernet scheme under the same key still open."""

import base64
import os

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from connectors import credentials
from connectors.credentials import CredentialsUnavailable, CredentialsUnreadable
from connectors.models import Connector
from portal.keys import credentials_public_key


@pytest.fixture
def web(settings):
    """This process as the web sees it: the public key, no private key."""
    settings.CREDENTIALS_PUBLIC_KEY = credentials_public_key(settings.CREDENTIALS_KEY)
    settings.CREDENTIALS_KEY = ""
    return settings


def other_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_seal_then_unseal_gives_the_password_back():
    token = credentials.seal("s3cret pässword")
    assert token.startswith(credentials.SEALED_PREFIX)
    assert "s3cret" not in token
    assert credentials.unseal(token) == "s3cret pässword"


def test_sealing_twice_gives_different_tokens():
    assert credentials.seal("same") != credentials.seal("same")


def test_the_public_key_is_derived_from_the_private_key():
    assert settings.CREDENTIALS_PUBLIC_KEY == credentials_public_key(settings.CREDENTIALS_KEY)
    assert settings.CREDENTIALS_PUBLIC_KEY != settings.CREDENTIALS_KEY


def test_the_web_seals_but_cannot_unseal(web):
    assert not credentials.can_unseal()
    token = credentials.seal("from-the-web")
    with pytest.raises(CredentialsUnavailable, match="only the worker"):
        credentials.unseal(token)
    assert "from-the-web" not in token


def test_a_token_sealed_in_the_web_opens_in_the_worker(settings):
    worker_key = settings.CREDENTIALS_KEY
    settings.CREDENTIALS_KEY = ""
    token = credentials.seal("handed-over")
    settings.CREDENTIALS_KEY = worker_key
    assert credentials.can_unseal()
    assert credentials.unseal(token) == "handed-over"


def test_a_connector_in_the_web_never_opens_its_password(web):
    connector = Connector(name="x", url="https://vc.example/sdk", username="u")
    connector.set_password("pw-in-web")
    with pytest.raises(CredentialsUnavailable):
        connector.connection_config()


def test_legacy_fernet_tokens_still_open_with_the_same_key():
    legacy = Fernet(settings.CREDENTIALS_KEY.encode()).encrypt(b"old-password").decode()
    assert legacy.startswith("gAAAA")
    assert credentials.unseal(legacy) == "old-password"
    connector = Connector(name="old", url="https://vc.example/sdk", username="u", password_encrypted=legacy)
    assert connector.connection_config().password == "old-password"


def test_a_token_for_another_key_is_unreadable(settings):
    token = credentials.seal("elsewhere")
    settings.CREDENTIALS_KEY = other_key()
    with pytest.raises(CredentialsUnreadable):
        credentials.unseal(token)
    legacy = Fernet(other_key().encode()).encrypt(b"x").decode()
    with pytest.raises(CredentialsUnreadable):
        credentials.unseal(legacy)


def test_an_altered_token_is_unreadable_and_the_error_names_no_secret():
    token = credentials.seal("tamper-me")
    body = bytearray(base64.urlsafe_b64decode(token[len(credentials.SEALED_PREFIX) :]))
    body[-1] ^= 1
    altered = credentials.SEALED_PREFIX + base64.urlsafe_b64encode(bytes(body)).decode()
    with pytest.raises(CredentialsUnreadable) as err:
        credentials.unseal(altered)
    assert "tamper-me" not in str(err.value) and settings.CREDENTIALS_KEY not in str(err.value)
    with pytest.raises(CredentialsUnreadable):
        credentials.unseal("plain text password")


def test_set_sealed_password_takes_only_sealed_tokens():
    connector = Connector(name="y", url="https://vc.example/sdk", username="u")
    token = credentials.seal("pw")
    connector.set_sealed_password(token)
    assert connector.password_encrypted == token
    for bad in ("pw", "sealed:", "sealed:!!!", "gAAAAlegacy"):
        with pytest.raises(ValueError):
            connector.set_sealed_password(bad)


def test_sealing_without_a_public_key_says_so(settings):
    settings.CREDENTIALS_KEY = ""
    settings.CREDENTIALS_PUBLIC_KEY = ""
    with pytest.raises(CredentialsUnavailable, match="CREDENTIALS_PUBLIC_KEY"):
        credentials.seal("x")
