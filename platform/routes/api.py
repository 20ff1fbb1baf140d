from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from billing.api import parse_instant
from hearth_platform.errors import ApplicationError
from routes import selectors, serializers, services
from routes.models import Route
from routes.stats import route_stats
from tenancy.api import AccountScopedViewSet
from tenancy.roles import require_manager

MAX_RANGE = timedelta(days=93)


class RouteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AccountScopedViewSet):
    """A/B traffic splits: a model name of your own that serves weighted variants (the base model or your adapters).
    Everyone in the account can read routes and their figures; owners and admins change them."""

    model = Route
    serializer_class = serializers.RouteSerializer

    def scoped_queryset(self, account: Account) -> QuerySet[Route]:
        return selectors.route_list(account=account)

    def _fresh(self, route: Route) -> dict:
        return serializers.RouteSerializer(selectors.route_list(account=route.account).get(pk=route.pk)).data

    @extend_schema(request=serializers.RouteCreateSerializer, responses={201: serializers.RouteSerializer})
    def create(self, request: Request) -> Response:
        require_manager(self.get_actor(), "create routes")
        body = serializers.RouteCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        route = services.route_create(account=self.get_account(), **body.validated_data)
        return Response(self._fresh(route), status=status.HTTP_201_CREATED)

    @extend_schema(request=serializers.RouteUpdateSerializer, responses=serializers.RouteSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        route = self.get_object()  # another account's route is a 404 before any role check
        require_manager(self.get_actor(), "change routes")
        body = serializers.RouteUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.route_update(route=route, **body.validated_data)
        return Response(self._fresh(route))

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        route = self.get_object()
        require_manager(self.get_actor(), "delete routes")
        services.route_delete(route=route)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[serializers.StatsQuerySerializer], responses=dict)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        route = self.get_object()
        q = serializers.StatsQuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        end = parse_instant(q.validated_data["end"], "end") if q.validated_data.get("end") else timezone.now()
        start = (parse_instant(q.validated_data["start"], "start") if q.validated_data.get("start")
                 else end - timedelta(days=7))
        if start >= end:
            raise ApplicationError("start must be before end.", field="start")
        if end - start > MAX_RANGE:
            raise ApplicationError("Route figures cover at most 93 days.", field="end")
        return Response(route_stats(route=route, start=start, end=end))
