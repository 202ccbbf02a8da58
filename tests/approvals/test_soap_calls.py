"""A ticket costs the worker the same hypervisor calls whatever the size of
the estate: it reads the ticket's own objects by id, never the inventory.

The worker's execution runs here, in the test process, as a worker runs it
(the same service, from a fresh vSphere session, so the login counts too),
and every SOAP call pyVmomi sends from this process meanwhile is counted at
its stub. Not through a Celery worker: counting there needs vcsim's trace
of every request and response, whose copies of the labs' full inventory
reads (at registration and labelling) were most of this test's time.

Neither filing nor labelling is counted, and at 5,000 VMs a full read of
the inventory is slow: the ticket is filed with a live read of its own
objects by id, as the worker's re-check reads them, rather than the API's
read of the whole inventory; the large lab's zones are found by path."""

import itertools

import pytest
from pyVmomi import SoapAdapter

from approvals.inventory import InventoryIndex
from approvals.lab import LAB_ZONES
from approvals.models import Ticket, Zone
from approvals.services.connectors import connector_register
from approvals.services.execution import ticket_execute
from approvals.services.tickets import ticket_submit
from connectors import credentials
from connectors.registry import connector_for
from connectors.vsphere import drop_sessions
from tests.conftest import register_lab
from tests.fixtures.vcsim import VcsimProcess

pytestmark = pytest.mark.django_db(transaction=True)

# The ticket's objects by inventory path: a dev VM, its new host, datastore
# and network in prod (a move between zones: every check has work to do).
PATHS = {
    "vm": "lab/vm/dev-vms/dev-app-01",
    "host": "lab/host/prod/prod-esx-02",
    "datastore": "lab/datastore/ds-prod",
    "network": "lab/network/pg-dev",
    "new_network": "lab/network/pg-prod",
}
FIELDS = ("clusters", "hosts", "datastores", "networks")


def by_path(lab, paths: dict) -> dict:
    """{key: managed-object id} of {key: inventory path}, found by the lab's
    search index (a look-up each, on a session of the test's own)."""
    si = lab.connect()
    try:
        search = si.RetrieveContent().searchIndex
        found = {key: search.FindByInventoryPath(path) for key, path in paths.items()}
    finally:
        si.content.sessionManager.Logout()
    assert all(found.values()), found
    return {key: obj._moId for key, obj in found.items()}


def register_large_lab(lab, name):
    """As register_lab, but the zones' objects found by path: its labelling
    reads the whole inventory to resolve their names, a second full read
    after the registration's drift baseline. The policies are the ones the
    small lab's labelling created."""
    connector = connector_register(
        name=name,
        url=lab.url,
        username=lab.username,
        sealed_password=credentials.seal(lab.password),
        verify_tls=False,
    )
    paths = {}
    for zone, _trust, clusters, hosts, datastores, networks in LAB_ZONES:
        paths |= {(zone, "clusters", c): f"lab/host/{c}" for c in clusters}
        paths |= {(zone, "hosts", h): f"lab/host/{h}/{h}" for h in hosts}  # a standalone host's own compute resource
        paths |= {(zone, "datastores", d): f"lab/datastore/{d}" for d in datastores}
        paths |= {(zone, "networks", n): f"lab/network/{n}" for n in networks}
    ids = by_path(lab, paths)
    for zone, trust, *_ in LAB_ZONES:
        Zone.objects.create(
            connector=connector,
            name=zone,
            trust_level=trust,
            **{field: [moid for (z, f, _n), moid in ids.items() if (z, f) == (zone, field)] for field in FIELDS},
        )
    return connector


class SoapCalls:
    """Records the method of every SOAP call this process sends while on."""

    def __init__(self):
        self.methods: list[str] = []
        self._invoke = SoapAdapter.SoapStubAdapter.InvokeMethod

    def __enter__(self) -> "SoapCalls":
        invoke, methods = self._invoke, self.methods

        def counted(stub, mo, info, args, outerStub=None):  # noqa: N803 - pyVmomi's own name
            methods.append(info.wsdlName)
            return invoke(stub, mo, info, args, outerStub)

        SoapAdapter.SoapStubAdapter.InvokeMethod = counted
        return self

    def __exit__(self, *exc_info) -> None:
        SoapAdapter.SoapStubAdapter.InvokeMethod = self._invoke


def worker_calls(api, requester, approver, approver2, vms: int, *, register=register_lab) -> list[str]:
    lab = VcsimProcess(vms=vms).start()
    try:
        connector = register(lab, name=f"lab-{vms}")
        ids = by_path(lab, PATHS)
        backend = connector_for(connector.kind, connector.connection_config())
        objects = backend.read_objects({moid: kind.removeprefix("new_") for kind, moid in ids.items()})
        live = InventoryIndex(objects, list(Zone.objects.filter(connector=connector)))
        ticket = ticket_submit(
            requester=requester,
            kind="vm_migrate",
            connector=connector,
            justification="counting the worker's calls",
            params={
                "vm": ids["vm"],
                "target_host": ids["host"],
                "target_datastore": ids["datastore"],
                "network_map": {ids["network"]: ids["new_network"]},
            },
            index=live,
        )
        for person in (approver, approver2):
            assert api(person).post(f"/api/tickets/{ticket.pk}/approve/", {}, format="json").status_code == 200
        drop_sessions()  # a worker's first ticket: it logs in
        with SoapCalls() as calls:
            outcome = ticket_execute(ticket_id=ticket.pk, worker="test:soap-calls")
        done = Ticket.objects.get(pk=ticket.pk)
        assert outcome == "succeeded" and done.state == "succeeded", (outcome, done.error)
        return calls.methods
    finally:
        drop_sessions()
        lab.close()


def test_the_worker_makes_the_same_calls_at_100_and_at_5000_vms(api, requester, approver, approver2, roles):
    small = worker_calls(api, requester, approver, approver2, 100)
    large = worker_calls(api, requester, approver, approver2, 5000, register=register_large_lab)
    assert "Login" in small and "RelocateVM_Task" in small
    # One retrieve reads the ticket's objects; no view over the estate.
    assert "CreateContainerView" not in small
    # The same calls in the same order. Only how often the worker looks at
    # the hypervisor's task may differ by a look or two (whether the first
    # look comes before vcsim has finished it): any read that grew with the
    # estate would add thousands.
    assert collapsed(small) == collapsed(large), (small, large)
    assert abs(len(small) - len(large)) <= 2, (small, large)


def collapsed(methods: list[str]) -> list[str]:
    """The calls with each run of one method counted once."""
    return [method for method, _run in itertools.groupby(methods)]
