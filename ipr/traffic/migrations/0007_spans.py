"""Spans: the daily tables summed over the whole days of the long preset
ranges (ipr/traffic/tables.py SPANS), the record of which spans they hold,
and the log of days changed while one is computed. The daily rollup
computes them; none are made here."""
from django.db import migrations, models

from ipr.traffic import tables


NAMES = ("traffic_prefix_span", "traffic_origin_span", "traffic_neighbor_span", "traffic_country_span",
         "traffic_path_span", "traffic_flow_span", "traffic_prefix_all_span", "traffic_origin_all_span",
         "traffic_neighbor_all_span", "traffic_country_all_span")
create, drop = tables.migration(NAMES, tables.span_create_sql)


class Migration(migrations.Migration):

    dependencies = [
        ('traffic', '0006_coarse_tables'),
    ]

    operations = [
        migrations.CreateModel(
            name='SpanChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateTimeField(help_text="The day's first instant (UTC).")),
            ],
        ),
        migrations.CreateModel(
            name='Span',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('first_day', models.DateTimeField(help_text="The first day's first instant (UTC).")),
                ('end_day', models.DateTimeField(help_text='The instant after the last day (UTC).')),
                ('rows', models.PositiveBigIntegerField(help_text='Rows written, over all span tables.')),
                ('computed', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['end_day', 'first_day'],
                'constraints': [models.UniqueConstraint(fields=('end_day', 'first_day'), name='traffic_span_days')],
            },
        ),
        migrations.RunPython(create, drop),
    ]
