"""A route: a model name of the account's own (`accounts/<account>/models/<route>`) that splits traffic between
weighted variants, each the base model or one of the account's adapters. Deleting an adapter deletes its variants
(the remaining weights renormalise: they are relative)."""

from __future__ import annotations

from django.db import models

from tenancy.models import TenantOwnedModel


class Route(TenantOwnedModel):
    name = models.SlugField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "routes_route"
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="routes_unique_name_per_account")]

    def __str__(self) -> str:
        return self.name

    @property
    def public_name(self) -> str:
        return f"accounts/{self.account.slug}/models/{self.name}"


class RouteVariant(TenantOwnedModel):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="variants")
    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+")
    adapter = models.ForeignKey("adapters.Adapter", on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    weight = models.PositiveIntegerField()

    class Meta(TenantOwnedModel.Meta):
        db_table = "routes_routevariant"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["route", "base_model", "adapter"], name="routes_unique_variant",
                                    nulls_distinct=False),
            models.CheckConstraint(condition=models.Q(weight__gte=1) & models.Q(weight__lte=10000),
                                   name="routes_weight_range"),
        ]

    def __str__(self) -> str:
        return f"{self.route_id}:{self.adapter_id or self.base_model_id}x{self.weight}"

    @property
    def model_name(self) -> str:
        return self.adapter.public_name if self.adapter_id else self.base_model.public_name
