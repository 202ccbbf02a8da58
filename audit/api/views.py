from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from audit import rules, selectors, services
from audit.api import serializers as s
from audit.checkpoints import public_key as checkpoint_public_key
from audit.export import stream_csv, stream_json
from audit.filters import AuditEntryFilter, FindingFilter
from audit.models import AuditEntry, Checkpoint
from audit.verify import verify_chain
from audit.writer import record

EXPORTS = {
    "csv": (stream_csv, "text/csv; charset=utf-8"),
    "json": (stream_json, "application/json"),
}


class ReadsAudit(permissions.BasePermission):
    """Auditors and approvers read the audit log and the findings."""

    def has_permission(self, request, view):
        return rules.can_read_audit(request.user)


class AuditCursorPagination(CursorPagination):
    """Newest first, by seq: a page costs the same on a log of any length."""

    ordering = "-seq"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class AuditEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit log: filter it, verify its chain, export it."""

    queryset = selectors.audit_entries()
    serializer_class = s.AuditEntrySerializer
    filterset_class = AuditEntryFilter
    pagination_class = AuditCursorPagination
    permission_classes = [ReadsAudit]

    def perform_content_negotiation(self, request, force=False):
        # ?format= picks the export's format, not a DRF renderer; errors are JSON.
        if self.action == "export":
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    @extend_schema(responses={200: s.ChainReportSerializer}, filters=False)
    @action(detail=False, methods=["get"], filter_backends=[])
    def verify(self, request):
        """Recompute every entry's hash and link; name the first broken entry."""
        report = verify_chain()
        return Response(s.ChainReportSerializer(report).data)

    @extend_schema(parameters=[s.AfterQuerySerializer], responses={200: s.CheckpointListSerializer}, filters=False)
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def checkpoints(self, request):
        """Signed checkpoints after seq `after`, oldest first (at most 1,000),
        with the portal's public key: what the witness countersigns."""
        query = s.AfterQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = (
            Checkpoint.objects.filter(seq__gt=query.validated_data["after"])
            .order_by("seq")
            .values("seq", "hash", "signed_at", "public_key", "signature")[:1000]
        )
        return Response({"public_key": checkpoint_public_key(), "checkpoints": list(rows)})

    @extend_schema(parameters=[s.LinksQuerySerializer], responses={200: s.LinksSerializer}, filters=False)
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def links(self, request):
        """[seq, prev_hash, hash] of the entries after seq `after` (up to
        `upto`), oldest first: the chain's links without the entries' contents."""
        query = s.LinksQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = AuditEntry.objects.filter(seq__gt=query.validated_data["after"])
        if "upto" in query.validated_data:
            entries = entries.filter(seq__lte=query.validated_data["upto"])
        rows = entries.order_by("seq").values_list("seq", "prev_hash", "hash")[: query.validated_data["limit"]]
        return Response({"links": [list(row) for row in rows]})

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORTS), default="csv")],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/json"): s.ExportedEntrySerializer(many=True),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request):
        """The filtered entries, oldest first, streamed with their hashes."""
        fmt = request.query_params.get("format", "csv")
        if fmt not in EXPORTS:
            raise ValidationError({"format": [f"Choose one of: {', '.join(EXPORTS)}."]})
        entries = self.filter_queryset(self.get_queryset())
        record(
            "audit.exported",
            actor=request.user,
            source_ip=request.META.get("REMOTE_ADDR"),
            details={
                "format": fmt,
                "filters": {k: v for k, v in request.query_params.items() if k in AuditEntryFilter.base_filters},
            },
        )
        stream, content_type = EXPORTS[fmt]
        response = StreamingHttpResponse(stream(entries), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="audit-{timezone.now():%Y%m%dT%H%M%SZ}.{fmt}"'
        return response


class FindingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Drift findings; approvers acknowledge them."""

    queryset = selectors.findings()
    serializer_class = s.FindingSerializer
    filterset_class = FindingFilter
    permission_classes = [ReadsAudit]

    @extend_schema(request=s.AcknowledgeSerializer, responses={200: s.FindingSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        finding = self.get_object()
        if not rules.can_acknowledge_findings(request.user):
            raise PermissionDenied("Only approvers acknowledge findings.")
        data = s.AcknowledgeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.finding_acknowledge(finding_id=finding.pk, user=request.user, comment=data.validated_data["comment"])
        return Response(self.get_serializer(self.get_queryset().get(pk=finding.pk)).data)
