from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from adapters import selectors, serializers, services, uploads
from adapters.models import Adapter
from tenancy.api import AccountScopedViewSet
from tenancy.roles import require_manager


class AdapterViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AccountScopedViewSet):
    """LoRA adapters of the caller's account. Upload is multipart; validation runs in the background."""

    model = Adapter
    serializer_class = serializers.AdapterSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    lookup_field = "uid"
    lookup_value_regex = r"[0-9a-f]{32}"

    def initialize_request(self, request: HttpRequest, *args: object, **kwargs: object) -> Request:
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "create":  # ViewSetMixin has set the action; nothing has read the body yet
            uploads.limit_upload(request)
        return drf_request

    def scoped_queryset(self, account: Account) -> QuerySet[Adapter]:
        return selectors.adapter_list(account=account)

    @extend_schema(request={"multipart/form-data": serializers.AdapterUploadSerializer},
                   responses={202: serializers.AdapterSerializer, 413: None})
    def create(self, request: Request) -> Response:
        data = serializers.AdapterUploadSerializer(data={k: request.data.get(k) for k in ("name", "base_model")})
        data.is_valid(raise_exception=True)
        files = [f for key in request.FILES for f in request.FILES.getlist(key)]
        adapter = services.adapter_upload(account=self.get_account(), files=files, **data.validated_data)
        return Response(serializers.AdapterSerializer(adapter).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, uid: str | None = None) -> Response:
        adapter = self.get_object()  # another account's adapter is a 404 before any role check
        require_manager(self.get_actor(), "delete adapters")  # members upload and use them; deleting breaks callers
        services.adapter_delete(adapter=adapter)
        return Response(status=status.HTTP_204_NO_CONTENT)
