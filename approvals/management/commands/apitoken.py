from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from audit.writer import record


class Command(BaseCommand):
    help = "Create or rotate a user's API token and print it once."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user {username!r}.") from exc
        with transaction.atomic():
            rotated = Token.objects.filter(user=user).delete()[0] > 0
            token = Token.objects.create(user=user)
            record("auth.token_issued", actor_name="cli", obj=user, details={"rotated": rotated})
        self.stdout.write(token.key)
