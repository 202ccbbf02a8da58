"""The configuration pages: what is configured now, and forms that file
configuration requests. Nothing here changes configuration directly."""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from approvals import permissions
from approvals.choices import Role
from approvals.config import TARGETS
from approvals.config.base import CREATE, UPDATE
from approvals.config_forms import FORMS, ActionForm
from approvals.errors import InvalidInput, InventoryUnavailable
from approvals.models import CatalogueTemplate, ChatHook, FreezeWindow, Policy, Zone
from approvals.services.config_requests import config_request_file
from connectors.models import Connector


def _sees_people(user) -> bool:
    return permissions.can_manage_configuration(user) or permissions.has_role(user, Role.AUDITOR)


@login_required
def config_overview(request):
    user = request.user
    if not permissions.can_read_configuration(user):
        raise PermissionDenied("Only people with a role read the configuration.")
    users = None
    if _sees_people(user):
        users = get_user_model().objects.prefetch_related("groups").select_related("account_state").order_by("username")
    context = {
        "may_request": permissions.can_manage_configuration(user),
        "users": users,
        "roles": set(Role.values),
        "policies": Policy.objects.select_related("zone", "approver_group"),
        "zones": Zone.objects.select_related("connector"),
        "templates": CatalogueTemplate.objects.select_related("connector"),
        "connectors": Connector.objects.all(),
        "freezes": FreezeWindow.objects.select_related("connector"),
        "chat_hooks": ChatHook.objects.select_related("policy__zone", "zone__connector"),
    }
    return render(request, "approvals/config.html", context)


def _target(name: str):
    if name not in TARGETS:
        raise Http404("No such configuration object.")
    return TARGETS[name]


def _initial(form_class, before: dict) -> dict:
    """The object's current values as the form's text fields show them."""
    initial = {}
    fields = form_class.base_fields
    for name, value in before.items():
        field = fields.get(name)
        if isinstance(value, list) and type(field) is forms.CharField:
            if value and isinstance(value[0], dict):
                value = json.dumps(value)
            else:
                value = ", ".join(map(str, value))
        elif isinstance(value, dict) and type(field) is forms.CharField:
            value = json.dumps(value) if value else ""
        initial[name] = value
    return initial


@login_required
def config_request(request, target: str, pk: int | None = None, action: str = CREATE):
    """File a request to create (no pk), change (action update) or otherwise
    act on (delete, deactivate, …) one object."""
    if not permissions.can_manage_configuration(request.user):
        raise PermissionDenied("Only portal admins file configuration requests.")
    config = _target(target)
    if action not in config.actions:
        raise Http404("No such action.")
    instance = None
    if action != CREATE:
        try:
            instance = config.get(pk)
        except InvalidInput as exc:
            raise Http404("No such object.") from exc
    before = config.snapshot(instance) if instance is not None else {}
    with_fields = action in (CREATE, UPDATE)
    form_class = FORMS[target] if with_fields else ActionForm
    kwargs = {"creating": action == CREATE} if with_fields else {}
    form = form_class(request.POST or None, initial=_initial(form_class, before), **kwargs)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = form.changes() if with_fields else {}
            try:
                ticket = config_request_file(
                    requester=request.user,
                    target=target,
                    action=action,
                    object_id=pk,
                    changes=changes,
                    justification=form.cleaned_data["justification"],
                )
            except InvalidInput as exc:
                if with_fields:
                    form.add_service_errors(exc.errors)
                else:
                    form.add_error(None, [str(v) for v in exc.errors.values()])
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except InventoryUnavailable as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"{ticket.ref} filed. It takes effect once another portal admin approves it.")
                return redirect("ticket", ticket.pk)
        status = 400
    context = {
        "config": config,
        "action": action,
        "instance": instance,
        "label": config.label(before) if before else "",
        "form": form,
    }
    return render(request, "approvals/config_request.html", context, status=status)
