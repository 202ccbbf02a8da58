from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and, with WITNESS_URL set, that it still holds what the witness "
        "cosigned. Exit status 1 names the first broken entry."
    )

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            at = f"entry #{report.first_broken}" if report.first_broken is not None else "the witness"
            raise CommandError(f"BROKEN at {at}: {report.reason} ({report.checked} entries read)", returncode=1)
        self.stdout.write(f"OK: {report.checked} entries verified")
        if report.witnessed_seq is not None:
            self.stdout.write(f"witness: entries up to #{report.witnessed_seq} witnessed at {report.witnessed_at}")
        elif report.witness != "checked":
            self.stdout.write(f"witness: {report.witness}")
