"""manage.py sync_inventory: keep connectors' inventory tables current (one
long-running process; see connectors.sync)."""

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from connectors.base import ConnectorError
from connectors.credentials import CredentialsUnavailable
from connectors.models import Connector
from connectors.sync import ConnectorSync, run_syncs


class Command(BaseCommand):
    help = (
        "Follow each connector's hypervisor (or --connector NAME's): read the inventory once, then keep the "
        "inventory table current from its updates and raise findings for changes no ticket explains. One active "
        "sync per connector; others stand by. Needs the worker's CREDENTIALS_KEY."
    )

    def add_arguments(self, parser):
        parser.add_argument("--connector", help="only this connector (by name)")
        parser.add_argument("--once", action="store_true", help="one full read into the table, then exit")

    def handle(self, *args, connector=None, once=False, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        connectors = list(Connector.objects.order_by("name"))
        if connector:
            connectors = [c for c in connectors if c.name == connector]
            if not connectors:
                raise CommandError(f"no connector named {connector!r}")
        try:
            for c in connectors:
                c.connection_config()  # the password opens here, or nowhere
        except CredentialsUnavailable as exc:
            raise CommandError(f"this process cannot open connector passwords: {exc}") from exc
        stop = threading.Event()
        if once:
            for c in connectors:
                try:
                    ConnectorSync(c).run(stop, once=True)
                except ConnectorError as exc:
                    raise CommandError(f"{c.name}: {exc}") from exc
                self.stdout.write(f"{c.name}: inventory read")
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if not connectors and not connector:
            self.stderr.write("no connectors yet; following each one once it is registered")
        run_syncs(stop, name=connector)
