"""The database refuses a portal admin who is also an approver or a
requester, however the row is written."""

import pytest
from django.db import IntegrityError, connection, transaction

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def add_role(user, group):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)", [user.pk, group.pk])


def roles_of(user):
    return set(user.groups.values_list("name", flat=True))


@pytest.mark.parametrize("other", ["approver", "requester"])
def test_portal_admin_cannot_also_hold_approver_or_requester(roles, other):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    admin = UserFactory(username="pat", roles=["portal_admin"])
    with pytest.raises(IntegrityError, match="cannot hold portal_admin together with approver or requester"):
        with transaction.atomic():
            add_role(admin, roles[other])
    assert roles_of(admin) == {"portal_admin"}
    with pytest.raises(IntegrityError, match="role conflict"), transaction.atomic():
        admin.groups.add(roles[other])  # the ORM writes the same row
    assert roles_of(admin) == {"portal_admin"}
    # The other way round too: an approver or requester cannot become a portal admin.
    holder = UserFactory(username="olga", roles=[other])
    with pytest.raises(IntegrityError, match="role conflict"):
        with transaction.atomic():
            add_role(holder, roles["portal_admin"])
    assert roles_of(holder) == {other}


def test_moving_a_membership_row_onto_a_forbidden_pair_is_refused(roles):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    admin = UserFactory(username="pat", roles=["portal_admin"])
    other = UserFactory(username="bob", roles=["approver"])
    with pytest.raises(IntegrityError, match="role conflict"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE auth_user_groups SET user_id = %s WHERE user_id = %s AND group_id = %s",
                [admin.pk, other.pk, roles["approver"].pk],
            )
    assert roles_of(admin) == {"portal_admin"} and roles_of(other) == {"approver"}


def test_allowed_combinations_are_accepted(roles):
    both = UserFactory(username="ruth", roles=["requester", "approver"])
    add_role(both, roles["auditor"])
    admin = UserFactory(username="pat", roles=["portal_admin"])
    add_role(admin, roles["auditor"])
    assert roles_of(both) == {"requester", "approver", "auditor"}
    assert roles_of(admin) == {"portal_admin", "auditor"}
