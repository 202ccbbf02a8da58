"""No Docker engine runs here, so the compose file is checked by reading it:
the services the README names, started with the same commands as the local
run's Procfile."""

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def procfile_raw():
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = shlex.split(command)
    return entries


def without_env(command):
    """The program's words after an `env [-u NAME]... [NAME=value]...` prefix,
    and what that prefix unsets and sets."""
    unset, assigned = set(), {}
    if command[:1] != ["env"]:
        return command, unset, assigned
    rest = command[1:]
    while rest:
        if rest[0] == "-u":
            unset.add(rest[1])
            rest = rest[2:]
        elif "=" in rest[0] and not rest[0].startswith("-"):
            name, value = rest[0].split("=", 1)
            assigned[name] = value
            rest = rest[1:]
        else:
            break
    return rest, unset, assigned


def procfile():
    return {name: without_env(command)[0] for name, command in procfile_raw().items()}


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def words(command):
    return command if isinstance(command, list) else shlex.split(command)


def test_compose_has_the_deployment_services():
    assert {"postgres", "redis", "vcsim", "web", "worker", "notify", "beat", "witness"} <= set(compose())
    assert compose()["vcsim"]["image"] == "vmware/vcsim"


def test_compose_starts_web_worker_and_beat_like_the_local_run():
    local, services = procfile(), compose()
    for name, program_words in (("web", 2), ("worker", 4), ("beat", 4)):
        assert words(services[name]["command"])[:program_words] == local[name][:program_words], name
    assert words(services["web"]["command"])[:2] == ["gunicorn", "portal.wsgi"]
    assert words(services["worker"]["command"])[:4] == ["celery", "-A", "portal", "worker"]
    assert words(services["beat"]["command"])[:4] == ["celery", "-A", "portal", "beat"]


def test_compose_sets_no_default_secrets():
    services = compose()
    for service, names in (
        ("web", ("SECRET_KEY", "AUDIT_HMAC_KEY")),
        ("worker", ("SECRET_KEY", "CREDENTIALS_KEY", "AUDIT_HMAC_KEY", "AUDIT_SIGNING_KEY")),
        ("migrate", ("CREDENTIALS_KEY",)),
    ):
        env = services[service]["environment"]
        for name in names:
            assert env[name] == f"${{{name}:?set {name}}}", (service, name)
    assert services["web"]["environment"]["CREDENTIALS_PUBLIC_KEY"].startswith("${CREDENTIALS_PUBLIC_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_only_the_worker_holds_the_credentials_key():
    services = compose()
    assert "CREDENTIALS_KEY" not in services["web"]["environment"]
    assert "CREDENTIALS_KEY" not in services["beat"]["environment"]
    assert "CREDENTIALS_KEY" not in services["notify"]["environment"]
    assert "CREDENTIALS_KEY" in services["worker"]["environment"]
    for name in ("web", "worker", "notify", "beat"):
        assert services[name]["environment"]["TWOKEY_SERVICE"] == name


def test_procfile_starts_the_web_without_the_credentials_key():
    for name, command in procfile_raw().items():
        if name not in ("web", "worker", "notify", "beat"):
            continue
        _, unset, assigned = without_env(command)
        assert assigned.get("TWOKEY_SERVICE") == name, name
        assert ("CREDENTIALS_KEY" in unset) == (name != "worker"), name


def queues(command):
    """The queues a `celery worker` command line consumes."""
    command = words(command)
    for flag in ("-Q", "--queues"):
        if flag in command:
            return set(command[command.index(flag) + 1].split(","))
    return None


def test_executions_and_the_portal_queue_have_their_own_consumers():
    """The worker consumes only the execution queue (the default, where
    everything unrouted lands); notify only the portal queue, the queue of
    every route; locally and in compose alike."""
    from django.conf import settings

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed == {settings.PORTAL_QUEUE} != {settings.CELERY_TASK_DEFAULT_QUEUE}
    local, services = procfile(), compose()
    for name, queue in (("worker", settings.CELERY_TASK_DEFAULT_QUEUE), ("notify", settings.PORTAL_QUEUE)):
        assert queues(local[name]) == queues(services[name]["command"]) == {queue}, name
        assert words(services[name]["command"])[:4] == local[name][:4] == ["celery", "-A", "portal", "worker"]
    assert services["notify"]["environment"]["AUDIT_SIGNING_KEY"] == "${AUDIT_SIGNING_KEY:?set AUDIT_SIGNING_KEY}"


def test_exactly_one_beat():
    assert "deploy" not in compose()["beat"] and "scale" not in compose()["beat"]


def test_the_witness_runs_apart_like_the_local_run():
    """Its own service and volume, the same command as the Procfile's, and
    nothing of the portal's: no database, no keys."""
    witness, local = compose()["witness"], procfile_raw()["witness"]
    command, unset, _ = without_env(local)
    assert words(witness["command"])[:4] == command[:4] == ["python", "-m", "audit.witness", "run"]
    assert {"SECRET_KEY", "AUDIT_HMAC_KEY", "CREDENTIALS_KEY", "AUDIT_SIGNING_KEY", "DATABASE_URL"} <= unset
    assert not {"SECRET_KEY", "AUDIT_HMAC_KEY", "CREDENTIALS_KEY", "AUDIT_SIGNING_KEY", "DATABASE_URL"} & set(
        witness["environment"]
    )
    assert "depends_on" not in witness or "postgres" not in witness["depends_on"]
    (volume,) = witness["volumes"]
    name, mount = volume.split(":")
    assert name in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
    assert witness["environment"]["WITNESS_DATA_DIR"] == mount
    assert all(name not in str(compose()[other].get("volumes", "")) for other in compose() if other != "witness")
    assert witness["environment"]["WITNESS_API_TOKEN"].startswith("${WITNESS_API_TOKEN:?")


def test_only_the_worker_holds_the_audit_signing_key_and_both_verify_with_the_witness():
    services = compose()
    assert "AUDIT_SIGNING_KEY" in services["worker"]["environment"]
    for name in ("web", "beat", "migrate"):
        assert "AUDIT_SIGNING_KEY" not in services[name]["environment"], name
    for name in ("web", "worker"):
        assert services[name]["environment"]["WITNESS_URL"] == "http://witness:8010"
        assert services[name]["environment"]["WITNESS_PUBLIC_KEY"].startswith("${WITNESS_PUBLIC_KEY:?")
