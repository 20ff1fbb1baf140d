from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from keys import selectors, serializers, services
from keys.models import ApiKey
from tenancy.api import AccountScopedViewSet
from tenancy.roles import require_key_manager, require_person


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AccountScopedViewSet):
    model = ApiKey
    serializer_class = serializers.ApiKeySerializer
    lookup_value_regex = r"\d+"

    def scoped_queryset(self, account: Account) -> QuerySet[ApiKey]:
        return selectors.api_key_list(account=account)

    @extend_schema(request=serializers.ApiKeyCreateSerializer, responses={201: serializers.ApiKeyCreatedSerializer},
                   summary="Create a key (a person only: no key can create keys)")
    def create(self, request: Request) -> Response:
        actor = self.get_actor()
        require_person(actor, "create keys")  # a leaked key must not be able to mint a permanent one
        data = serializers.ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = services.api_key_create(account=actor.account, created_by=request.user, **data.validated_data)
        key.secret = secret  # type: ignore[attr-defined]  # only on this response
        return Response(serializers.ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None}, summary="Revoke a key")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.api_key_revoke(key=self._key_to_revoke())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=serializers.ApiKeySerializer, summary="Revoke a key")
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        key = services.api_key_revoke(key=self._key_to_revoke())
        return Response(serializers.ApiKeySerializer(key).data)

    def _key_to_revoke(self) -> ApiKey:
        key = self.get_object()  # another account's key is a 404 before any role check
        require_key_manager(self.get_actor(), key.created_by_id)
        return key
