from django.contrib import admin

from ipr.traffic.models import IngestedSegment


@admin.register(IngestedSegment)
class IngestedSegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "rows", "bytes", "at"]
    search_fields = ["name"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
