from django.core.management.base import BaseCommand

from audit import signing
from audit.checkpoints import signing_key


class Command(BaseCommand):
    help = (
        "Print the public key of AUDIT_SIGNING_KEY, which signs the audit checkpoints: what the witness "
        "pins (WITNESS_PORTAL_PUBLIC_KEY) and processes without the key may be given (AUDIT_SIGNING_PUBLIC_KEY)."
    )

    def handle(self, *args, **options):
        self.stdout.write(signing.public_key_text(signing_key()))
