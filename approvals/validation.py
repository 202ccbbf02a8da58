"""Submission checks against the connector's inventory, the zones and the
policies. Each returns the normalised parameters and what the ticket copies
from its policy, or raises InvalidInput with field errors."""

from __future__ import annotations

from dataclasses import dataclass

from approvals.choices import TicketKind, TicketState
from approvals.errors import InvalidInput
from approvals.inventory import InventoryIndex, ZoneLabel
from approvals.models import CatalogueTemplate, Policy, Ticket
from approvals.params import PARAMS_BY_KIND

OPEN_STATES = (TicketState.PENDING, TicketState.APPROVED, TicketState.RUNNING)
DEFAULT_CROSS_ZONE_APPROVALS = 2


@dataclass(frozen=True)
class Checked:
    params: dict
    policy: Policy
    zone: ZoneLabel
    required_approvals: int


def _params_error(errors: dict) -> InvalidInput:
    return InvalidInput({"params": errors})


def policy_for(kind: str, connector, zone: ZoneLabel) -> Policy:
    """The zone's own policy for this kind if there is one, else the default."""
    policies = Policy.objects.select_related("approver_group", "zone").filter(kind=kind)
    if zone.name:
        narrowed = policies.filter(zone__connector=connector, zone__name=zone.name).first()
        if narrowed is not None:
            return narrowed
    policy = policies.filter(zone__isnull=True).first()
    if policy is None:
        raise InvalidInput({"kind": [f"No approval policy is configured for {kind}; ask a portal admin."]})
    return policy


def check_shape(kind: str, params) -> dict:
    if kind not in PARAMS_BY_KIND:
        raise InvalidInput({"kind": [f"Unknown kind {kind!r}; one of {', '.join(PARAMS_BY_KIND)}."]})
    if not isinstance(params, dict):
        raise InvalidInput({"params": ["Must be an object."]})
    serializer = PARAMS_BY_KIND[kind](data=params)
    if not serializer.is_valid():
        raise _params_error({field: [str(e) for e in errs] for field, errs in serializer.errors.items()})
    return {k: v for k, v in serializer.validated_data.items() if v not in ("", None)}


