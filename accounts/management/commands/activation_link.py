from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.lifecycle import activation_link
from audit.writer import record


class Command(BaseCommand):
    help = (
        "Print the one-time link with which a new account's person sets their first password. "
        "For the server's shell only: whoever runs it can take the account, so hand the link to the person alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            link = activation_link(user)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        record("auth.activation_link_given", actor_name="cli", obj=user, details={"username": username})
        self.stdout.write(link)
