from django.contrib import admin

from catalog.models import BaseModel


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "public_name", "architecture", "context_length", "price_input_per_mtok",
                    "price_cached_input_per_mtok", "price_output_per_mtok", "is_active"]
    list_filter = ["is_active", "architecture"]
