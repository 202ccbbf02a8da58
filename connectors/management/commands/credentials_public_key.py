"""Print the public key that belongs to CREDENTIALS_KEY: the web process gets
it as CREDENTIALS_PUBLIC_KEY and seals connector passwords to it."""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.keys import credentials_public_key, weakness


class Command(BaseCommand):
    help = "Print CREDENTIALS_PUBLIC_KEY for this process's CREDENTIALS_KEY (or one read from stdin)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--stdin",
            action="store_true",
            help="read the private key from standard input instead of the settings (never from the command line)",
        )

    def handle(self, *args, stdin=False, **options):
        private = sys.stdin.readline().strip() if stdin else settings.CREDENTIALS_KEY
        if not private:
            raise CommandError("no CREDENTIALS_KEY here: run this where the worker's key is set, or pass --stdin")
        problem = weakness("CREDENTIALS_KEY", private)
        if problem:
            raise CommandError(f"CREDENTIALS_KEY {problem}")
        self.stdout.write(credentials_public_key(private))
