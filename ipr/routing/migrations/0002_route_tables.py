"""The route and path-attribute tables, which Django does not manage.

On PostgreSQL both are partitioned by table_id: each version of a router's
table is loaded into its own partitions (created by the loader) and a
retired version is dropped with its partitions. SQLite has plain tables.
"""
from django.db import migrations

PG = [
    """CREATE TABLE routing_pathattrs (
        id bigint NOT NULL, table_id bigint NOT NULL,
        next_hop text NOT NULL DEFAULT '', as_path text NOT NULL DEFAULT '',
        origin_as bigint, neighbor_as bigint, local_pref bigint, med bigint,
        communities text NOT NULL DEFAULT ''
    ) PARTITION BY LIST (table_id)""",
    """CREATE TABLE routing_route (
        id bigint NOT NULL, table_id bigint NOT NULL, prefix cidr NOT NULL,
        attrs_id bigint NOT NULL, best boolean NOT NULL
    ) PARTITION BY LIST (table_id)""",
]
SQLITE = [
    """CREATE TABLE routing_pathattrs (
        id integer NOT NULL PRIMARY KEY, table_id integer NOT NULL,
        next_hop text NOT NULL DEFAULT '', as_path text NOT NULL DEFAULT '',
        origin_as integer, neighbor_as integer, local_pref integer, med integer,
        communities text NOT NULL DEFAULT '')""",
    """CREATE TABLE routing_route (
        id integer NOT NULL PRIMARY KEY, table_id integer NOT NULL, prefix text NOT NULL,
        attrs_id integer NOT NULL, best bool NOT NULL)""",
    # The per-prefix pages and the lookup command find a prefix's routes in a version.
    "CREATE INDEX routing_route_table_prefix ON routing_route (table_id, prefix)",
]


def create(apps, schema_editor):
    statements = PG if schema_editor.connection.vendor == "postgresql" else SQLITE
    for sql in statements:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    schema_editor.execute("DROP TABLE IF EXISTS routing_route")
    schema_editor.execute("DROP TABLE IF EXISTS routing_pathattrs")


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
