import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

TRIGRAM_INDEX = "inventory_lower_name_trgm"


def trigram_index(apps, schema_editor):
    """Names containing a word (lower(name) LIKE '%web%'): a trigram index,
    PostgreSQL only."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON connectors_inventoryobject "
            "USING gin (lower(name) gin_trgm_ops)"
        )


def no_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0003_inventory_table"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="inventoryobject",
            index=models.Index(
                models.F("connector"),
                models.F("type"),
                django.db.models.functions.text.Lower("name"),
                name="inventory_type_lower_name",
            ),
        ),
        migrations.AddIndex(
            model_name="inventoryobject",
            index=models.Index(
                fields=["connector", "type", "path"],
                name="inventory_type_path_prefix",
                opclasses=["", "", "text_pattern_ops"],
            ),
        ),
        migrations.AddIndex(
            model_name="inventoryobject",
            index=models.Index(fields=["connector", "type", "host_id"], name="inventory_type_host"),
        ),
        TrigramExtension(),
        migrations.RunPython(trigram_index, no_trigram_index),
    ]
