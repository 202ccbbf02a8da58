"""Connector passwords are encrypted at rest with CREDENTIALS_KEY (Fernet:
AES-128-CBC with an HMAC), so a database dump alone does not reveal them."""

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialsUnreadable(Exception):
    """The stored secret was encrypted with another key or was altered."""


def _fernet() -> Fernet:
    return Fernet(settings.CREDENTIALS_KEY.encode())


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsUnreadable("connector password cannot be decrypted with CREDENTIALS_KEY") from exc
