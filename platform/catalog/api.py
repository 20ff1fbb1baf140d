from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import viewsets

from catalog import selectors, serializers
from catalog.models import BaseModel


class BaseModelViewSet(viewsets.ReadOnlyModelViewSet):
    """The public catalog of base models and their prices (USD per million tokens). Any logged-in user may read it."""

    serializer_class = serializers.BaseModelSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[BaseModel]:
        return selectors.base_model_list()
