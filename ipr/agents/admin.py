from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Max
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from ipr.agents import keyfile
from ipr.agents.models import SenderKey, TrafficType, new_secret


@admin.register(TrafficType)
class TrafficTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "label", "description"]
    search_fields = ["name", "label"]


@admin.register(SenderKey)
class SenderKeyAdmin(admin.ModelAdmin):
    list_display = ["key_id", "name", "enabled", "network_summary", "traffic_type", "created", "rotated"]
    list_filter = ["enabled"]
    search_fields = ["name", "=key_id"]
    actions = ["replace_secret", "enable", "disable", "rewrite_key_file"]

    @admin.display(description="networks")
    def network_summary(self, obj):
        return ", ".join(obj.network_list)

    @admin.display(description="configuration snippet")
    def snippet(self, obj):
        if obj.pk is None:
            return "Shown once the key is saved."
        parts = keyfile.snippet(obj)
        return format_html("<p>nginx (ngx_http_ipr_module):</p><pre>{}</pre>"
                           "<p>WSGI agent (environment):</p><pre>{}</pre>", parts["nginx"], parts["wsgi"])

    def get_readonly_fields(self, request, obj=None):
        # The secret is set once (generated, or pasted to import a key);
        # after that it changes only through "Replace the secret", which
        # records when.
        return ["created", "rotated", "snippet"] + (["secret"] if obj else [])

    def get_fields(self, request, obj=None):
        fields = ["key_id", "name", "secret", "enabled", "networks", "traffic_type"]
        return fields + (["created", "rotated", "snippet"] if obj else [])

    def get_changeform_initial_data(self, request):
        last = SenderKey.objects.aggregate(m=Max("key_id"))["m"]
        return {"key_id": 1 if last is None else last + 1, "secret": new_secret(),
                "networks": "0.0.0.0/0\n::/0", **super().get_changeform_initial_data(request)}

    # Every change reaches the key file, after the commit, so the file never
    # holds a key the database rolled back.
    def _publish(self, request):
        def run():
            ok, text = keyfile.publish()
            self.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)
        transaction.on_commit(run)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._publish(request)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._publish(request)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        self._publish(request)

    def response_add(self, request, obj, post_url_continue=None):
        # A new key's page shows what to paste onto the web servers.
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"Key {obj.key_id} created: paste the snippet below onto the web servers.",
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:agents_senderkey_change", args=[obj.pk]))

    @admin.action(description="Replace the secret (senders with the old one are refused until updated)")
    def replace_secret(self, request, queryset):
        with transaction.atomic():
            for key in queryset:
                key.secret = new_secret()
                key.rotated = timezone.now()
                key.save(update_fields=["secret", "rotated"])
            self._publish(request)
        self.message_user(request, f"{queryset.count()} secret(s) replaced: each key's page shows its new snippet.")

    @admin.action(description="Enable")
    def enable(self, request, queryset):
        with transaction.atomic():
            queryset.update(enabled=True)
            self._publish(request)

    @admin.action(description="Disable (the collector refuses their datagrams)")
    def disable(self, request, queryset):
        with transaction.atomic():
            queryset.update(enabled=False)
            self._publish(request)

    @admin.action(description="Rewrite the collector's key file")
    def rewrite_key_file(self, request, queryset):
        self._publish(request)
