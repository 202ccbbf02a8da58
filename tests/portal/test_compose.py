"""No Docker engine runs here, so the compose file is checked by reading it:
the services the README names, started with the same commands as the local
run's Procfile."""

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def procfile():
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = shlex.split(command)
    return entries


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def words(command):
    return command if isinstance(command, list) else shlex.split(command)


def test_compose_has_the_deployment_services():
    assert {"postgres", "redis", "vcsim", "web", "worker", "beat"} <= set(compose())
    assert compose()["vcsim"]["image"] == "vmware/vcsim"


def test_compose_starts_web_worker_and_beat_like_the_local_run():
    local, services = procfile(), compose()
    for name, program_words in (("web", 2), ("worker", 4), ("beat", 4)):
        assert words(services[name]["command"])[:program_words] == local[name][:program_words], name
    assert words(services["web"]["command"])[:2] == ["gunicorn", "portal.wsgi"]
    assert words(services["worker"]["command"])[:4] == ["celery", "-A", "portal", "worker"]
    assert words(services["beat"]["command"])[:4] == ["celery", "-A", "portal", "beat"]


def test_compose_sets_no_default_secrets():
    env = compose()["web"]["environment"]
    for name in ("SECRET_KEY", "CREDENTIALS_KEY", "AUDIT_HMAC_KEY"):
        assert env[name] == f"${{{name}:?set {name}}}"
    assert "${POSTGRES_PASSWORD:?" in compose()["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_exactly_one_beat():
    assert "deploy" not in compose()["beat"] and "scale" not in compose()["beat"]
