"""The answer for /api/ paths that match no endpoint: DRF's 404 (`{"detail": ...}`), not Django's HTML page, so an
API client always gets JSON in one shape (found by the schemathesis run, tests/platform/test_api_fuzz.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView


@extend_schema(exclude=True)
class ApiNotFound(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise NotFound("There is no such API endpoint or object.")
