"""Which process holds which key: the web never loads CREDENTIALS_KEY (not
from the environment, not from the local key file) and refuses to start
with it; it needs CREDENTIALS_PUBLIC_KEY instead. Real start-ups of the
settings in a subprocess."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

from portal.keys import credentials_public_key

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "SECRET_KEY",
    "CREDENTIALS_KEY",
    "CREDENTIALS_PUBLIC_KEY",
    "AUDIT_HMAC_KEY",
    "SEAL_KEY",
    "TWOKEY_LOCAL_KEYS",
    "DEBUG",
}
SHOW = (
    "import django; django.setup(); from django.conf import settings; "
    "from connectors import credentials; "
    "print('started', repr(settings.CREDENTIALS_KEY), settings.CREDENTIALS_PUBLIC_KEY, credentials.can_unseal())"
)


def start(tmp_path, code=SHOW, **env):
    clean = {k: v for k, v in os.environ.items() if k not in KEYS and k != "TWOKEY_SERVICE"}
    clean.update({"TWOKEY_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def private_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def strong(**extra):
    keys = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(50),
        "SEAL_KEY": secrets.token_urlsafe(50),  # the web seals decisions, the worker verifies them
    }
    if extra.get("TWOKEY_SERVICE") in ("worker", "notify"):
        keys["AUDIT_SIGNING_KEY"] = private_key()  # notify (and the worker) sign the audit checkpoints
    return {**keys, **extra}


def test_the_web_refuses_to_start_with_the_credentials_key(tmp_path):
    key = private_key()
    result = start(
        tmp_path,
        **strong(TWOKEY_SERVICE="web", CREDENTIALS_KEY=key, CREDENTIALS_PUBLIC_KEY=credentials_public_key(key)),
    )
    assert result.returncode != 0
    assert "CREDENTIALS_KEY must not be in the environment of the web process" in result.stderr
    assert key not in result.stderr and "started" not in result.stdout


def test_beat_and_notify_refuse_the_credentials_key_too(tmp_path):
    for service in ("beat", "notify"):
        result = start(tmp_path, **strong(TWOKEY_SERVICE=service, CREDENTIALS_KEY=private_key()))
        assert result.returncode != 0
        assert f"must not be in the environment of the {service} process" in result.stderr


def test_notify_starts_without_hypervisor_credentials_and_signs(tmp_path):
    """The process on the portal queue: no CREDENTIALS_KEY (it cannot open a
    connector password), no SEAL_KEY needed, the audit signing key held."""
    key = private_key()
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from connectors import credentials; from audit.checkpoints import signing_key; "
        "print('started', repr(settings.CREDENTIALS_KEY), credentials.can_unseal(), signing_key() == settings.AUDIT_SIGNING_KEY)"
    )
    keys = strong(TWOKEY_SERVICE="notify", AUDIT_SIGNING_KEY=key)
    del keys["SEAL_KEY"]
    result = start(tmp_path, code, **keys)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", "''", "False", "True"]


def test_the_web_needs_the_public_key(tmp_path):
    result = start(tmp_path, **strong(TWOKEY_SERVICE="web"))
    assert result.returncode != 0
    assert "CREDENTIALS_PUBLIC_KEY is not set" in result.stderr
    assert "credentials_public_key" in result.stderr


def test_the_web_never_reads_the_local_private_key_file(tmp_path):
    # A local run: the key files exist in the data folder.
    first = start(tmp_path, TWOKEY_LOCAL_KEYS="1")
    assert first.returncode == 0, first.stderr
    private = (tmp_path / "credentials_key.key").read_text().strip()
    public = credentials_public_key(private)
    web = start(tmp_path, TWOKEY_LOCAL_KEYS="1", TWOKEY_SERVICE="web", CREDENTIALS_PUBLIC_KEY=public)
    assert web.returncode == 0, web.stderr
    assert web.stdout.split() == ["started", "''", public, "False"]
    assert private not in web.stdout + web.stderr


def test_the_worker_holds_the_key_and_derives_the_public_key(tmp_path):
    key = private_key()
    result = start(tmp_path, **strong(TWOKEY_SERVICE="worker", CREDENTIALS_KEY=key))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", repr(key), credentials_public_key(key), "True"]


def test_a_public_key_that_does_not_belong_to_the_private_key_is_refused(tmp_path):
    result = start(
        tmp_path, **strong(CREDENTIALS_KEY=private_key(), CREDENTIALS_PUBLIC_KEY=credentials_public_key(private_key()))
    )
    assert result.returncode != 0
    assert "does not belong to CREDENTIALS_KEY" in result.stderr


def test_an_unknown_service_is_refused(tmp_path):
    result = start(tmp_path, **strong(TWOKEY_SERVICE="webb", CREDENTIALS_KEY=private_key()))
    assert result.returncode != 0
    assert "TWOKEY_SERVICE must be web, worker, notify or beat" in result.stderr


def test_the_command_prints_the_public_key(tmp_path):
    key = private_key()
    env = {k: v for k, v in os.environ.items() if k not in KEYS and k != "TWOKEY_SERVICE"}
    env.update(strong(TWOKEY_DATA_DIR=str(tmp_path), CREDENTIALS_KEY=key))
    printed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "manage.py", "credentials_public_key"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == credentials_public_key(key)
    other = private_key()
    piped = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "manage.py", "credentials_public_key", "--stdin"],
        cwd=ROOT,
        env=env,
        input=other + "\n",
        capture_output=True,
        text=True,
    )
    assert piped.stdout.strip() == credentials_public_key(other)


def test_only_notify_and_the_worker_hold_the_audit_signing_key(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; print('started', settings.AUDIT_SIGNING_KEY)"
    )
    key = private_key()
    worker = start(tmp_path, code, **strong(TWOKEY_SERVICE="worker", CREDENTIALS_KEY=private_key()))
    assert worker.returncode == 0, worker.stderr
    for service, held in (("worker", {"CREDENTIALS_KEY": private_key()}), ("notify", {})):
        missing = start(tmp_path, code, **{**strong(**held), "TWOKEY_SERVICE": service})
        assert missing.returncode != 0 and "AUDIT_SIGNING_KEY is not set" in missing.stderr, service
    for service in ("web", "beat"):
        refused = start(tmp_path, code, **strong(TWOKEY_SERVICE=service, AUDIT_SIGNING_KEY=key, DEBUG="1"))
        assert refused.returncode != 0
        assert f"AUDIT_SIGNING_KEY must not be in the environment of the {service} process" in refused.stderr
        assert key not in refused.stderr
