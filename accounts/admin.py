"""Accounts in the Django admin, read-only: users, role groups, API tokens,
authenticators and sign-in records. Users and roles change through
configuration requests; a token is issued with `manage.py apitoken` and can be
revoked here (revoking only takes access away)."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken
from accounts.readonly_admin import ReadOnlyAdmin, read_only
from accounts.services import token_revoke

User = get_user_model()
# Never shown, never filtered or searched on: the hash would leak through a
# lookup (`?password__startswith=`), and superuser status and per-user
# permissions are not how TwoKey grants anything.
HIDDEN_USER_FIELDS = ("password", "is_superuser", "user_permissions")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "user__username"]
    fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token_id=token.pk, actor=request.user)
        messages.success(request, f"Revoked {queryset.count()} token(s).")


class UserAdmin(ReadOnlyAdmin):
    list_display = ["username", "email", "first_name", "last_name", "roles", "is_active", "is_staff", "last_login"]
    list_filter = ["is_active", "is_staff", "groups"]
    search_fields = ["username", "first_name", "last_name", "email"]
    ordering = ["username"]
    fields = [
        "username",
        "first_name",
        "last_name",
        "email",
        "is_active",
        "is_staff",
        "groups",
        "last_login",
        "date_joined",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, user):
        return ", ".join(sorted(group.name for group in user.groups.all()))

    def lookup_allowed(self, lookup, value, request=None):
        if lookup.split("__")[0] in HIDDEN_USER_FIELDS:
            return False
        return super().lookup_allowed(lookup, value, request)


class GroupAdmin(ReadOnlyAdmin):
    list_display = ["name", "member_count"]
    search_fields = ["name"]
    ordering = ["name"]
    fields = ["name", "members"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("user"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, group):
        return group.member_count

    @admin.display(description="members")
    def members(self, group):
        return ", ".join(group.user_set.order_by("username").values_list("username", flat=True)) or "—"

    def get_readonly_fields(self, request, obj=None):
        return ["members"]


class TOTPDeviceAdmin(ReadOnlyAdmin):
    """Which authenticators exist; never their key or QR code."""

    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed"]
    search_fields = ["user__username", "name"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


for model, model_admin in ((User, UserAdmin), (Group, GroupAdmin), (TOTPDevice, TOTPDeviceAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)


def _read_only_sign_in_records():
    """django-axes' records of sign-in attempts stay readable; deleting one
    would erase evidence or lift a lockout by one person's hand."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        if admin.site.is_registered(model):
            original = type(admin.site.get_model_admin(model))
            admin.site.unregister(model)
            admin.site.register(model, read_only(original))


_read_only_sign_in_records()
