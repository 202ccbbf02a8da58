import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import mark_password_generated
from approvals.choices import Role
from approvals.lab import label_lab
from approvals.roles import create_user, ensure_config_policy, ensure_roles
from approvals.services.connectors import connector_register
from connectors import credentials
from connectors.base import ConnectorError
from connectors.models import Connector

DEMO_USERS = [
    ("requester", [Role.REQUESTER]),
    ("approver1", [Role.APPROVER]),
    ("approver2", [Role.APPROVER]),
    ("auditor", [Role.AUDITOR]),
    ("portaladmin", [Role.PORTAL_ADMIN]),
    # A second portal admin: configuration requests need someone else to approve them.
    ("portaladmin2", [Role.PORTAL_ADMIN]),
]


class Command(BaseCommand):
    help = (
        "Create the role groups; with --demo also demo users, the vcsim lab connector, zones, policies and catalogue."
    )

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true")

    def handle(self, *args, **options):
        groups = ensure_roles()
        ensure_config_policy()
        self.stdout.write(f"Roles: {', '.join(groups)}")
        if options["demo"]:
            self._demo()

    def _demo(self):
        users = get_user_model().objects
        for username, roles in DEMO_USERS:
            if users.filter(username=username).exists():
                self.stdout.write(f"  {username:<12} exists (password unchanged)")
                continue
            password = secrets.token_urlsafe(12)
            user = create_user(
                username=username,
                password=password,
                roles=roles,
                email=f"{username}@example.invalid",
                actor_name="bootstrap",
            )
            mark_password_generated(user)
            self.stdout.write(f"  {username:<12} password: {password}   ({', '.join(roles)})")
        connector = Connector.objects.filter(name="lab").first()
        if connector is None:
            url, username, password = (os.environ.get(k, "") for k in ("VCSIM_URL", "VCSIM_USERNAME", "VCSIM_PASSWORD"))
            if not (url and username and password):
                raise CommandError("--demo needs VCSIM_URL, VCSIM_USERNAME and VCSIM_PASSWORD for the lab connector.")
            try:
                connector = connector_register(
                    actor_name="bootstrap",
                    name="lab",
                    url=url,
                    username=username,
                    sealed_password=credentials.seal(password),
                    verify_tls=False,
                )
            except ConnectorError as exc:
                raise CommandError(f"Cannot log in to the vcsim lab at {url}: {exc}") from exc
            self.stdout.write(f"  connector 'lab' -> {url}")
        label_lab(connector)
        self.stdout.write("  lab zones, catalogue and default policies in place")
