"""The coarse tables: totals per router and traffic type, flows (router,
neighbour AS, origin AS), and the prefix, origin, neighbour and country
tables summed over routers and traffic types, hourly and daily
(ipr/traffic/tables.py). They are filled from the archive already there."""
from datetime import timedelta

from django.db import migrations

from ipr.traffic import rollup, tables

NAMES = ("traffic_total_hour", "traffic_flow_hour", "traffic_prefix_all_hour", "traffic_origin_all_hour",
         "traffic_neighbor_all_hour", "traffic_country_all_hour", "traffic_total_day", "traffic_flow_day",
         "traffic_prefix_all_day", "traffic_origin_all_day", "traffic_neighbor_all_day", "traffic_country_all_day")
create, drop = tables.migration(NAMES)


def create_and_fill(apps, schema_editor):
    create(apps, schema_editor)
    with schema_editor.connection.cursor() as cur:
        for unit in ("hour", "day"):
            cur.execute(f"SELECT min({unit}), max({unit}) FROM traffic_country_{unit}")
            low, high = cur.fetchone()
            if low is None:
                continue
            low, high = (rollup._time(str(t)) if isinstance(t, str) else t for t in (low, high))
            rollup.derive(unit, rollup._stamp(low), rollup._stamp(high + timedelta(seconds=1)), names=NAMES)


class Migration(migrations.Migration):
    dependencies = [("traffic", "0005_window_hourly_partitions")]
    operations = [migrations.RunPython(create_and_fill, drop)]
