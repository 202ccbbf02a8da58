"""tests/parallel.py: each pytest-xdist process has Redis databases and a
data directory of its own, so a worker one process starts never takes the
other's tasks and one process's cache clear leaves the other's alone."""

import json
import os
import subprocess
import sys

import pytest

from tests.parallel import _other_database
from tests.portal.test_settings import ROOT

SHOW = (
    "import tests.parallel; from django.conf import settings; import json; "
    "print(json.dumps([settings.CELERY_BROKER_URL, settings.CACHES['default']['LOCATION'], str(settings.DATA_DIR)]))"
)


def settings_seen_by(worker: str, tmp_path) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTEST_XDIST_WORKER": worker,
        "REDIS_URL": "redis://127.0.0.1:6379/11",
        "CACHE_URL": "redis://127.0.0.1:6379/12",
        "TWOKEY_DATA_DIR": str(tmp_path),
        "TWOKEY_LOCAL_KEYS": "1",
    }
    env.pop("CELERY_BROKER_URL", None)
    out = subprocess.run(  # noqa: S603 - our own settings
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_first_process_keeps_the_commands_services_and_the_third_moves_off_them(tmp_path):
    assert settings_seen_by("gw0", tmp_path) == [
        "redis://127.0.0.1:6379/11",
        "redis://127.0.0.1:6379/12",
        str(tmp_path),
    ]
    assert settings_seen_by("gw2", tmp_path) == [
        "redis://127.0.0.1:6379/7",
        "redis://127.0.0.1:6379/8",
        str(tmp_path / "gw2"),
    ]


def test_more_processes_than_redis_databases_is_said():
    assert _other_database("redis://:pw@127.0.0.1:6379/12", 3) == "redis://:pw@127.0.0.1:6379/6"
    with pytest.raises(RuntimeError, match="too many test processes"):
        _other_database("redis://127.0.0.1:6379/3", 2)
