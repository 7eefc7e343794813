from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "ipr.routing"
    verbose_name = "Routing tables and countries"
