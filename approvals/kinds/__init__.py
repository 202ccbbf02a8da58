"""The ticket kinds, one module each, and the one registry every caller
uses. Adding a kind means one module and one line here. Configuration
changes are not here: the portal applies them itself (approvals.config)."""

from approvals.kinds import (
    admin_access,
    vm_create,
    vm_decommission,
    vm_migrate,
    vm_power,
    vm_reconfigure,
    vm_snapshot,
)
from approvals.kinds.base import Checked, Kind

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        vm_create.KIND,
        vm_migrate.KIND,
        admin_access.KIND,
        vm_decommission.KIND,
        vm_reconfigure.KIND,
        vm_power.KIND,
        vm_snapshot.KIND,
    )
}

__all__ = ["KINDS", "Checked", "Kind"]
