import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.services import token_issue
from approvals.lab import label_lab
from approvals.roles import ensure_roles
from approvals.services.connectors import connector_register
from connectors import credentials
from tests.factories import UserFactory

pytest_plugins = ["tests.fixtures.vcsim", "tests.fixtures.workers"]


@pytest.fixture(scope="session", autouse=True)
def _audit_log_flushable():
    """The audit log's triggers refuse TRUNCATE, and transactional tests end
    with a flush that truncates every table. Only inside the flush's own
    transaction are the log's triggers off (ALTER TABLE needs the table's
    owner, which the test role is)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    flush = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        off = ["ALTER TABLE audit_auditentry DISABLE TRIGGER USER"]
        on = ["ALTER TABLE audit_auditentry ENABLE TRIGGER USER"]
        return flush(self, [*off, *sql_list, *on])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield


def pytest_configure(config):
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["tests.hashers.QuickPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture(autouse=True)
def _clean_cache():
    # Rate limits, answers and sessions in Redis: each test starts clean.
    cache.clear()
    yield


@pytest.fixture
def roles(db):
    return ensure_roles()


def _make(role_list, **kwargs):
    return UserFactory(roles=role_list, **kwargs)


@pytest.fixture
def requester(roles):
    return _make(["requester"], username="alice")


@pytest.fixture
def requester2(roles):
    return _make(["requester"], username="dave")


@pytest.fixture
def approver(roles):
    return _make(["approver"], username="bob")


@pytest.fixture
def approver2(roles):
    return _make(["approver"], username="carol")


@pytest.fixture
def auditor(roles):
    return _make(["auditor"], username="erin")


@pytest.fixture
def portal_admin(roles):
    return _make(["portal_admin"], username="pat", is_staff=True)


@pytest.fixture
def portal_admin2(roles):
    """A second portal admin, to approve the first one's configuration requests."""
    return _make(["portal_admin"], username="quinn", is_staff=True)


@pytest.fixture
def api():
    """A client factory: api(user) gives a client authenticated by token."""
    keys = {}

    def client_for(user=None):
        client = APIClient()
        if user is not None:
            if user.pk not in keys:
                keys[user.pk] = token_issue(user=user, actor_name="test")
            client.credentials(HTTP_AUTHORIZATION=f"Token {keys[user.pk]}")
        return client

    return client_for


def register_lab(vcsim_process, name="lab"):
    """A vcsim lab registered as a connector with the demo zones, policies and
    catalogue, as `bootstrap --demo` sets them up."""
    connector = connector_register(
        name=name,
        url=vcsim_process.url,
        username=vcsim_process.username,
        sealed_password=credentials.seal(vcsim_process.password),
        verify_tls=False,
    )
    label_lab(connector)
    return connector


@pytest.fixture
def lab(db, vcsim, roles):
    """The session's shared vcsim lab: for tests that do not change it."""
    return register_lab(vcsim)


@pytest.fixture
def own_lab(db, fresh_vcsim, roles):
    """A vcsim lab of this test's own, for tests that change the inventory."""
    return register_lab(fresh_vcsim)
