from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "ipr.api"
    verbose_name = "REST API"
