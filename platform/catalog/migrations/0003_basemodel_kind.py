from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_seed_smollm2")]

    operations = [
        migrations.AddField(
            model_name="basemodel",
            name="kind",
            field=models.CharField(choices=[("chat", "chat"), ("embedding", "embedding")], default="chat",
                                   max_length=20),
        ),
    ]
