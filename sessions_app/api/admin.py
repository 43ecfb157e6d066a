"""Staff create, list and revoke REST API keys. The raw key is shown once, right after creation."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from ..models import ApiKey


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ApiKey.SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="Scopes")
    def scope_list(self, key):
        return ", ".join(key.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.create(obj.name, obj.scopes)
        # The admin goes on with obj (history, redirect): make it the row just created.
        obj.pk = key.pk
        obj.refresh_from_db()
        messages.warning(request, f"API key for “{key.name}”: {raw} — copy it now, it will not be shown again.")

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = queryset.active().update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} API key(s).")
