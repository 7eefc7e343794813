from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_schedule(**kwargs):
    from cron.schedule import install_defaults
    install_defaults()


class TrafficConfig(AppConfig):
    name = "ipr.traffic"
    verbose_name = "Traffic"

    def ready(self):
        # The beat schedule's default entries, once its tables exist.
        post_migrate.connect(_install_schedule, sender=self)
