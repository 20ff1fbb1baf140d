from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from contracts import API_KEY_SCOPES, SCOPE_INFERENCE
from keys.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    masked = serializers.CharField(read_only=True, help_text="The secret is shown once at creation; this is how it "
                                   "reads afterwards, e.g. `hk_…abcd`.")
    is_active = serializers.SerializerMethodField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=API_KEY_SCOPES), read_only=True,
                                   help_text="`inference`: the gateway's /v1 API; `management`: this control-plane API.")
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True,
                                        help_text="The person who created the key (null once they are gone).")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "masked", "scopes", "created_by", "rpm_limit", "tpm_limit", "max_cost_per_request",
                  "created_at",
                  "last_used_at", "expires_at", "revoked_at", "is_active"]
        read_only_fields = fields

    def get_is_active(self, key: ApiKey) -> bool:
        from django.utils import timezone

        return key.revoked_at is None and (key.expires_at is None or key.expires_at > timezone.now())


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=API_KEY_SCOPES), required=False, default=[SCOPE_INFERENCE], min_length=1,
        help_text="What the key may call: `inference` (default) calls models through the gateway; `management` calls "
        "this API with its creator's role. No key can create keys.",
    )
    rpm_limit = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                         help_text="Requests per minute for this key (at most the account's).")
    tpm_limit = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                         help_text="Tokens per minute for this key (at most the account's).")
    max_cost_per_request = serializers.DecimalField(
        max_digits=12, decimal_places=6, required=False, allow_null=True, default=None,
        min_value=Decimal("0.000001"), help_text="USD a request with this key may cost when it sets no max_cost "
        "itself (the gateway lowers its completion limit to fit; a prompt alone over it is refused).")


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="The full key. Store it now: it is never shown again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]
        read_only_fields = fields
