from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken
from accounts.services import token_issue, token_revoke


class Command(BaseCommand):
    help = "Create or rotate a user's API token and print it once; --revoke ends the user's tokens."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--revoke", action="store_true", help="revoke the user's tokens, issue none")

    def handle(self, *args, username, revoke, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user {username!r}.") from exc
        if revoke:
            tokens = ApiToken.objects.filter(user=user, revoked_at__isnull=True)
            for token in tokens:
                token_revoke(token_id=token.pk, actor_name="cli")
            self.stdout.write(f"Revoked {len(tokens)} token(s) of {username}.")
            return
        self.stdout.write(token_issue(user=user, actor_name="cli"))
