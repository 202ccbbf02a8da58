from django.core.management.base import BaseCommand, CommandError

from accounts.directory import directory_configured
from accounts.directory.sync import directory_sync


def _say(kind: str, result) -> str:
    if not isinstance(result, dict):
        return f"{kind}: {result}"
    if "error" in result:
        return f"{kind}: not synced, nothing changed: {result['error']}"
    return f"{kind}: " + ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in result.items())


class Command(BaseCommand):
    help = "Bring accounts and roles in line with the directory now (beat does it every DIRECTORY_SYNC_SECONDS)."

    def handle(self, *args, **options):
        if not directory_configured():
            raise CommandError("No directory is configured (LDAP_SERVER_URI or OIDC_ISSUER).")
        summary = directory_sync(actor_name="cli")
        for kind, result in summary.items():
            self.stdout.write(_say(kind, result))
        failed = {
            kind: result["error"] for kind, result in summary.items() if isinstance(result, dict) and "error" in result
        }
        if failed:
            words = "; ".join(f"{kind}: {error}" for kind, error in failed.items())
            raise CommandError(f"Could not sync {', '.join(failed)}; nothing was changed there ({words})")
