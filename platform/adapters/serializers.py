from __future__ import annotations

from rest_framework import serializers

from adapters.models import Adapter


class AdapterSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="public_name", read_only=True,
                                  help_text="The model name to call: `accounts/<account>/models/<name>`.")
    base_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Adapter
        fields = [
            "uid", "name", "model", "base_model", "status", "failure_reason", "rank", "lora_alpha", "use_rslora",
            "target_modules", "size_bytes", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class AdapterUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, help_text="Lowercase letters, digits, '-' and '_'.")
    base_model = serializers.CharField(max_length=100, help_text="The catalog slug, e.g. `smollm2-135m-instruct`.")
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), required=False,
        help_text="adapter_config.json and adapter_model.safetensors, or one .zip / .tar.gz of the folder.",
    )
