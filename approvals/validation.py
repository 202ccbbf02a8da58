"""Submission checks against the connector's inventory, the zones and the
policies. Every object a ticket names is resolved to exactly one identity
(approvals.inventory.index); the checked parameters carry managed-object ids,
and `objects` records each object's type, id, name, path (and a VM's
instance UUID) as approvers saw it. The worker runs the same checks again on
the stored ids before acting."""

from __future__ import annotations

from dataclasses import dataclass

from approvals.choices import TicketKind, TicketState
from approvals.errors import InvalidInput
from approvals.inventory import InventoryIndex, ZoneLabel, looks_like_moid
from approvals.models import CatalogueTemplate, Policy, Ticket
from approvals.params import PARAMS_BY_KIND

OPEN_STATES = (TicketState.PENDING, TicketState.APPROVED, TicketState.RUNNING)
DEFAULT_CROSS_ZONE_APPROVALS = 2
# What a permission may be granted on, and which of those are top-level
# (allowed only where the policy names them).
ENTITY_KINDS = ("vm", "host", "cluster", "folder", "resource_pool", "datacenter", "root")
TOP_LEVEL_KINDS = ("datacenter", "root")
# Parameters the checks add; the worker's re-check starts from the rest.
DERIVED_PARAMS = ("objects", "source_host", "entity_type")


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


def _zone_words(index: InventoryIndex, what: str, obj, zone: ZoneLabel, want: ZoneLabel) -> str:
    return f"{what} {obj.name} ({obj.id}) is in zone {zone.label}, but the placement is in zone {want.label}."


