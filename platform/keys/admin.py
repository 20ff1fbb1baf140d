from django.contrib import admin

from keys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "account", "masked", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_select_related = ["account"]
    search_fields = ["name", "account__slug", "prefix"]
    # Keys are created through the service (which shows the secret once); staff may only look and revoke via API.
    readonly_fields = ["account", "hashed_key", "prefix", "last4", "created_at", "last_used_at", "revoked_at"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
