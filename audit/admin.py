"""Changes made in the Django admin to users and their roles are audited like
any other configuration change (explicitly, not by signals). API tokens are
issued and revoked through accounts.services, which audit them."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from audit.writer import record

User = get_user_model()
WATCHED_FLAGS = ("is_active", "is_staff", "is_superuser")


class AuditedUserAdmin(UserAdmin):
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            record("config.user.created", actor=request.user, obj=obj, details={"username": obj.get_username()})
            return
        flags = {
            name: {"from": form.initial.get(name), "to": getattr(obj, name)}
            for name in WATCHED_FLAGS
            if name in form.changed_data
        }
        if flags:
            record(
                "config.user.updated",
                actor=request.user,
                obj=obj,
                details={"username": obj.get_username(), "changes": flags},
            )

    def save_related(self, request, form, formsets, change):
        # The form's initial groups are the roles before this save.
        before = {group.name for group in form.initial.get("groups", [])} if change else set()
        super().save_related(request, form, formsets, change)
        after = set(form.instance.groups.values_list("name", flat=True))
        if before != after:
            record(
                "config.user.roles_changed",
                actor=request.user,
                obj=form.instance,
                details={
                    "username": form.instance.get_username(),
                    "added": sorted(after - before),
                    "removed": sorted(before - after),
                    "roles": sorted(after),
                },
            )

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            record(
                "auth.password_changed",
                actor=request.user,
                object_type="auth.user",
                object_id=str(id),
                details={"via": "admin"},
            )
        return response


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
