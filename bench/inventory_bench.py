"""Inventory benchmark: submission (POST /api/tickets/ vm_migrate) and the
new-ticket page (GET /tickets/new/vm_migrate/) against the inventory table
holding 300, 5,000 and 20,000 VMs, beside a trivial signed-in view, and the
inventory API's first page and a search, side by side in one run, through
Django's test client in this process (no network, no gunicorn: what is
measured is the portal's own work per request).

    .venv/bin/python bench/inventory_bench.py [--sizes 300,5000,20000]
        [--submissions 200] [--pages 30] [--trivial 200]

The table is filled by synthesis: a vcsim lab is started and labelled as
`bootstrap --demo` labels it (zones, policies, catalogue), its inventory read
once, and for each size N generated VMs (copies of prod-web-01 or dev-app-01 with their own
ids, names, instance UUIDs, spread over the lab's five hosts) are added to it
and written with store_snapshot, as the sync writes a full read; then vcsim
is stopped, so no request can reach a hypervisor. Each submission moves
another VM within its zone; each size starts with no open tickets.

Needs PostgreSQL and Redis on localhost (as for the tests) and the built lab
(scripts/build-vcsim.sh). Uses its own database (twokey_inventorybench) and
Redis database 15.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "twokey_inventorybench"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}"),
    REDIS_URL="redis://127.0.0.1:6379/15",
    CACHE_URL="redis://127.0.0.1:6379/15",
    TWOKEY_LOCAL_KEYS="1",
    TWOKEY_DATA_DIR=str(ROOT / "var" / "bench"),
    LOG_LEVEL="ERROR",
    DEBUG="0",
    ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    BENCH_TRIVIAL_VIEW="1",
    TWOKEY_HTTPS="0",
    # Every stored inventory is as fresh as the run: no banner is measured.
    INVENTORY_STALE_SECONDS="86400",
)
os.environ.setdefault("TWOKEY_VCSIM_BIN", str(ROOT / ".cache" / "bin" / "twokey-vcsim"))

HOST_ZONE = {"prod-esx-01": "prod", "prod-esx-02": "prod", "dev-esx-01": "dev", "dev-esx-02": "dev"}
MODEL_VMS = {"prod": "prod-web-01", "dev": "dev-app-01"}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def recreate_database() -> None:
    import psycopg

    admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def timed(call, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def generated(lab, vms: int):
    """The lab's inventory with `vms` generated VMs added (on the prod and
    dev hosts, each a copy of its zone's lab VM: folder, cards, disks)."""
    models = {zone: next(vm for vm in lab.vms if vm.name == name) for zone, name in MODEL_VMS.items()}
    hosts = {h.name: h for h in lab.hosts}
    names = sorted(HOST_ZONE)
    made = []
    for i in range(vms):
        host = hosts[names[i % len(names)]]
        model = models[HOST_ZONE[host.name]]
        name = f"bench-vm-{i:05d}"
        made.append(
            replace(
                model,
                id=f"vm-{900000 + i}",
                name=name,
                path=f"{model.path.rsplit('/', 1)[0]}/{name}",
                host_id=host.id,
                instance_uuid=str(uuid.UUID(int=i + 1)),
            )
        )
    return replace(lab, vms=(*lab.vms, *made))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,5000,20000")
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--trivial", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.services import token_issue
    from approvals.inventory.fill import store_full_read
    from approvals.lab import label_lab
    from approvals.models import Ticket
    from approvals.roles import ensure_roles
    from connectors.models import Connector
    from connectors.registry import connector_for
    from tests.factories import UserFactory
    from tests.fixtures.vcsim import VcsimProcess

    say("migrating")
    call_command("migrate", verbosity=0)
    ensure_roles()
    say("labelling a vcsim lab and reading its inventory")
    with VcsimProcess() as vcsim:
        connector = Connector(name="lab", url=vcsim.url, username=vcsim.username, verify_tls=False)
        connector.set_password(vcsim.password)
        connector.save()
        label_lab(connector)
        lab = connector_for(connector.kind, connector.connection_config()).inventory()
    requester = UserFactory(roles=["requester"], username="alice")
    token = token_issue(user=requester, actor_name="bench")
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")
    web = Client()
    web.force_login(requester)
    rng = random.Random(14)  # noqa: S311 - repeatable choices, not secrets

    rows, listings = [], []
    for size in sizes:
        # The last size's tickets are closed (directly: bench data), so each
        # size starts with an empty queue; submission compares a ticket with
        # the open ones (conflicts), a cost of the queue, not of the estate.
        Ticket.objects.filter(state="pending").update(state="cancelled")
        say(f"storing the lab with {size} VMs")
        start = time.perf_counter()
        store_full_read(connector=connector, inventory=generated(lab, size))
        stored_s = time.perf_counter() - start
        vm_hosts = {f"bench-vm-{i:05d}": sorted(HOST_ZONE)[i % len(HOST_ZONE)] for i in range(size)}
        names = list(vm_hosts)
        # What the bench itself holds (the generated estate, its names) is
        # kept out of the collector's rounds: a server process holds none of it.
        gc.collect()
        gc.freeze()

        def submit(names=names, vm_hosts=vm_hosts):
            vm = rng.choice(names)
            here = vm_hosts[vm]
            target = next(h for h in HOST_ZONE if HOST_ZONE[h] == HOST_ZONE[here] and h != here)
            body = {
                "kind": "vm_migrate",
                "connector": connector.pk,
                "justification": "bench",
                "params": {"vm": vm, "target_host": target},
            }
            response = api.post("/api/tickets/", body, content_type="application/json")
            assert response.status_code == 201, response.content[:500]

        def page():
            response = web.get(f"/tickets/new/vm_migrate/?connector={connector.pk}")
            assert response.status_code == 200, response.status_code
            return len(response.content)

        def trivial():
            assert web.get("/bench/trivial").status_code == 200

        def listing(query):
            def get():
                response = api.get(f"/api/connectors/{connector.pk}/inventory/{query}")
                assert response.status_code == 200, response.content[:500]

            return get

        def picker(typed):
            def get():
                query = {"ticket_kind": "vm_migrate", "field": "vm", "vm": typed}
                response = web.get(f"/inventory/{connector.pk}/search/", query)
                assert response.status_code == 200 and b'role="option"' in response.content, response.content[:500]

            return get

        submit(), page(), trivial()  # warm: connections, templates, caches
        with CaptureQueriesContext(connection) as queries:
            submit()
        submit_queries = len(queries)
        with CaptureQueriesContext(connection) as queries:
            page_bytes = page()
        page_queries = len(queries)
        say(f"measuring at {size} VMs")
        s = timed(submit, args.submissions)
        t = timed(trivial, args.trivial)
        p = timed(page, args.pages)
        first = timed(listing(""), args.pages)
        search = timed(listing("?type=vm&q=bench-vm-0001"), args.pages)
        # The VM picker: a narrow query, and one every VM matches (ranked, 20 shown).
        narrow = timed(picker("bench-vm-0001"), args.pages)
        broad = timed(picker("bench"), args.pages)
        rows.append((size, stored_s, s, submit_queries, t, p, page_queries, page_bytes))
        listings.append((size, first, search, narrow, broad))

    print()
    print(
        "| VMs stored | store_snapshot (s) | submission p50 / p95 (ms) | queries per submission "
        "| trivial view p95 (ms) | new-ticket page p50 / p95 (ms) | page ÷ trivial (p95) | page queries | page size |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, stored_s, s, sq, t, p, pq, pb in rows:
        print(
            f"| {size:,} | {stored_s:.2f} | {statistics.median(s):.1f} / {p95(s):.1f} | {sq} | {p95(t):.1f} "
            f"| {statistics.median(p):.1f} / {p95(p):.1f} | {p95(p) / p95(t):.1f}× | {pq} | {pb / 1024:,.0f} KB |"
        )
    print()
    print(
        "| VMs stored | inventory API page 1 p50 / p95 (ms) | inventory API ?type=vm&q=bench-vm-0001 p50 / p95 (ms) "
        "| VM picker 'bench-vm-0001' p50 / p95 (ms) | VM picker 'bench' (every VM) p50 / p95 (ms) |"
    )
    print("|---|---|---|---|---|")
    for size, *timings in listings:
        print(f"| {size:,} | " + " | ".join(f"{statistics.median(t):.1f} / {p95(t):.1f}" for t in timings) + " |")


if __name__ == "__main__":
    main()
