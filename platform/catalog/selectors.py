from __future__ import annotations

from django.db.models import QuerySet

from catalog.models import BaseModel


def base_model_list() -> QuerySet[BaseModel]:
    # The catalog is public to every account; inactive models are hidden.
    return BaseModel.objects.filter(is_active=True).order_by("slug")
