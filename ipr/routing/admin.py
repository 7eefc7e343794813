from django.contrib import admin, messages

from ipr.fields import format_asn
from ipr.routing.models import (ASName, CountryPrefix, DataSource, OriginOverride, RouteSource,
                                Router, ServedNetwork, Table)


class ServedNetworkInline(admin.TabularInline):
    model = ServedNetwork
    extra = 1


class RouteSourceInline(admin.StackedInline):
    model = RouteSource
    extra = 0


@admin.register(Router)
class RouterAdmin(admin.ModelAdmin):
    list_display = ["name", "asn_display", "is_default", "active_table", "refreshed_at", "refresh_outcome",
                    "refusal"]
    readonly_fields = ["active_table", "refreshed_at", "refresh_error"]
    search_fields = ["name", "asn"]
    inlines = [ServedNetworkInline, RouteSourceInline]
    actions = ["refresh_now"]

    @admin.display(description="ASN", ordering="asn")
    def asn_display(self, obj):
        return format_asn(obj.asn)

    @admin.display(description="last refresh", boolean=True)
    def refresh_outcome(self, obj):
        return obj.refresh_ok

    @admin.display(description="why the last refresh was refused")
    def refusal(self, obj):
        error = obj.refresh_error
        return error if len(error) <= 120 else error[:117] + "..."

    @admin.action(description="Refresh the table now (queued)")
    def refresh_now(self, request, queryset):
        from cron.tasks import refresh_router
        for router in queryset:
            refresh_router.delay(router.pk)
        self.message_user(request, f"{queryset.count()} refresh(es) queued", messages.INFO)


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
class DataSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "priority", "refresh_minutes", "records", "refreshed_at",
                    "refresh_error"]
    list_filter = ["kind"]
    readonly_fields = ["refreshed_at", "refresh_error", "records", "version"]


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
