import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from audit import verify_export


class Command(BaseCommand):
    help = (
        "Verify an exported audit file (CSV or JSON) with this portal's AUDIT_HMAC_KEY, another key (--key-file) "
        "or none (--no-key: links and sequence only). Without a portal: python -m audit.verify_export FILE."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--key-file", type=Path)
        parser.add_argument("--no-key", action="store_true")
        parser.add_argument("--subset", action="store_true", help="the export was filtered: allow gaps in seq")

    def handle(self, *args, file, key_file, no_key, subset, **options):
        try:
            key = None if no_key else (key_file.read_text().strip() if key_file else settings.AUDIT_HMAC_KEY)
            verified, message = verify_export.verify_file(file, key=key, subset=subset)
        except (OSError, ValueError, verify_export.ExportError) as exc:
            self.stderr.write(f"cannot verify {file}: {exc}")
            sys.exit(2)
        self.stdout.write(message)
        if not verified:
            sys.exit(1)