def check_vm_create(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    template = index.find("template", params["template"])
    # The catalogue lists names; the ticket may name the template by its id.
    catalogue_name = template.name if template else params["template"]
    if not CatalogueTemplate.objects.filter(connector=connector, name=catalogue_name).exists():
        errors["template"] = [f"{params['template']!r} is not in the approved template catalogue."]
    elif template is None:
        errors["template"] = [f"Template {params['template']!r} is not in the inventory."]
    if index.find("vm", params["name"]) or index.find("template", params["name"]):
        errors["name"] = [f"A VM named {params['name']!r} already exists."]
    elif (
        not recheck
        and Ticket.objects.filter(
            connector=connector, kind=TicketKind.VM_CREATE, state__in=OPEN_STATES, params__name=params["name"]
        ).exists()
    ):
        errors["name"] = [f"An open ticket already creates a VM named {params['name']!r}."]
    zone = None
    if params.get("host"):
        host = index.find("host", params["host"])
        if host is None:
            errors["host"] = [f"Host {params['host']!r} not found."]
        else:
            params["host"] = host.name
            zone = index.host_zone(host.name)
    else:
        cluster = index.find("cluster", params["cluster"])
        if cluster is None:
            errors["cluster"] = [f"Cluster {params['cluster']!r} not found."]
        else:
            params["cluster"] = cluster.name
            zone = index.cluster_zone(cluster.name)
    datastore = index.find("datastore", params["datastore"])
    if datastore is None:
        errors["datastore"] = [f"Datastore {params['datastore']!r} not found."]
    else:
        params["datastore"] = datastore.name
    network = index.find("network", params["network"])
    if network is None:
        errors["network"] = [f"Network {params['network']!r} not found."]
    else:
        params["network"] = network.name
        if zone is not None and index.network_zone(network.name) != zone:
            errors["network"] = [
                f"Network {network.name!r} is in zone {index.network_zone(network.name).label}, "
                f"but the placement is in zone {zone.label}; pick a network of that zone."
            ]
    if template is not None:
        params["template"] = template.name
    if errors:
        raise _params_error(errors)
    policy = policy_for(TicketKind.VM_CREATE, connector, zone)
    if params["cpus"] > policy.max_cpus:
        errors["cpus"] = [f"At most {policy.max_cpus} CPUs by policy."]
    if params["memory_mb"] > policy.max_memory_mb:
        errors["memory_mb"] = [f"At most {policy.max_memory_mb} MB by policy."]
    if errors:
        raise _params_error(errors)
    return Checked(params, policy, zone, policy.required_approvals)


def check_vm_migrate(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    vm = index.find("vm", params["vm"])
    if vm is None:
        errors["vm"] = [f"VM {params['vm']!r} not found."]
    host = index.find("host", params["target_host"])
    if host is None:
        errors["target_host"] = [f"Host {params['target_host']!r} not found."]
    if params.get("target_datastore"):
        datastore = index.find("datastore", params["target_datastore"])
        if datastore is None:
            errors["target_datastore"] = [f"Datastore {params['target_datastore']!r} not found."]
        else:
            params["target_datastore"] = datastore.name
    if errors:
        raise _params_error(errors)
    params["vm"], params["target_host"] = vm.name, host.name
    if (
        not recheck
        and vm.host == host.name
        and (not params.get("target_datastore") or params["target_datastore"] in vm.datastores)
    ):
        raise _params_error({"target_host": [f"{vm.name} is already on {host.name}."]})
    source, target = index.vm_zone(vm), index.host_zone(host.name)
    policy = policy_for(TicketKind.VM_MIGRATE, connector, target)
    required = policy.required_approvals
    if source != target:
        if target.trust_level < source.trust_level:
            raise _params_error(
                {
                    "target_host": [
                        f"Migration from zone {source.label} into the less trusted zone {target.label} is never allowed."
                    ]
                }
            )
        route = next(
            (
                pair
                for pair in policy.allowed_zone_pairs
                if pair.get("source") == source.name and pair.get("target") == target.name
            ),
            None,
        )
        if route is None:
            raise _params_error(
                {"target_host": [f"No policy allows migration from zone {source.label} to zone {target.label}."]}
            )
        required = max(required, int(route.get("required_approvals") or DEFAULT_CROSS_ZONE_APPROVALS))
    params["source_host"] = vm.host or ""
    return Checked(params, policy, target, required)


def check_admin_access(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    if index.find("role", params["role"]) is None:
        errors["role"] = [f"Role {params['role']!r} not found."]
    kind, entity = index.find_entity(params["entity"])
    if entity is None:
        errors["entity"] = [f"No VM, host, cluster or folder named {params['entity']!r}."]
    if errors:
        raise _params_error(errors)
    params["entity"] = entity.name
    params["entity_type"] = kind
    zone = index.entity_zone(kind, entity)
    policy = policy_for(TicketKind.ADMIN_ACCESS, connector, zone)
    if params["duration_minutes"] > policy.max_duration_minutes:
        raise _params_error({"duration_minutes": [f"At most {policy.max_duration_minutes} minutes by policy."]})
    return Checked(params, policy, zone, policy.required_approvals)


CHECKS = {
    TicketKind.VM_CREATE: check_vm_create,
    TicketKind.VM_MIGRATE: check_vm_migrate,
    TicketKind.ADMIN_ACCESS: check_admin_access,
}


def check_submission(*, kind: str, connector, params, index: InventoryIndex, recheck: bool = False) -> Checked:
    """All checks for a new ticket; `recheck` for the worker's second look
    before acting, which must not count the ticket itself as a clash."""
    return CHECKS[kind](connector, index, check_shape(kind, params), recheck)


def check_window(not_before, not_after, now) -> None:
    if not_before and not_after and not_after <= not_before:
        raise InvalidInput({"not_after": ["Must be after not_before."]})
    if not_after and not_after <= now:
        raise InvalidInput({"not_after": ["Must be in the future."]})
