"""Inventory sync benchmark: for each estate size, a vcsim lab with that many
VMs, a real `manage.py sync_inventory` process following it; reports the
initial sync time (process start → the table holds the inventory), the sync
process's RSS once its first round is done (inventory stored, permissions
read), while following (after the moves) and at its peak, and drift latency: a VM moved with
pyvmomi (from the moment the relocation is sent) → its finding listed by
the findings API.

    .venv/bin/python bench/sync_bench.py [--sizes 300,5000,20000] [--moves 20]

Needs PostgreSQL and Redis on localhost (as for the tests) and the lab built
with its VM-count flag (scripts/build-vcsim.sh). Uses its own database
(twokey_syncbench); REDIS_URL and CACHE_URL as the environment gives them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "twokey_syncbench"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=DATABASE_URL,
    TWOKEY_DATA_DIR=os.environ.get("TWOKEY_DATA_DIR", str(ROOT / "var" / "bench")),
    TWOKEY_LOCAL_KEYS="1",
    DEBUG="0",
    TWOKEY_HTTPS="0",
)
VCSIM = Path(os.environ.get("TWOKEY_VCSIM_BIN", ROOT / ".cache" / "bin" / "twokey-vcsim"))


def fresh_database() -> None:
    import psycopg

    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')


def start_lab(vms: int, hosts: int) -> tuple[subprocess.Popen, str, str]:
    password = secrets.token_urlsafe(12)
    data = tempfile.mkdtemp(prefix="twokey-syncbench-vcsim-")
    proc = subprocess.Popen(  # noqa: S603 - our own lab
        [str(VCSIM), "-listen", "127.0.0.1:0", "-vms", str(vms), "-hosts", str(hosts), "-data-dir", data],
        env={**os.environ, "VCSIM_PASSWORD": password},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("VCSIM_URL="):
            return proc, line.strip().split("=", 1)[1], password
    raise RuntimeError("the lab did not start")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_size(vms: int, moves: int, auditor) -> dict:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim
    from rest_framework.test import APIClient

    from approvals.services.connectors import connector_register
    from connectors import credentials
    from connectors.models import InventoryObject, InventoryState

    hosts = max(5, vms // 200)
    lab, url, password = start_lab(vms, hosts)
    sync = None
    try:
        user = "administrator@vsphere.local"
        connector = connector_register(
            name=f"bench-{vms}",
            url=url,
            username=user,
            sealed_password=credentials.seal(password),
            verify_tls=False,
            actor_name="bench",
        )
        env = {**os.environ, "TWOKEY_SERVICE": "worker", "SYNC_HEARTBEAT_SECONDS": "1"}
        log = tempfile.NamedTemporaryFile(prefix=f"twokey-syncbench-{vms}-", suffix=".log", delete=False)  # noqa: SIM115
        started = time.monotonic()
        sync = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "manage.py", "sync_inventory", "--connector", connector.name],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ready = InventoryState.objects.filter(connector=connector)
        while not ready.filter(full_read_at__isnull=False).exists():
            time.sleep(0.05)
        initial = time.monotonic() - started
        while not ready.filter(permissions_read_at__isnull=False).exists():  # its first round done
            time.sleep(0.05)
        rss_after = rss_mb(sync.pid)
        rows = InventoryObject.objects.filter(connector=connector, type__in=("vm", "template")).count()

        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        si = SmartConnect(host=host, port=int(port), user=user, pwd=password, disableSslCertValidation=True)
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        chosen = [vm for vm in view.view[: moves * 3] if not vm.config.template][:moves]
        api = APIClient()
        api.force_authenticate(auditor)
        latencies = []
        for vm in chosen:
            ref = f"vm:{vm.config.instanceUuid.lower()}"
            current = vm.runtime.host
            target = next(h for h in current.parent.host if h != current)
            sent = time.monotonic()
            vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=target, pool=current.parent.resourcePool))
            while True:
                page = api.get(f"/api/findings/?connector={connector.pk}&kind=vm_moved", HTTP_HOST="localhost").json()
                if any(f["object_ref"] == ref for f in page.get("results", page)):
                    break
                time.sleep(0.05)
            latencies.append(time.monotonic() - sent)
            print(f"  {vms} VMs: {vm._moId} moved, finding after {latencies[-1]:.2f} s", file=sys.stderr, flush=True)
        Disconnect(si)
        rss_following = rss_mb(sync.pid)
        print(f"  sync log: {log.name}", file=sys.stderr)
        latencies.sort()
        return {
            "vms": vms,
            "hosts": hosts,
            "rows": rows,
            "initial_s": initial,
            "rss_mb": rss_after,
            "following_mb": rss_following,
            "peak_mb": rss_mb(sync.pid, "VmHWM"),
            "p50_s": statistics.median(latencies),
            "p95_s": latencies[max(0, int(len(latencies) * 0.95) - 1)] if latencies else 0.0,
        }
    finally:
        for proc in (sync, lab):
            if proc is not None:
                stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, SIGKILL when it takes long (a large lab's shutdown can)."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300,5000,20000")
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args()

    fresh_database()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from approvals.roles import ensure_roles

    call_command("migrate", verbosity=0)
    groups = ensure_roles()
    auditor = get_user_model().objects.create_user("bench-auditor")
    auditor.groups.add(groups["auditor"] if isinstance(groups, dict) else groups.get(name="auditor"))

    print(
        "| VMs | hosts | rows | initial sync (s) | RSS after (MB) | RSS following (MB) | peak RSS (MB) "
        "| drift p50 (s) | drift p95 (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_size(size, args.moves, auditor)
        print(
            f"| {r['vms']:,} | {r['hosts']} | {r['rows']:,} | {r['initial_s']:.2f} | {r['rss_mb']:.0f} | "
            f"{r['following_mb']:.0f} | {r['peak_mb']:.0f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