def check_vm_create(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    objects: dict = {}
    name = params["name"]
    if looks_like_moid(name):
        errors["name"] = [f"{name!r} has the form of a managed-object id; choose another name."]
    elif index.named("vm", name) or index.named("template", name):
        errors["name"] = [f"A VM named {name!r} already exists."]
    elif (
        not recheck
        and Ticket.objects.filter(
            connector=connector, kind=TicketKind.VM_CREATE, state__in=OPEN_STATES, params__name=name
        ).exists()
    ):
        errors["name"] = [f"An open ticket already creates a VM named {name!r}."]
    template = None
    found = index.resolve_field(errors, "template", ("template",), params["template"])
    if found:
        template = found[1]
        vetted = CatalogueTemplate.objects.filter(connector=connector, name=template.name).first()
        if vetted is None or (vetted.template_id and vetted.template_id != template.id):
            errors["template"] = [f"{template.name} ({template.path}) is not in the approved template catalogue."]
        else:
            params["template"], objects["template"] = template.id, index.ref("template", template)
    zone = None
    field = "host" if params.get("host") else "cluster"
    found = index.resolve_field(errors, field, (field,), params[field])
    if found:
        params[field], objects[field] = found[1].id, index.ref(*found)
        zone = index.placement_zone(*found)
    found = index.resolve_field(errors, "datastore", ("datastore",), params["datastore"])
    if found:
        datastore = found[1]
        params["datastore"], objects["datastore"] = datastore.id, index.ref(*found)
        if zone is not None and index.datastore_zone(datastore.id) != zone:
            errors["datastore"] = [_zone_words(index, "Datastore", datastore, index.datastore_zone(datastore.id), zone)]
    networks = []
    for value in params.get("networks") or []:
        found = index.resolve_field(errors, "networks", ("network",), value)
        if found:
            networks.append(found[1])
    cards = len(template.nics) if template is not None else None
    if cards is not None and not errors.get("networks"):
        if cards == 0 and networks:
            errors["networks"] = [f"{template.name} has no network card; give no networks."]
        elif cards and not networks:
            errors["networks"] = [
                f"{template.name} has {cards} network card(s): give a network for each, or one for all."
            ]
        elif cards and len(networks) not in (1, cards):
            errors["networks"] = [
                f"{template.name} has {cards} network cards; give {cards} networks (one per card, in order) or one for all."
            ]
        else:
            networks = networks * cards if len(networks) == 1 else networks
            for nic, network in zip(template.nics, networks, strict=True):
                if zone is not None and index.network_zone(network.id) != zone:
                    errors.setdefault("networks", []).append(
                        f"{nic.label}: " + _zone_words(index, "network", network, index.network_zone(network.id), zone)
                    )
    params.pop("network", None)
    params["networks"] = [n.id for n in networks]
    objects["networks"] = [index.ref("network", n) for n in networks]
    if errors:
        raise _params_error(errors)
    policy = policy_for(TicketKind.VM_CREATE, connector, zone)
    if params["cpus"] > policy.max_cpus:
        errors["cpus"] = [f"At most {policy.max_cpus} CPUs by policy."]
    if params["memory_mb"] > policy.max_memory_mb:
        errors["memory_mb"] = [f"At most {policy.max_memory_mb} MB by policy."]
    if errors:
        raise _params_error(errors)
    params["objects"] = objects
    return Checked(params, policy, zone, policy.required_approvals)


def _cards_after(vm, network_map: dict[str, str]) -> list[tuple]:
    """(card, network id after the move) for each of the VM's cards."""
    return [(nic, network_map.get(nic.network_id, nic.network_id)) for nic in vm.nics]


def check_vm_migrate(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    objects: dict = {}
    vm = host = datastore = None
    found = index.resolve_field(errors, "vm", ("vm",), params["vm"])
    if found:
        vm = found[1]
        objects["vm"] = index.ref(*found)
    found = index.resolve_field(errors, "target_host", ("host",), params["target_host"])
    if found:
        host = found[1]
        objects["target_host"] = index.ref(*found)
    if params.get("target_datastore"):
        found = index.resolve_field(errors, "target_datastore", ("datastore",), params["target_datastore"])
        if found:
            datastore = found[1]
            objects["target_datastore"] = index.ref(*found)
    network_map: dict[str, str] = {}
    mapped = []
    for current, new in (params.get("network_map") or {}).items():
        old = index.resolve_field(errors, "network_map", ("network",), current)
        to = index.resolve_field(errors, "network_map", ("network",), new)
        if old and to:
            if vm is not None and old[1].id not in {nic.network_id for nic in vm.nics}:
                errors.setdefault("network_map", []).append(f"{vm.name} has no card on {old[1].name} ({old[1].id}).")
            network_map[old[1].id] = to[1].id
            mapped.append({"from": index.ref(*old), "to": index.ref(*to)})
    if errors:
        raise _params_error(errors)
    params["vm"], params["target_host"] = vm.id, host.id
    if datastore is not None:
        params["target_datastore"] = datastore.id
    if network_map:
        params["network_map"] = network_map
        objects["network_map"] = mapped
    else:
        params.pop("network_map", None)
    source, target = index.vm_zone(vm), index.host_zone(host.id)
    moves_storage = datastore is not None and datastore.id not in vm.datastore_ids
    if not recheck and vm.host_id == host.id and not moves_storage and not network_map:
        raise _params_error({"target_host": [f"{vm.name} is already on {host.name}."]})
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
    # Storage and every card must end up in the target zone.
    disks = [datastore.id] if datastore is not None else list(vm.datastore_ids)
    for datastore_id in disks:
        zone = index.datastore_zone(datastore_id)
        if zone != target:
            ds = index.get(datastore_id)
            name = ds.name if ds is not None else datastore_id
            errors.setdefault("target_datastore", []).append(
                f"Datastore {name} ({datastore_id}) is in zone {zone.label}; the VM's disks must be in zone "
                f"{target.label} after the move{'' if datastore else ' (give a target_datastore there)'}."
            )
    for nic, network_id in _cards_after(vm, network_map):
        zone = index.network_zone(network_id)
        if zone != target:
            net = index.get(network_id)
            name = net.name if net is not None else network_id
            errors.setdefault("network_map", []).append(
                f"{nic.label} would be on {name} ({network_id}), zone {zone.label}; map it to a network of zone "
                f"{target.label}."
            )
    if errors:
        raise _params_error(errors)
    params["source_host"] = vm.host_id or ""
    source_host = index.get(vm.host_id, ("host",))
    if source_host is not None:
        objects["source_host"] = index.ref("host", source_host)
    params["objects"] = objects
    return Checked(params, policy, target, required)


def check_admin_access(connector, index: InventoryIndex, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    found = index.resolve_field(errors, "entity", ENTITY_KINDS, params["entity"])
    if params["role"] not in index.roles:
        errors["role"] = [f"Role {params['role']!r} not found."]
    if errors:
        raise _params_error(errors)
    kind, entity = found
    zone = index.entity_zone(kind, entity)
    policy = policy_for(TicketKind.ADMIN_ACCESS, connector, zone)
    if kind in TOP_LEVEL_KINDS and entity.id not in (policy.top_level_entities or []):
        errors["entity"] = [
            f"{entity.name} ({entity.id}) is the {'root folder' if kind == 'root' else 'datacenter'}: access there "
            "reaches everything beneath it, and the policy does not name it."
        ]
    if params["role"] not in (policy.grantable_roles or []):
        allowed = ", ".join(policy.grantable_roles or []) or "none"
        errors["role"] = [f"The policy does not grant {params['role']!r}; it grants: {allowed}."]
    if params["duration_minutes"] > policy.max_duration_minutes:
        errors["duration_minutes"] = [f"At most {policy.max_duration_minutes} minutes by policy."]
    if errors:
        raise _params_error(errors)
    params["entity"] = entity.id
    params["entity_type"] = kind
    params["objects"] = {"entity": index.ref(kind, entity)}
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
