from __future__ import annotations

from rest_framework import serializers

from routes.models import Route, RouteVariant


class VariantSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_name", help_text="accounts/<account>/models/<model>")
    weight = serializers.IntegerField(min_value=1, max_value=10000, help_text="relative to the other variants")
    share = serializers.SerializerMethodField(help_text="this variant's share of traffic, 0..1")
    ready = serializers.SerializerMethodField(help_text="false while the adapter is not ready: it gets no traffic")

    class Meta:
        model = RouteVariant
        fields = ["id", "model", "weight", "share", "ready"]
        read_only_fields = ["id", "share", "ready"]

    def get_share(self, variant: RouteVariant) -> float:
        total = sum(v.weight for v in variant.route.variants.all())
        return round(variant.weight / total, 6) if total else 0.0

    def get_ready(self, variant: RouteVariant) -> bool:
        return variant.adapter is None or variant.adapter.status == "ready"


class RouteSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="public_name", read_only=True, help_text="call it by this name")
    variants = VariantSerializer(many=True, read_only=True)

    class Meta:
        model = Route
        fields = ["id", "name", "model", "variants", "created_at", "updated_at"]
        read_only_fields = fields


class VariantInSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=200)
    weight = serializers.IntegerField(min_value=1, max_value=10000)


class RouteCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    variants = VariantInSerializer(many=True)


class RouteUpdateSerializer(serializers.Serializer):
    variants = VariantInSerializer(many=True)


class StatsQuerySerializer(serializers.Serializer):
    start = serializers.CharField(required=False, help_text="inclusive; ISO date or time (UTC); default end - 7 days")
    end = serializers.CharField(required=False, help_text="exclusive; default now")
