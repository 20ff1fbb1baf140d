from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keys', '0003_per_key_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='apikey',
            name='max_cost_per_request',
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=12, null=True),
        ),
    ]
