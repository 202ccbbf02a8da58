"""What the sign-in pages say about the directory, and the break-glass mark
a session carries (read by the banner on every page, no query)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages

from accounts.directory import directory_configured, ldap_configured, oidc_configured

BREAK_GLASS_SESSION_KEY = "twokey_break_glass"

PROBLEMS = {
    "unreachable": "The directory cannot be reached just now, so directory accounts cannot sign in. "
    "Break-glass accounts still can.",
    "error": "The directory did not answer the portal's search, so directory accounts cannot sign in just now. "
    "Break-glass accounts still can.",
}


def sign_in_context(request) -> dict:
    problem = getattr(request, "twokey_directory_problem", "")
    outcome = getattr(request, "twokey_directory_outcome", None)
    refusal = outcome.problem if outcome is not None and outcome.user is None else ""
    return {
        "directory_configured": directory_configured(),
        "ldap_enabled": ldap_configured(),
        "oidc_enabled": oidc_configured(),
        "oidc_provider_name": getattr(settings, "TWOKEY_OIDC_PROVIDER_NAME", ""),
        "directory_problem": PROBLEMS.get(problem, "") or (f"You cannot sign in: {refusal}." if refusal else ""),
    }


def say_outcome(request, outcome) -> None:
    """After a directory sign-in: say what the directory gave, when it is
    less than a role."""
    if outcome is None:
        return
    if outcome.refused_roles:
        messages.error(
            request,
            f"Your directory groups map you to {', '.join(outcome.refused_roles)}, which one person may not hold "
            f"together ({outcome.refusal}), so none of them was granted. Ask your directory's owners to fix your groups.",
        )
    if outcome.warning:
        messages.warning(request, outcome.warning)
    if not outcome.roles:
        messages.warning(
            request,
            "You are signed in, but your directory groups give you no role in TwoKey, so there is nothing you "
            "can do here yet. Ask to be added to a group that maps to a role.",
        )


def after_local_sign_in(request) -> None:
    """Mark a break-glass session, so every page shows the banner."""
    if getattr(request, "twokey_break_glass", False):
        request.session[BREAK_GLASS_SESSION_KEY] = True
        messages.warning(
            request, "You signed in with a break-glass account. This sign-in is in the audit log; sign out when done."
        )
    else:
        say_outcome(request, getattr(request, "twokey_directory_outcome", None))
