from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    """A base model in the public catalog. Not tenant-owned: every account may call it.

    Prices are USD per million tokens; an adapter costs what its base model costs. The gateway reads this table."""

    slug = models.SlugField(max_length=100, unique=True)
    public_name = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200)
    architecture = models.CharField(max_length=50)
    context_length = models.PositiveIntegerField()
    weights_uri = models.CharField(max_length=500)
    price_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    price_cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    price_output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "catalog_basemodel"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.public_name
