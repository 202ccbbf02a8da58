from django.core.management.base import BaseCommand, CommandError

from accounts import role_log
from approvals.management import people
from approvals.services import memberships
from audit.writer import record


class Command(BaseCommand):
    help = (
        "Write the roles people hold in the database into the audit log, for those whose newest role entry "
        "says otherwise (the worker believes roles only from the log). Run on the server's shell, once after "
        "upgrading to a portal whose worker reads roles from the log, or to adopt memberships you checked."
    )

    def add_arguments(self, parser):
        people.add_arguments(
            parser, one="Attest this person (repeatable).", every="Attest everyone whose roles differ from the log."
        )

    def handle(self, *args, usernames=None, all=False, **options):  # noqa: A002 - the option's name
        users = people.chosen(usernames)
        problem, _ = memberships.read_roles()
        if problem:
            raise CommandError(f"The audit log cannot be read for roles: {problem}.")
        attested = 0
        for user in users:
            now = role_log.role_groups(user)
            if (memberships.logged_roles(user) or frozenset()) == frozenset(now):
                continue
            record("config.user.roles_attested", actor_name="cli", obj=user, details=role_log.granted(user))
            self.stdout.write(f"{user.username}: {', '.join(sorted(now)) or 'no role'}")
            attested += 1
        self.stdout.write(f"Attested {attested} of {users.count()} people.")
