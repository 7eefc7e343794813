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


# The session key listing the keys whose next change page shows the secret:
# set when a key is made or its secret replaced, taken by that page.
REVEAL = "agents_reveal_secret"


@admin.register(SenderKey)
class SenderKeyAdmin(admin.ModelAdmin):
    list_display = ["key_id", "name", "enabled", "sender_summary", "network_summary", "traffic_type",
                    "created", "rotated"]
    list_filter = ["enabled"]
    search_fields = ["name", "=key_id"]
    actions = ["replace_secret", "enable", "disable", "rewrite_key_file"]

    @admin.display(description="networks")
    def network_summary(self, obj):
        return ", ".join(obj.network_list)

    @admin.display(description="sender ids")
    def sender_summary(self, obj):
        return ", ".join(map(str, obj.sender_id_list))

    @admin.display(description="secret")
    def secret_fingerprint(self, obj):
        return format_html("SHA-256 {}… (shown once, when made or replaced; "
                           "<code>ipr agent-key --id {}</code> prints it)", obj.secret_fingerprint, obj.key_id)

    @admin.display(description="configuration snippet")
    def snippet(self, obj):
        if obj.pk is None:
            return "Shown once the key is saved."
        reveal = getattr(obj, "reveal_secret", False)
        parts = keyfile.snippet(obj, reveal=reveal)
        note = ("<p><strong>The secret is shown this once: copy it now.</strong></p>" if reveal else "")
        return format_html(note + "<p>nginx (ngx_http_ipr_module):</p><pre>{}</pre>"
                           "<p>WSGI agent (environment):</p><pre>{}</pre>", parts["nginx"], parts["wsgi"])

    def get_readonly_fields(self, request, obj=None):
        # The secret is set once (generated, or pasted to import a key);
        # after that it changes only through "Replace the secret", which
        # records when, and it is never shown again but once after that.
        return ["created", "rotated", "snippet"] + (["secret_fingerprint"] if obj else [])

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["key_id", "name", "secret", "enabled", "sender_ids", "networks", "traffic_type"]
        return ["key_id", "name", "secret_fingerprint", "enabled", "sender_ids", "networks", "traffic_type",
                "created", "rotated", "snippet"]

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        match = request.resolver_match
        if (obj is not None and request.method == "GET" and match is not None
                and match.url_name == "agents_senderkey_change"):
            pending = request.session.get(REVEAL, [])
            if obj.pk in pending:
                pending.remove(obj.pk)
                request.session[REVEAL] = pending
                obj.reveal_secret = self.has_change_permission(request, obj)
        return obj

    def _reveal_once(self, request, pks):
        request.session[REVEAL] = sorted(set(request.session.get(REVEAL, [])) | set(pks))

    def get_changeform_initial_data(self, request):
        last = SenderKey.objects.aggregate(m=Max("key_id"))["m"]
        key_id = 1 if last is None else last + 1
        return {"key_id": key_id, "secret": new_secret(), "sender_ids": str(key_id),
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
        # A new key's page shows what to paste onto the web servers, the
        # secret included, this once.
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        if not self.has_change_permission(request, obj):
            return super().response_add(request, obj, post_url_continue)
        self._reveal_once(request, [obj.pk])
        self.message_user(request, f"Key {obj.key_id} created: paste the snippet below onto the web servers. "
                                   "Its secret is shown on this page once.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:agents_senderkey_change", args=[obj.pk]))

    @admin.action(description="Replace the secret (senders with the old one are refused until updated)",
                  permissions=["change"])
    def replace_secret(self, request, queryset):
        with transaction.atomic():
            for key in queryset:
                key.secret = new_secret()
                key.rotated = timezone.now()
                key.save(update_fields=["secret", "rotated"])
            self._publish(request)
        self._reveal_once(request, [k.pk for k in queryset])
        self.message_user(request, f"{queryset.count()} secret(s) replaced: each key's page shows its new "
                                   "snippet, with the secret, once.")

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        with transaction.atomic():
            queryset.update(enabled=True)
            self._publish(request)

    @admin.action(description="Disable (the collector refuses their datagrams)", permissions=["change"])
    def disable(self, request, queryset):
        with transaction.atomic():
            queryset.update(enabled=False)
            self._publish(request)

    @admin.action(description="Rewrite the collector's key file", permissions=["change"])
    def rewrite_key_file(self, request, queryset):
        self._publish(request)
