"""The portal refuses to start with DEBUG off and a missing or weak key."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "CREDENTIALS_KEY", "AUDIT_HMAC_KEY", "SEAL_KEY", "TWOKEY_LOCAL_KEYS", "DEBUG"}
    }
    clean.update({"TWOKEY_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def strong():
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIALS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(50),
        "SEAL_KEY": secrets.token_urlsafe(50),
    }


def test_strong_keys_start(tmp_path):
    result = start(tmp_path, **strong())
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("SECRET_KEY", "", "SECRET_KEY is not set"),
        ("SECRET_KEY", "django-insecure-" + "x" * 60, "well-known placeholder"),
        ("SECRET_KEY", "short", "too short"),
        ("SECRET_KEY", "a" * 80, "too short or too repetitive"),
        ("CREDENTIALS_KEY", "", "CREDENTIALS_KEY is not set"),
        ("CREDENTIALS_KEY", "not base64 !!", "CREDENTIALS_KEY"),
        ("CREDENTIALS_KEY", base64.urlsafe_b64encode(b"\0" * 32).decode(), "not random enough"),
        ("AUDIT_HMAC_KEY", "changeme", "AUDIT_HMAC_KEY"),
        ("SEAL_KEY", "", "SEAL_KEY is not set"),
        ("SEAL_KEY", "short", "SEAL_KEY is too short"),
    ],
)
def test_weak_or_missing_keys_refuse_to_start(tmp_path, name, value, words):
    result = start(tmp_path, **{**strong(), name: value})
    assert result.returncode != 0
    assert words in result.stderr
    assert f"Set the {name} environment variable" in result.stderr
    assert "started" not in result.stdout


def test_local_runs_generate_private_key_files_once(tmp_path):
    first = start(tmp_path, TWOKEY_LOCAL_KEYS="1")
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in tmp_path.glob("*.key"))
    assert files == [
        "audit_hmac_key.key",
        "credentials_key.key",
        "guest_password_key.key",
        "guest_password_public_key.key",
        "seal_key.key",
        "secret_key.key",
    ]
    contents = {p.name: p.read_text() for p in tmp_path.glob("*.key")}
    for path in tmp_path.glob("*.key"):
        # Private keys are the owner's alone; the public half may be read by the worker's user.
        if not path.name.endswith("public_key.key"):
            assert path.stat().st_mode & 0o777 == 0o600, path.name
    assert start(tmp_path, TWOKEY_LOCAL_KEYS="1").returncode == 0
    assert {p.name: p.read_text() for p in tmp_path.glob("*.key")} == contents


def test_without_local_generation_no_key_is_made(tmp_path):
    result = start(tmp_path)
    assert result.returncode != 0
    assert list(tmp_path.glob("*.key")) == []
