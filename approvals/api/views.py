import django_filters
from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts import otp, passkeys
from approvals import permissions as rules
from approvals import selectors, services
from approvals.api import serializers as s
from approvals.choices import Role
from approvals.inventory import StoredIndex, listing
from approvals.models import CatalogueTemplate, ChatHook, FreezeWindow, Policy, Ticket, Zone
from approvals.services import emergencies, passkey_approvals
from approvals.services.config_requests import config_request_file
from connectors.models import Connector
from portal.filters import UTCIsoDateTimeFilter


class ConfigurationPermission(permissions.BasePermission):
    """Anyone with a role reads the configuration; portal admins file
    requests to change it (the service has the last word)."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return rules.can_read_configuration(request.user)
        return rules.can_manage_configuration(request.user)


class ConfigurationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Reads are plain; every write files a configuration request and
    answers 202 with it. The change happens once another portal admin
    approves the request and the worker applies it."""

    permission_classes = [ConfigurationPermission]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    target: str

    def _file(self, request, *, action: str, object_id=None, changes=None):
        data = dict(changes if changes is not None else request.data)
        justification = data.pop("justification", "")
        ticket = config_request_file(
            requester=request.user,
            target=self.target,
            action=action,
            object_id=object_id,
            changes=data,
            justification=justification if isinstance(justification, str) else "",
        )
        ticket = selectors.with_decisions(Ticket.objects.all()).get(pk=ticket.pk)
        body = s.TicketDetailSerializer(ticket, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/tickets/{ticket.pk}/"})

    @extend_schema(request=s.ConfigRequestBody, responses={202: s.TicketDetailSerializer})
    def create(self, request):
        return self._file(request, action="create")

    @extend_schema(request=s.ConfigRequestBody, responses={202: s.TicketDetailSerializer})
    def partial_update(self, request, pk=None):
        return self._file(request, action="update", object_id=self.get_object().pk)

    @extend_schema(request=s.JustificationSerializer, responses={202: s.TicketDetailSerializer})
    def destroy(self, request, pk=None):
        return self._file(request, action="delete", object_id=self.get_object().pk, changes=dict(request.data))


class ConnectorViewSet(ConfigurationViewSet):
    queryset = Connector.objects.all()
    serializer_class = s.ConnectorSerializer
    target = "connector"

    @extend_schema(
        parameters=[
            OpenApiParameter("refresh", bool, description="Read the whole hypervisor into the table first."),
            OpenApiParameter("type", str, enum=list(listing.TYPES), description="Only objects of this type."),
            OpenApiParameter(
                "q", str, description="Names containing this (any case); starting with /, paths beginning so."
            ),
            OpenApiParameter("zone", str, description="Only objects in this zone (a zone's name, or untrusted)."),
            OpenApiParameter("page", int, description="Which page (from 1) of INVENTORY_PAGE_SIZE objects."),
        ],
        responses={200: dict},
        description="One page of the stored inventory grouped by type (datacenters, folders, clusters, hosts, "
        "resource_pools, datastore_clusters, datastores, networks, vms, templates in the catalogue), each object "
        "with its zone; `inventory` says as of when, and warns when the sync is behind or the hypervisor "
        "unreachable; `count`, `page`, `pages`, `page_size` page it.",
    )
    @action(detail=True, methods=["get"])
    def inventory(self, request, pk=None):
        connector = self.get_object()
        asked = s.InventoryQuerySerializer(data=request.query_params)
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        index = StoredIndex.for_connector(connector, refresh=data["refresh"])
        catalogue = set(CatalogueTemplate.objects.filter(connector=connector).values_list("template_id", flat=True))
        query = listing.InventoryQuery(type=data["type"], q=data["q"], zone=data["zone"], page=data["page"])
        return Response(listing.inventory_page(index=index, query=query, catalogue=catalogue))


class ZoneViewSet(ConfigurationViewSet):
    queryset = Zone.objects.select_related("connector")
    serializer_class = s.ZoneSerializer
    filterset_fields = ["connector"]
    target = "zone"


class CatalogueTemplateViewSet(ConfigurationViewSet):
    queryset = CatalogueTemplate.objects.select_related("connector")
    serializer_class = s.CatalogueTemplateSerializer
    filterset_fields = ["connector"]
    target = "template"

    @extend_schema(request=s.ConfigRequestBody, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def revet(self, request, pk=None):
        """Vet the template again: the worker takes a fresh fingerprint when
        it applies the approved request (optionally with a new vetted_until)."""
        return self._file(request, action="revet", object_id=self.get_object().pk)


class PolicyViewSet(ConfigurationViewSet):
    queryset = Policy.objects.select_related("zone", "approver_group")
    serializer_class = s.PolicySerializer
    filterset_fields = ["kind", "zone"]
    target = "policy"


class FreezeWindowViewSet(ConfigurationViewSet):
    queryset = FreezeWindow.objects.all()
    serializer_class = s.FreezeWindowSerializer
    filterset_fields = ["connector"]
    target = "freeze"


class ChatHookViewSet(ConfigurationViewSet):
    queryset = ChatHook.objects.all()
    serializer_class = s.ChatHookSerializer
    target = "chat_hook"


class UserPermission(permissions.BasePermission):
    """Portal admins and auditors read people; portal admins file requests."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return rules.can_manage_configuration(request.user) or rules.has_role(request.user, Role.AUDITOR)
        return rules.can_manage_configuration(request.user)


class UserViewSet(ConfigurationViewSet):
    """People and their roles. `is_superuser` and per-user permissions are
    not part of the portal at all."""

    queryset = get_user_model().objects.prefetch_related("groups").select_related("account_state").order_by("username")
    serializer_class = s.UserSerializer
    permission_classes = [UserPermission]
    http_method_names = ["get", "post", "patch", "head", "options"]
    filterset_fields = ["is_active"]
    target = "user"

    def _action(self, request, action):
        return self._file(request, action=action, object_id=self.get_object().pk, changes=dict(request.data))

    @extend_schema(request=s.JustificationSerializer, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        return self._action(request, "deactivate")

    @extend_schema(request=s.JustificationSerializer, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None):
        return self._action(request, "reactivate")

    @extend_schema(request=s.JustificationSerializer, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"], url_path="otp-reset")
    def otp_reset(self, request, pk=None):
        return self._action(request, "otp_reset")


class TicketFilter(django_filters.FilterSet):
    requester = django_filters.CharFilter(field_name="requester__username")
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Ticket
        fields = ["state", "kind", "requester", "connector", "created_after", "created_before"]


class TicketViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Tickets are never edited: state changes are the POST actions."""

    queryset = Ticket.objects.all()  # narrowed per user in get_queryset
    filterset_class = TicketFilter
    serializer_class = s.TicketSerializer

    def get_queryset(self):
        return selectors.with_decisions(selectors.tickets_visible_to(self.request.user))

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.TicketDetailSerializer
        return super().get_serializer_class()

    def _detail(self, ticket, code=status.HTTP_200_OK):
        ticket = self.get_queryset().get(pk=ticket.pk)
        return Response(s.TicketDetailSerializer(ticket, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=s.TicketCreateSerializer, responses={201: s.TicketDetailSerializer})
    def create(self, request):
        if not (rules.can_file_tickets(request.user) or rules.can_file_emergency(request.user)):
            raise PermissionDenied("Only requesters file tickets.")
        data = s.TicketCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ticket = services.ticket_submit(requester=request.user, **data.validated_data)
        return self._detail(ticket, status.HTTP_201_CREATED)

    @extend_schema(request=s.ApproveSerializer, responses={200: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        ticket = self.get_object()
        data = s.ApproveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        code = data.validated_data.get("otp")
        otp_confirmed = otp.check(request.user, code) if code else otp.recently_confirmed(request)
        services.ticket_approve(
            ticket_id=ticket.pk,
            approver=request.user,
            comment=data.validated_data["comment"],
            otp_confirmed=otp_confirmed,
            passkey_assertion=data.validated_data.get("passkey"),
            origin=passkeys.origin_of(request),
        )
        return self._detail(ticket)

    @extend_schema(request=None, responses={200: s.PasskeyChallengeSerializer})
    @action(detail=True, methods=["post"], url_path="passkey-challenge")
    def passkey_challenge(self, request, pk=None):
        """A single-use challenge to sign an approval of this ticket with your passkey."""
        ticket = self.get_object()
        options = passkey_approvals.passkey_challenge_issue(
            ticket_id=ticket.pk, user=request.user, rp_id=passkeys.rp_id_for(request)
        )
        return Response(options)

    @extend_schema(request=s.RejectSerializer, responses={200: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        ticket = self.get_object()
        data = s.RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.ticket_reject(ticket_id=ticket.pk, approver=request.user, comment=data.validated_data["comment"])
        return self._detail(ticket)

    @extend_schema(request=None, responses={200: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        ticket = self.get_object()
        services.ticket_cancel(ticket_id=ticket.pk, user=request.user)
        return self._detail(ticket)

    @extend_schema(request=s.RejectSerializer, responses={200: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        """Post-review of an emergency (approvers of its group, never its requester); a comment is required."""
        ticket = self.get_object()
        data = s.RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        emergencies.emergency_review(ticket_id=ticket.pk, reviewer=request.user, comment=data.validated_data["comment"])
        return self._detail(ticket)

    @extend_schema(request=None, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        ticket = self.get_object()
        services.access_revoke(ticket_id=ticket.pk, user=request.user)
        return self._detail(ticket, status.HTTP_202_ACCEPTED)
