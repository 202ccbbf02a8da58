import sys

from django.core.management.base import BaseCommand, CommandError

from approvals.services.connectors import connector_register
from connectors import credentials
from connectors.base import ConnectorError
from connectors.models import Connector


class Command(BaseCommand):
    help = (
        "Register a hypervisor connection, pinned to the vCenter that answers (instance UUID and TLS "
        "certificate), after checking that it logs in. The password is read from stdin."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--url", required=True)
        parser.add_argument("--username", required=True)
        parser.add_argument("--password-stdin", action="store_true", required=True)
        parser.add_argument("--no-verify-tls", action="store_true")
        parser.add_argument("--kind", default=Connector.Kind.VSPHERE, choices=Connector.Kind.values)

    def handle(self, *args, name, url, username, no_verify_tls, kind, **options):
        if Connector.objects.filter(name=name).exists():
            raise CommandError(f"A connector named {name!r} exists already.")
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("No password on stdin.")
        try:
            connector_register(
                actor=None,
                actor_name="addconnector",
                name=name,
                url=url,
                username=username,
                sealed_password=credentials.seal(password),
                verify_tls=not no_verify_tls,
                kind=kind,
            )
        except ConnectorError as exc:
            raise CommandError(f"Cannot log in to {url} as {username}: {exc}") from exc
        except Exception as exc:  # model validation (bad name or URL)
            messages = getattr(exc, "messages", None)
            if messages:
                raise CommandError("; ".join(messages)) from exc
            raise
        self.stdout.write(f"Registered connector {name} ({url}).")
