"""A ticket costs the worker the same hypervisor calls whatever the size of
the estate: it reads the ticket's own objects by id, never the inventory.

Counted from vcsim's own trace (-trace: every SOAP request as the server
received it). A relay would have to break TLS to see requests, which the
connector's certificate pin rightly refuses; the trace sees every request,
from whichever client. The worker is the only client talking to the lab
between the last approval and the ticket's end (approving reads nothing
from the hypervisor), so what is counted there is the worker's."""

import re

import pytest

from tests.approvals.helpers import DEV_TO_PROD, file_ticket, wait_for
from tests.conftest import register_lab
from tests.fixtures.vcsim import VcsimProcess

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

METHOD = re.compile(r"^Request: .*?<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)", re.MULTILINE | re.DOTALL)


def requests_in(trace: str) -> list[str]:
    """The SOAP method of each request in vcsim's trace, in order."""
    return [m.group(1) for m in METHOD.finditer(trace)]


def worker_calls(api, requester, approver, approver2, vms: int) -> list[str]:
    with VcsimProcess(vms=vms, trace=True) as lab:
        connector = register_lab(lab, name=f"lab-{vms}")
        ticket = file_ticket(api(requester), connector, "vm_migrate", {**DEV_TO_PROD, "target_host": "prod-esx-02"})
        assert api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
        before = len(lab.stderr_text)
        assert api(approver2).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
        done = wait_for(ticket["id"], "succeeded", "failed")
        assert done.state == "succeeded", done.error
        return requests_in(lab.stderr_text[before:])


def test_the_worker_makes_the_same_calls_at_100_and_at_5000_vms(api, requester, approver, approver2, workers, roles):
    workers(1)
    small = worker_calls(api, requester, approver, approver2, 100)
    large = worker_calls(api, requester, approver, approver2, 5000)
    assert "RelocateVM_Task" in small
    # One retrieve reads the ticket's objects; no view over the estate.
    assert "CreateContainerView" not in small
    assert small == large, (small, large)
