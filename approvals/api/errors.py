"""Maps service errors to HTTP once: InvalidInput and ValidationError 400 with field errors,
PermissionDenied 403, StateConflict 409, InventoryUnavailable 503."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from approvals.errors import InvalidInput, InventoryUnavailable, StateConflict


def validation_detail(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {field: _flatten(errors) for field, errors in exc.error_dict.items()}
    return {"non_field_errors": list(exc.messages)}


def _flatten(errors):
    out: list | dict = []
    for error in errors:
        if hasattr(error, "error_dict"):
            return {f: _flatten(e) for f, e in error.error_dict.items()}
        out.extend(error.messages)
    return out


def exception_handler(exc, context):
    if isinstance(exc, InvalidInput):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response(validation_detail(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, StateConflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, InventoryUnavailable):
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return drf_exception_handler(exc, context)
