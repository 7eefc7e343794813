from django.contrib import admin
from django.db import models

from ipr.alerts.models import Alert, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "kind", "key", "router", "measure", "mode", "threshold", "window_minutes",
                    "min_requests", "open_alerts"]
    list_filter = ["enabled", "kind", "measure", "mode"]
    search_fields = ["name", "key"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("What", {"fields": ["kind", "key", "router", "measure"]}),
        ("When", {"fields": ["mode", "threshold", "window_minutes", "baseline_days", "min_requests"]}),
        ("Send to", {"fields": ["email_to", "webhook_url"]}),
    ]

    @admin.display(description="open alerts")
    def open_alerts(self, obj):
        return obj.alerts.filter(resolved__isnull=True).count()


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["rule", "label", "started", "resolved", "last_value", "baseline_value", "last_checked"]
    list_filter = ["rule", ("resolved", admin.EmptyFieldListFilter)]
    search_fields = ["label", "key", "message"]
    readonly_fields = ["rule", "key", "label", "started", "resolved", "last_checked", "last_value",
                       "baseline_value", "message", "path", "notify_error"]

    def has_add_permission(self, request):
        return False  # alerts are raised by the checks, not by hand
