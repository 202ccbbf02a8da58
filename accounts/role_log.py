"""What every path that grants or withdraws roles writes into its audit
entry: the roles the person holds afterwards, as {role name: group id}
under "role_groups". The worker believes role membership only from these
entries (approvals/services/memberships.py), so every path that sets a
person's roles — an applied configuration request, adduser and bootstrap on
the server's shell, the directory's role sync at sign-in and in the
background — adds them to the entry it already writes."""

from __future__ import annotations

from accounts.roles import Role

ROLE_GROUPS = "role_groups"

# The entries that say what roles a person holds (object: the auth.user, by
# id). Only those carrying ROLE_GROUPS speak about roles (an authenticator
# reset, say, does not).
ROLE_ACTIONS = (
    "config.user.create",
    "config.user.update",
    "config.user.deactivate",
    "config.user.reactivate",
    "config.user.created",  # adduser, bootstrap --demo: the server's shell
    "directory.roles_changed",
    "config.user.roles_attested",  # attest_roles: the server's shell adopts what the database holds
)


def role_groups(user) -> dict[str, int]:
    """The person's roles as the database holds them now, {name: group id}."""
    return dict(user.groups.filter(name__in=Role.values).values_list("name", "pk"))


def granted(user) -> dict:
    """The details an entry that set `user`'s roles carries about them."""
    return {"username": user.get_username(), ROLE_GROUPS: role_groups(user)}
