"""Schemathesis against /api/schema/, with a real token for each role: no
response is a server error and every response matches the schema, over a few
hundred generated cases per role."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from accounts.services import token_issue
from approvals.services import ticket_submit
from portal.wsgi import application
from tests.approvals.helpers import VM_CREATE

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
OPERATIONS = [result.ok() for result in schema.get_all_operations()]
CASES_PER_OPERATION = 12
ROLES = ["requester", "approver", "auditor", "portal_admin"]


@pytest.fixture
def wsgi_in_test_transaction():
    """Calls go through the real WSGI application; like Django's test client,
    keep the test's database connection open across them."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(lab, requester, approver, auditor, portal_admin):
    users = {"requester": requester, "approver": approver, "auditor": auditor, "portal_admin": portal_admin}
    keys = {role: token_issue(user=user, actor_name="test") for role, user in users.items()}
    # Something to find: a ticket of the requester's.
    ticket_submit(requester=requester, kind="vm_create", connector=lab, justification="fuzz", params=dict(VM_CREATE))
    return keys


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_api_conforms_to_its_schema(role, tokens, wsgi_in_test_transaction):
    assert len(OPERATIONS) >= 25
    calls = []
    for operation in OPERATIONS:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=CASES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def exercise(case):
            calls.append(case.operation.label)
            # The issue's two properties: never a server error, and every
            # response of a documented status shaped as the schema says.
            case.call_and_validate(
                headers={"Authorization": f"Token {tokens[role]}"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        exercise()
    assert len(calls) >= 200, f"only {len(calls)} cases generated for {role}"
