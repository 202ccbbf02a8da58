"""The people a shell command acts on: `--user NAME` (repeatable) or `--all`."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def add_arguments(parser, *, one: str, every: str) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", dest="usernames", help=one)
    who.add_argument("--all", action="store_true", help=every)


def chosen(usernames: list[str] | None):
    """Everyone, by username, or the ones named; CommandError for a name
    nobody has."""
    users = get_user_model().objects.order_by("username")
    if usernames:
        users = users.filter(username__in=usernames)
        missing = sorted(set(usernames) - set(users.values_list("username", flat=True)))
        if missing:
            raise CommandError(f"No such user: {', '.join(missing)}.")
    return users
