import secrets
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.directory import directory_configured
from accounts.models import AccountState
from accounts.services import mark_password_generated
from approvals.choices import Role
from approvals.roles import create_user


class Command(BaseCommand):
    help = "Create a user with one or more roles and print a generated password (or read one from stdin)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", action="append", required=True, choices=Role.values, dest="roles")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-stdin", action="store_true")
        parser.add_argument(
            "--break-glass",
            action="store_true",
            help="A local account for when the directory is down: with a directory configured, the only kind "
            "that signs in with a password; every page warns while it is used.",
        )

    def handle(self, *args, username, roles, email, password_stdin, break_glass=False, **options):
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        if directory_configured() and not break_glass:
            raise CommandError(
                "A directory is configured: people and roles come from its groups, and local accounts sign in "
                "only as break-glass accounts (add --break-glass)."
            )
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            try:
                validate_password(password)
            except ValidationError as exc:
                raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        else:
            password = secrets.token_urlsafe(15)
        try:
            user = create_user(
                username=username,
                password=password,
                roles=roles,
                email=email,
                actor_name="cli",
                details={"break_glass": True} if break_glass else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not password_stdin:
            mark_password_generated(user)  # changed at first sign-in
        if break_glass:
            AccountState.objects.update_or_create(user=user, defaults={"break_glass": True})
        self.stdout.write(
            f"Created {username} ({', '.join(roles)}){' as a break-glass account' if break_glass else ''}"
        )
        if not password_stdin:
            self.stdout.write(f"Password (shown once): {password}")
