from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Exit status 1 names the first broken entry."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(
                f"BROKEN at entry #{report.first_broken}: {report.reason} ({report.checked} entries read)", returncode=1
            )
        self.stdout.write(f"OK: {report.checked} entries verified")
