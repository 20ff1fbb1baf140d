from __future__ import annotations

from django.db import models

from contracts.model_kinds import MODEL_KIND_CHAT, MODEL_KINDS


class BaseModel(models.Model):
    """A base model in the public catalog. Not tenant-owned: every account may call it.

    Prices are USD per million tokens; an adapter costs what its base model costs. The gateway reads this table,
    `kind` included: chat models serve /v1/chat/completions and /v1/completions, embedding models /v1/embeddings."""

    slug = models.SlugField(max_length=100, unique=True)
    public_name = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200)
    architecture = models.CharField(max_length=50)
    kind = models.CharField(max_length=20, choices=[(k, k) for k in MODEL_KINDS], default=MODEL_KIND_CHAT)
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
