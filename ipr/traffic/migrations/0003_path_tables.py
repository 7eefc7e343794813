"""The AS paths of the archive: traffic per origin AS, neighbour AS and AS
path, hourly and daily (ipr/traffic/tables.py)."""
from django.db import migrations

from ipr.traffic import tables

NEW = ("traffic_path_hour", "traffic_path_day")


def create(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    for name in NEW:
        for sql in tables.create_sql(name, pg):
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    for name in NEW:
        schema_editor.execute(f"DROP TABLE IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("traffic", "0002_archive_tables")]
    operations = [migrations.RunPython(create, drop)]
