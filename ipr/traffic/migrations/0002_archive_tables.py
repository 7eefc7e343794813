"""The archive tables (ipr/traffic/tables.py), which Django does not manage:
partitioned by time on PostgreSQL, plain on SQLite."""
from django.db import migrations

from ipr.traffic import tables


def create(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    for name in tables.TABLES:
        for sql in tables.create_sql(name, pg):
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    for name in tables.TABLES:
        schema_editor.execute(f"DROP TABLE IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("traffic", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
