from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _page_settings(sender, connection, **kwargs):
    """Each new PostgreSQL connection gets the memory the page queries sort
    and hash in (ipr.web.queries.WORK_MEM), once, rather than per query."""
    if connection.vendor == "postgresql":
        from ipr.web.queries import WORK_MEM
        with connection.cursor() as cur:
            cur.execute(f"SET work_mem = '{WORK_MEM}'")


class WebConfig(AppConfig):
    name = "ipr.web"
    label = "web"
    verbose_name = "Pages and reports"

    def ready(self):
        connection_created.connect(_page_settings, dispatch_uid="ipr.web.page_settings")
