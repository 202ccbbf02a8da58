import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from accounts import otp
from approvals import permissions as rules
from approvals import selectors, services
from approvals.api import serializers as s
from approvals.inventory import InventoryIndex
from approvals.models import CatalogueTemplate, Policy, Ticket, Zone
from approvals.services.configuration import config_save, connector_register, connector_update
from connectors.base import AuthenticationFailed, ConnectorError
from connectors.models import Connector
from portal.filters import UTCIsoDateTimeFilter


class ConfigurationPermission(permissions.BasePermission):
    """Anyone with a role reads the configuration; portal admins change it."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return rules.can_read_configuration(request.user)
        return rules.can_manage_configuration(request.user)


class ConfigurationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [ConfigurationPermission]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = config_save(
            actor=self.request.user, instance=serializer.Meta.model(), data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = config_save(
            actor=self.request.user, instance=serializer.instance, data=serializer.validated_data
        )


def _connector_error(exc: ConnectorError) -> ValidationError:
    field = "password" if isinstance(exc, AuthenticationFailed) else "url"
    return ValidationError({field: [f"Cannot log in to the hypervisor: {exc}"]})


class ConnectorViewSet(ConfigurationViewSet):
    queryset = Connector.objects.all()
    serializer_class = s.ConnectorSerializer

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        try:
            serializer.instance = connector_register(actor=self.request.user, **data)
        except ConnectorError as exc:
            raise _connector_error(exc) from exc

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        password = data.pop("password", None)
        try:
            serializer.instance = connector_update(
                actor=self.request.user, connector=serializer.instance, data=data, password=password
            )
        except ConnectorError as exc:
            raise _connector_error(exc) from exc

    @extend_schema(
        parameters=[OpenApiParameter("refresh", bool, description="Read the hypervisor now, not the cache.")],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def inventory(self, request, pk=None):
        connector = self.get_object()
        index = InventoryIndex.for_connector(connector, refresh=request.query_params.get("refresh") in ("1", "true"))
        inv = index.inventory
        catalogue = set(CatalogueTemplate.objects.filter(connector=connector).values_list("name", flat=True))
        return Response(
            {
                "clusters": [
                    {"id": c.id, "name": c.name, "zone": index.cluster_zone(c.name).label} for c in inv.clusters
                ],
                "hosts": [
                    {"id": h.id, "name": h.name, "cluster": h.cluster, "zone": index.host_zone(h.name).label}
                    for h in inv.hosts
                ],
                "datastores": [{"id": d.id, "name": d.name} for d in inv.datastores],
                "networks": [
                    {"id": n.id, "name": n.name, "zone": index.network_zone(n.name).label} for n in inv.networks
                ],
                "folders": [{"id": f.id, "name": f.name} for f in inv.folders],
                "vms": [
                    {
                        "id": v.id,
                        "name": v.name,
                        "host": v.host,
                        "zone": index.vm_zone(v).label,
                        "power_state": v.power_state,
                    }
                    for v in inv.vms
                    if not v.is_template
                ],
                "templates": [{"id": v.id, "name": v.name} for v in inv.vms if v.is_template and v.name in catalogue],
                "roles": [r.name for r in inv.roles],
            }
        )


class ZoneViewSet(ConfigurationViewSet):
    queryset = Zone.objects.select_related("connector")
    serializer_class = s.ZoneSerializer
    filterset_fields = ["connector"]


class CatalogueTemplateViewSet(ConfigurationViewSet):
    queryset = CatalogueTemplate.objects.select_related("connector")
    serializer_class = s.CatalogueTemplateSerializer
    filterset_fields = ["connector"]


class PolicyViewSet(ConfigurationViewSet):
    queryset = Policy.objects.select_related("zone", "approver_group")
    serializer_class = s.PolicySerializer
    filterset_fields = ["kind", "zone"]


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
        if not rules.can_file_tickets(request.user):
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
        )
        return self._detail(ticket)

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

    @extend_schema(request=None, responses={202: s.TicketDetailSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        ticket = self.get_object()
        services.access_revoke(ticket_id=ticket.pk, user=request.user)
        return self._detail(ticket, status.HTTP_202_ACCEPTED)
