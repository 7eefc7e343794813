from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "ipr.agents"
    verbose_name = "Agents: traffic types and sender keys"
