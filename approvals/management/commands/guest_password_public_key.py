"""Print the public key that belongs to GUEST_PASSWORD_KEY: the worker gets
it as GUEST_PASSWORD_PUBLIC_KEY and seals new VMs' passwords to it."""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.keys import credentials_public_key, weakness


class Command(BaseCommand):
    help = "Print GUEST_PASSWORD_PUBLIC_KEY for this process's GUEST_PASSWORD_KEY (or one read from stdin)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--stdin",
            action="store_true",
            help="read the private key from standard input instead of the settings (never from the command line)",
        )

    def handle(self, *args, stdin=False, **options):
        private = sys.stdin.readline().strip() if stdin else settings.GUEST_PASSWORD_KEY
        if not private:
            raise CommandError("no GUEST_PASSWORD_KEY here: run this where the web's key is set, or pass --stdin")
        problem = weakness("GUEST_PASSWORD_KEY", private)
        if problem:
            raise CommandError(f"GUEST_PASSWORD_KEY {problem}")
        self.stdout.write(credentials_public_key(private))
