"""The AS paths of the archive: traffic per origin AS, neighbour AS and AS
path, hourly and daily (ipr/traffic/tables.py)."""
from django.db import migrations

from ipr.traffic import tables


class Migration(migrations.Migration):
    dependencies = [("traffic", "0002_archive_tables")]
    operations = [migrations.RunPython(*tables.migration(("traffic_path_hour", "traffic_path_day")))]
