"""Staff manage webhook endpoints and read the delivery log; a delivery can be sent again.

An endpoint's secret is shown once, in the message after it is created or rotated.
"""

from django import forms
from django.contrib import admin, messages

from . import delivery as deliveries
from .models import EVENT_TYPES, Delivery, Endpoint


class EndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(choices=[(e, e) for e in EVENT_TYPES], widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Endpoint
        fields = ["url", "events", "profile", "active"]


def _show_secret(request, endpoint: Endpoint, secret: str) -> None:
    messages.warning(request, f"Signing secret for {endpoint.url}: {secret} — copy it now, it will not be shown again.")


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "event_list", "active", "consecutive_failures", "disabled_at", "created_at"]
    list_filter = ["active"]
    search_fields = ["url"]
    readonly_fields = ["consecutive_failures", "disabled_at", "disabled_reason", "created_at", "created_by"]
    actions = ["rotate_secrets", "enable"]

    @admin.display(description="Events")
    def event_list(self, endpoint):
        return ", ".join(endpoint.events)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = f"staff:{request.user.get_username()}"[:64]
        reenabled = change and obj.active and "active" in form.changed_data
        super().save_model(request, obj, form, change)
        if reenabled:
            obj.enable()
        if not change:
            _show_secret(request, obj, obj.secret)

    @admin.action(description="Rotate the signing secret (the old one still signs for 24 hours)")
    def rotate_secrets(self, request, queryset):
        for endpoint in queryset:
            _show_secret(request, endpoint, endpoint.rotate_secret())

    @admin.action(description="Enable again (after failures)")
    def enable(self, request, queryset):
        for endpoint in queryset:
            endpoint.enable()
        messages.success(request, f"Enabled {len(queryset)} endpoint(s).")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "webhook_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_attempt_at",
        "next_attempt_at",
    ]
    list_filter = ["status", "event_type", "endpoint"]
    list_select_related = ["endpoint"]
    search_fields = ["=id", "=session__id"]
    actions = ["send_again"]
    fields = [
        "webhook_id",
        "event_type",
        "endpoint",
        "session",
        "occurred_at",
        "status",
        "attempts",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "payload",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a record of what was sent: "send again" is the only thing to do with it

    @admin.display(description="webhook-id")
    def webhook_id(self, delivery):
        return delivery.webhook_id

    @admin.action(description="Send again (same payload and webhook-id)", permissions=["view"])
    def send_again(self, request, queryset):
        for delivery in queryset:
            deliveries.send_again(delivery)
        messages.success(request, f"Queued {len(queryset)} deliveries to be sent again.")
