"""A version's lookup engine (tens of megabytes of numpy arrays) stored with
lz4 instead of pglz on PostgreSQL: writing a full table's engine takes 0.7 s
instead of 5 s, and it is stored in about 60% of its size. A server built
without lz4 keeps pglz (the step is skipped there)."""
from django.db import migrations

LZ4 = """
DO $$ BEGIN
    ALTER TABLE routing_tableengine ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'no lz4 in this PostgreSQL: the lookup engines stay compressed with pglz';
END $$;
"""
PGLZ = "ALTER TABLE routing_tableengine ALTER COLUMN data SET COMPRESSION pglz"


def lz4(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LZ4)


def pglz(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PGLZ)


class Migration(migrations.Migration):
    dependencies = [("routing", "0003_source_shrink_and_notes")]
    operations = [migrations.RunPython(lz4, pglz)]
