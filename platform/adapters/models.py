from __future__ import annotations

import uuid

from django.db import models

from tenancy.models import TenantOwnedModel


def new_uid() -> str:
    return uuid.uuid4().hex  # 32 hex chars: safe in paths and in the worker's `base:uid` model name


class BaseModelShape(models.Model):
    """The architecture dims of a catalog base model that an adapter's tensors must fit. Validation reads these
    instead of the base weights. Kept in this app (one row per catalog model that accepts adapters)."""

    base_model = models.OneToOneField("catalog.BaseModel", on_delete=models.CASCADE, related_name="shape")
    hidden_size = models.PositiveIntegerField()
    intermediate_size = models.PositiveIntegerField()
    num_layers = models.PositiveIntegerField()
    num_heads = models.PositiveIntegerField()
    num_kv_heads = models.PositiveIntegerField()
    head_dim = models.PositiveIntegerField()

    class Meta:
        db_table = "adapters_basemodelshape"

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """HF projection name -> (in_features, out_features), named as peft names them for the architecture (Phi's
        fused qkv_proj / gate_up_proj); the engine's own table (workers.model_config), so both sides agree."""
        from workers.model_config import adapter_projections  # torch-free

        return adapter_projections(
            self.base_model.architecture, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
        )


class Adapter(TenantOwnedModel):
    """An uploaded LoRA adapter: the model `accounts/<account slug>/models/<name>`, served on its base model's
    workers as `<base slug>:<uid>` once `ready`. Files live in the adapter store at `<store>/<uid>/`."""

    class Status(models.TextChoices):
        PENDING = "pending"
        VALIDATING = "validating"
        READY = "ready"
        FAILED = "failed"

    uid = models.CharField(max_length=32, unique=True, default=new_uid, editable=False)
    name = models.SlugField(max_length=64)
    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True, default="")
    rank = models.PositiveIntegerField(null=True, blank=True)
    lora_alpha = models.FloatField(null=True, blank=True)
    use_rslora = models.BooleanField(default=False)
    target_modules = models.JSONField(default=list, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    # Times validation started; the sweep retries an adapter stuck in `validating` (its task died) up to a bound.
    validation_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "adapters_adapter"
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="adapters_unique_name_per_account")]

    def __str__(self) -> str:
        return f"{self.name} ({self.uid})"

    @property
    def public_name(self) -> str:
        return f"accounts/{self.account.slug}/models/{self.name}"

    @property
    def worker_model(self) -> str:
        return f"{self.base_model.slug}:{self.uid}"
