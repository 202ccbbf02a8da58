"""Keys the portal needs: from the environment, or for local runs from 0600
files in the data folder, generated on first start.

With DEBUG off a missing or weak key stops the portal with a message that
says what to set; there is never a literal key in the repository.
"""

import base64
import binascii
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def _generate_secret_key() -> str:
    return secrets.token_urlsafe(50)


def _generate_credentials_key() -> str:
    # 32 random bytes: an X25519 private key (and, for old tokens, a Fernet key).
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _generate_signing_key() -> str:
    # 32 random bytes: an Ed25519 private key (audit checkpoints).
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


GENERATORS = {
    "SECRET_KEY": _generate_secret_key,
    "CREDENTIALS_KEY": _generate_credentials_key,
    "AUDIT_HMAC_KEY": _generate_secret_key,
    "AUDIT_SIGNING_KEY": _generate_signing_key,
    "SEAL_KEY": _generate_secret_key,
    "GUEST_PASSWORD_KEY": _generate_credentials_key,
}


def load_key(name: str, *, data_dir: Path, generate_locally: bool) -> str:
    """The key from the environment, else from DATA_DIR/<name>.key, generating
    that file (mode 0600) first when local generation is allowed."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path = data_dir / f"{name.lower()}.key"
    if path.exists():
        return path.read_text().strip()
    if not generate_locally:
        return ""
    data_dir.mkdir(parents=True, exist_ok=True)
    value = GENERATORS[name]()
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


HINTS = {
    "CREDENTIALS_KEY": 'python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())"',
    "CREDENTIALS_PUBLIC_KEY": "python manage.py credentials_public_key (run where CREDENTIALS_KEY is set)",
    "GUEST_PASSWORD_KEY": 'python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())"',
    "AUDIT_SIGNING_KEY": 'python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())"',
    "WITNESS_PUBLIC_KEY": "python -m audit.witness public-key (run where the witness keeps its data)",
}


def weakness(name: str, value: str) -> str | None:
    """Why `value` is not good enough for `name`, or None."""
    if not value:
        return "is not set"
    if name in (
        "CREDENTIALS_KEY",
        "CREDENTIALS_PUBLIC_KEY",
        "AUDIT_SIGNING_KEY",
        "WITNESS_PUBLIC_KEY",
        "GUEST_PASSWORD_KEY",
        "GUEST_PASSWORD_PUBLIC_KEY",
    ):
        try:
            raw = base64.urlsafe_b64decode(value.encode())
        except (binascii.Error, ValueError):
            return "is not url-safe base64"
        if len(raw) != 32:
            return "must encode exactly 32 random bytes"
        if len(set(raw)) < 16:
            return "is not random enough"
        return None
    if value.startswith("django-insecure") or value.lower() in {"changeme", "secret"}:
        return "is a well-known placeholder"
    if len(value) < 50 or len(set(value)) < 5:
        return "is too short or too repetitive (50+ random characters)"
    return None


def credentials_public_key(private_key: str) -> str:
    """The X25519 public key (url-safe base64) of CREDENTIALS_KEY: what the
    web process seals connector passwords to."""
    from nacl.public import PrivateKey

    raw = base64.urlsafe_b64decode(private_key.encode())
    if len(raw) != 32:
        raise ValueError("CREDENTIALS_KEY must encode exactly 32 bytes")
    return base64.urlsafe_b64encode(bytes(PrivateKey(raw).public_key)).decode()


def local_public_key(private_name: str, *, data_dir: Path) -> str:
    """For local runs: the public key of DATA_DIR/<private_name>.key, kept in
    DATA_DIR/<private_name minus _KEY>_public_key.key so that a process that
    must not hold the private key reads only the public one. The pair is
    generated when neither file exists yet."""
    path = data_dir / f"{private_name.lower().removesuffix('_key')}_public_key.key"
    if path.exists():
        return path.read_text().strip()
    public = credentials_public_key(load_key(private_name, data_dir=data_dir, generate_locally=True))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(public)
    os.replace(tmp, path)
    return public


def require_strong(name: str, value: str) -> None:
    problem = weakness(name, value)
    if problem:
        hint = HINTS.get(name, 'python -c "import secrets;print(secrets.token_urlsafe(50))"')
        raise ImproperlyConfigured(
            f"{name} {problem}. Set the {name} environment variable, for example to the output of: {hint}"
        )
