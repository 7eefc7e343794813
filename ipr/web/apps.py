from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "ipr.web"
    label = "web"
    verbose_name = "Pages and reports"
