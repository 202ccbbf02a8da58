from django.core.management.base import BaseCommand, CommandError

from audit import drift
from connectors.base import ConnectorError
from connectors.models import Connector


class Command(BaseCommand):
    help = "Compare each connector's hypervisor with what tickets explain and raise findings for the differences."

    def add_arguments(self, parser):
        parser.add_argument("--connector", help="only this connector (by name)")

    def handle(self, *args, connector=None, **options):
        if connector:
            try:
                chosen = Connector.objects.get(name=connector)
            except Connector.DoesNotExist as exc:
                raise CommandError(f"No connector named {connector!r}.") from exc
            try:
                reports = [drift.detect_drift(connector=chosen)]
            except ConnectorError as exc:
                reports = [drift.DriftReport(connector=chosen.name, error=str(exc))]
        else:
            reports = drift.detect_drift_everywhere()
        for report in reports:
            if report.error:
                self.stderr.write(f"{report.connector}: not checked: {report.error}")
            elif report.baseline_taken:
                self.stdout.write(f"{report.connector}: no baseline yet; took it now")
            else:
                self.stdout.write(
                    f"{report.connector}: {report.present} differences, {len(report.raised)} new findings"
                )
                for finding in report.raised:
                    self.stdout.write(f"  new: {finding}")
        if any(report.error for report in reports):
            raise CommandError("Some connectors could not be checked.", returncode=2)
