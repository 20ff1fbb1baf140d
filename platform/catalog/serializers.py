from __future__ import annotations

from rest_framework import serializers

from catalog.models import BaseModel


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaseModel
        fields = [
            "id", "slug", "public_name", "display_name", "architecture", "kind", "context_length",
            "price_input_per_mtok", "price_cached_input_per_mtok", "price_output_per_mtok", "created_at",
        ]
        read_only_fields = fields
