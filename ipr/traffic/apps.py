from django.apps import AppConfig


class TrafficConfig(AppConfig):
    name = "ipr.traffic"
    verbose_name = "Traffic"
