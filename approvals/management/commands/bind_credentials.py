from django.core.management.base import BaseCommand

from accounts import bindings
from accounts.models import AccountState, ApiToken, Passkey, PasswordBinding
from approvals.management import people
from audit.writer import record


class Command(BaseCommand):
    help = (
        "Bind people's credentials (password hash, API tokens, passkeys, directory identity) to them under the "
        "current SECRET_KEY, adopting what the tables hold: sign-in refuses a credential that does not bind. "
        "Run on the server's shell after rotating SECRET_KEY (with the old key still in SECRET_KEY_FALLBACKS), "
        "or to adopt a credential you checked."
    )

    def add_arguments(self, parser):
        people.add_arguments(parser, one="Bind this person's (repeatable).", every="Bind everyone's.")

    def handle(self, *args, usernames=None, all=False, **options):  # noqa: A002 - the option's name
        users = people.chosen(usernames)
        bound = bindings.bind_rows(
            users=users, passwords=PasswordBinding, tokens=ApiToken, passkeys=Passkey, states=AccountState
        )
        for user in users.filter(pk__in=bound):
            kinds = sorted(set(bound[user.pk]))
            record(
                "config.user.credentials_bound",
                actor_name="cli",
                obj=user,
                details={"username": user.username, "credentials": kinds},
            )
            self.stdout.write(f"{user.username}: {', '.join(kinds)}")
        self.stdout.write(f"Bound the credentials of {len(bound)} of {users.count()} people.")
