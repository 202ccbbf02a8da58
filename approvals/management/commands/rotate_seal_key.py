import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from approvals.seals import key_id
from audit.writer import record


class Command(BaseCommand):
    help = (
        "Start sealing decisions with a new SEAL_KEY. Nothing already decided is re-sealed: the old key is kept "
        "for verification (SEAL_OLD_KEYS). With local key files (./twokey run) the files are updated; otherwise "
        "the command prints what to set on the web and the worker, and changes nothing."
    )

    def handle(self, *args, **options):
        if not settings.SEAL_KEY:
            raise CommandError("SEAL_KEY is not set in this process; nothing to rotate.")
        new = secrets.token_urlsafe(50)
        old = [*settings.SEAL_OLD_KEYS, settings.SEAL_KEY]
        local = settings.DATA_DIR / "seal_key.key"
        if "SEAL_KEY" not in os.environ and local.exists():
            old_file = settings.DATA_DIR / "seal_old_keys.key"
            fd = os.open(old_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(old) + "\n")
            fd = os.open(local, os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(new)
            where = "local key files"
            self.stdout.write(f"New seal key {key_id(new)} in {local.name}; {len(old)} old key(s) kept. Restart.")
        else:
            where = "environment"
            self.stdout.write("Set on the web and the worker, then restart them:")
            self.stdout.write(f"  SEAL_KEY={new}")
            self.stdout.write(f"  SEAL_OLD_KEYS={','.join(old)}")
        record(
            "config.seal_key_rotated",
            actor_name="cli",
            details={"new_key_id": key_id(new), "old_key_ids": [key_id(k) for k in old], "where": where},
        )
