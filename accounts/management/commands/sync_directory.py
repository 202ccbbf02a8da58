from django.core.management.base import BaseCommand, CommandError

from accounts.directory import directory_configured
from accounts.directory.sync import directory_sync


class Command(BaseCommand):
    help = "Bring accounts and roles in line with the directory now (beat does it every DIRECTORY_SYNC_SECONDS)."

    def handle(self, *args, **options):
        if not directory_configured():
            raise CommandError("No directory is configured (LDAP_SERVER_URI or OIDC_ISSUER).")
        summary = directory_sync(actor_name="cli")
        for kind, result in summary.items():
            self.stdout.write(f"{kind}: {result}")
        failed = [kind for kind, result in summary.items() if isinstance(result, dict) and "error" in result]
        if failed:
            raise CommandError(f"Could not sync {', '.join(failed)}; nothing was changed there.")
