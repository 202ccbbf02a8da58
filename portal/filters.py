"""Filters shared by the API and the pages."""

from datetime import UTC

import django_filters
from django_filters.fields import IsoDateTimeField


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with any offset Python accepts (up to ±23:59), turned into
    UTC before it reaches the database (PostgreSQL stops at ±15:59)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        return parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo else parsed


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField
