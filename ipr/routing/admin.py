import logging

from django.contrib import admin, messages
from kombu.exceptions import OperationalError

from ipr.fields import format_asn
from ipr.routing.models import (ASName, CountryPrefix, DataSource, OriginOverride, RouteSource,
                                Router, ServedNetwork, Table)


log = logging.getLogger("ipr.routing")


def queue_refreshes(modeladmin, request, queryset, task, command: str) -> None:
    """Queue ``task`` for each selected object and say what happened: when
    the broker does not answer, which ones could not be queued (nothing
    changes; the schedule or ``command`` refreshes them)."""
    queued, failed, reason = [], [], None
    for obj in queryset:
        try:
            task.delay(obj.pk)
            queued.append(obj)
        except (OperationalError, OSError) as exc:  # the broker is down or unreachable
            failed.append(obj)
            reason = exc
    if queued:
        modeladmin.message_user(request, f"{len(queued)} refresh(es) queued", messages.INFO)
    if failed:
        names = ", ".join(str(obj) for obj in failed)
        log.warning("admin refresh of %s not queued: the task broker does not answer: %s", names, reason)
        modeladmin.message_user(
            request, f"The refresh of {names} could not be queued: the task broker (REDIS_URL) does not "
            f"answer ({reason}). Nothing was changed; the data stays as it was. Try again once the broker "
            f"runs, or run `{command}` on the server.", messages.ERROR)


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


class ServedNetworkInline(admin.TabularInline):
    model = ServedNetwork
    extra = 1


class RouteSourceInline(admin.StackedInline):
    model = RouteSource
    extra = 0


class RefreshedAdmin(admin.ModelAdmin):
    """The columns of anything refreshed on a schedule (models.Refreshed)."""

    @admin.display(description="last refresh", boolean=True)
    def refresh_outcome(self, obj):
        return obj.refresh_ok

    @admin.display(description="why the last refresh was refused")
    def refusal(self, obj):
        return _short(obj.refresh_error)


@admin.register(Router)
class RouterAdmin(RefreshedAdmin):
    list_display = ["name", "asn_display", "is_default", "active_table", "refreshed_at", "refresh_outcome",
                    "refusal"]
    readonly_fields = ["active_table", "refreshed_at", "refresh_error"]
    search_fields = ["name", "asn"]
    inlines = [ServedNetworkInline, RouteSourceInline]
    actions = ["refresh_now"]

    @admin.display(description="ASN", ordering="asn")
    def asn_display(self, obj):
        return format_asn(obj.asn)

    @admin.action(description="Refresh the table now (queued)")
    def refresh_now(self, request, queryset):
        from cron.tasks import refresh_router
        queue_refreshes(self, request, queryset, refresh_router, "ipr load_routes ROUTER")


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["id", "router", "state", "routes", "prefixes", "attr_sets", "load_time", "created", "error"]
    list_filter = ["state", "router"]

    @admin.display(description="load time", ordering="seconds")
    def load_time(self, obj):
        return f"{obj.seconds:.2f} s"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DataSource)
class DataSourceAdmin(RefreshedAdmin):
    list_display = ["name", "kind", "path", "enabled", "priority", "refresh_minutes", "records",
                    "refreshed_at", "refresh_outcome", "refusal"]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["refreshed_at", "refresh_error", "refresh_notes", "records", "version"]
    actions = ["refresh_now"]

    @admin.action(description="Refresh the data now (queued)")
    def refresh_now(self, request, queryset):
        from cron.tasks import refresh_source
        queue_refreshes(self, request, queryset, refresh_source, "ipr load_countries / ipr load_asnames")


@admin.register(OriginOverride)
class OriginOverrideAdmin(admin.ModelAdmin):
    list_display = ["prefix", "origin_as", "note"]
    search_fields = ["prefix", "note"]


@admin.register(ASName)
class ASNameAdmin(admin.ModelAdmin):
    list_display = ["asn", "name", "country"]
    search_fields = ["name", "=asn"]


admin.site.register(CountryPrefix, list_display=["prefix", "country", "source"], list_filter=["source"],
                    search_fields=["prefix", "country"])
