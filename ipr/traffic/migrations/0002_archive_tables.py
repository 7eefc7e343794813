"""The archive tables (ipr/traffic/tables.py), which Django does not manage:
partitioned by time on PostgreSQL, plain on SQLite."""
from django.db import migrations

from ipr.traffic import tables

# The tables as they were when this migration was written (later ones have
# their own migrations).
NAMES = ("traffic_current", "traffic_prefix_hour", "traffic_origin_hour", "traffic_neighbor_hour",
         "traffic_country_hour", "traffic_prefix_day", "traffic_origin_day", "traffic_neighbor_day",
         "traffic_country_day")


class Migration(migrations.Migration):
    dependencies = [("traffic", "0001_initial")]
    operations = [migrations.RunPython(*tables.migration(NAMES))]
