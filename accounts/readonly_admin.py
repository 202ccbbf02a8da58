"""The Django admin only shows. Every change to who may act or to the rules is
a configuration request that a second portal admin approves, so no admin page
adds, changes or deletes anything, for anyone, superusers included."""

from django.contrib import admin

CHANGES_ARE_REQUESTS = "Changes are made as configuration requests in the portal: /config/"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists, searches, filters and shows; refuses add, change and delete
    (the admin answers 403 to such a request, and offers no button for it)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def read_only(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """`admin_class` (a third party's) made read-only, keeping its lists and filters."""
    return type(f"ReadOnly{admin_class.__name__}", (ReadOnlyAdmin, admin_class), {})
