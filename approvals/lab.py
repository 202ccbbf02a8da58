"""The vcsim lab's labels: zones, the template catalogue and default
policies, so the demo (and the tests) can file every kind of ticket."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals.choices import Role, TicketKind
from approvals.models import CatalogueTemplate, Policy, Zone
from approvals.roles import ensure_config_policy, ensure_roles

LAB_ZONES = [
    # name, trust, clusters, hosts, datastores, networks (by name; stored by id)
    ("prod", 30, ["prod"], [], ["ds-prod"], ["pg-prod"]),
    ("dev", 20, ["dev"], [], ["ds-dev"], ["pg-dev"]),
    ("dmz", 10, [], ["dmz-esx-01"], ["ds-dmz"], ["pg-dmz"]),
]
# What admin_access may grant in the lab: working roles, never Admin.
LAB_GRANTABLE_ROLES = ["ReadOnly", "VirtualMachineUser", "VirtualMachinePowerUser"]
LAB_TEMPLATES = [
    ("tpl-debian12", "Debian 12, hardened baseline"),
    ("tpl-rhel9", "Red Hat Enterprise Linux 9, CIS level 1"),
    ("tpl-win2022", "Windows Server 2022, domain-join ready"),
]


def label_lab(connector) -> None:
    """Idempotent: what exists is kept as it is. Names are resolved to
    managed-object ids in the lab's inventory, read now and directly (this
    runs on the server's shell, before the portal's cache may be up)."""
    from approvals.inventory import InventoryIndex
    from connectors.registry import connector_for

    groups = ensure_roles()
    backend = connector_for(connector.kind, connector.connection_config())
    index = InventoryIndex(backend.inventory(), [])

    def ids(kinds, names):
        return [index.resolve(kinds, name)[1].id for name in names]

    with transaction.atomic():
        zones = {}
        for name, trust, clusters, hosts, datastores, networks in LAB_ZONES:
            zones[name], _ = Zone.objects.get_or_create(
                connector=connector,
                name=name,
                defaults={
                    "trust_level": trust,
                    "clusters": ids(("cluster",), clusters),
                    "hosts": ids(("host",), hosts),
                    "datastores": ids(("datastore",), datastores),
                    "networks": ids(("network",), networks),
                },
            )
        now = timezone.now()
        for name, description in LAB_TEMPLATES:
            template_id = index.resolve(("template",), name)[1].id
            CatalogueTemplate.objects.get_or_create(
                connector=connector,
                name=name,
                defaults={
                    "description": description,
                    "template_id": template_id,
                    # Vetted as the lab set it up, read now.
                    "vetted_by": "bootstrap",
                    "vetted_at": now,
                    "vetted_until": now + timedelta(days=settings.CATALOGUE_VETTING_DAYS),
                    "fingerprint": backend.read_template(template_id).fingerprint(),
                },
            )
        approver = groups[Role.APPROVER]
        defaults = {
            TicketKind.VM_CREATE: {"required_approvals": 1, "max_cpus": 8, "max_memory_mb": 32768},
            TicketKind.VM_MIGRATE: {
                "required_approvals": 1,
                "allowed_zone_pairs": [{"source": "dev", "target": "prod", "required_approvals": 2}],
            },
            TicketKind.ADMIN_ACCESS: {
                "required_approvals": 2,
                "max_duration_minutes": 480,
                "grantable_roles": LAB_GRANTABLE_ROLES,
            },
            TicketKind.VM_DECOMMISSION: {"required_approvals": 2},
            # Also the approvals a revert to a snapshot needs.
            TicketKind.VM_RECONFIGURE: {"required_approvals": 1, "max_cpus": 8, "max_memory_mb": 32768, "max_nics": 4},
            TicketKind.VM_POWER: {"required_approvals": 1},
            TicketKind.VM_SNAPSHOT: {"required_approvals": 1},
        }
        for kind, values in defaults.items():
            Policy.objects.get_or_create(kind=kind, zone=None, defaults={"approver_group": approver, **values})
        ensure_config_policy()
