"""The architecture dims of the seeded SmolLM2-135M-Instruct (its config.json), so adapters can be validated for it."""

from django.db import migrations

SMOLLM2_SHAPE = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_layers": 30,
    "num_heads": 9,
    "num_kv_heads": 3,
    "head_dim": 64,
}


def seed(apps, schema_editor):
    BaseModel = apps.get_model("catalog", "BaseModel")
    BaseModelShape = apps.get_model("adapters", "BaseModelShape")
    base = BaseModel.objects.filter(slug="smollm2-135m-instruct").first()
    if base is not None:
        BaseModelShape.objects.update_or_create(base_model=base, defaults=SMOLLM2_SHAPE)


def unseed(apps, schema_editor):
    apps.get_model("adapters", "BaseModelShape").objects.filter(base_model__slug="smollm2-135m-instruct").delete()


class Migration(migrations.Migration):
    dependencies = [("adapters", "0001_initial"), ("catalog", "0002_seed_smollm2")]
    operations = [migrations.RunPython(seed, unseed)]
