"""The per-minute window is partitioned by hour from now on (new partitions;
those made by day stay until retention drops them) and, on PostgreSQL, has
no time index: an hour's rows are its own partition."""
from django.db import migrations


def drop_time_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS traffic_current_time")


def create_time_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS traffic_current_time ON traffic_current USING brin (minute)")


class Migration(migrations.Migration):

    dependencies = [
        ('traffic', '0004_pending'),
    ]

    operations = [
        migrations.RunPython(drop_time_index, create_time_index),
    ]
