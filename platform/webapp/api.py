"""What only the dashboard needs: its config (the gateway's base URL) and a short-lived key for the playground, so
the browser never holds a long-lived secret. Each new playground key revokes the session's previous one."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import IsPerson
from billing import conf as billing_conf
from contracts import SCOPE_INFERENCE
from keys import services as key_services
from keys.models import ApiKey
from tenancy.api import request_account
from webapp import conf

PLAYGROUND_KEY_PREFIX = "playground (temporary)"
_SESSION_KEY = "hearth_playground_key_id"


class ConfigSerializer(serializers.Serializer):
    gateway_url = serializers.CharField(help_text="The OpenAI-compatible base URL, e.g. `http://host:8080/v1`.")
    card_form = serializers.ChoiceField(choices=["elements", "test", "none"],
                                        help_text="How the billing page takes a card (see billing.conf.card_form).")
    stripe_publishable_key = serializers.CharField(allow_blank=True)


class PlaygroundTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    secret = serializers.CharField(help_text="A key that expires at `expires_at`; it shows in the keys list.")
    expires_at = serializers.DateTimeField()
    gateway_url = serializers.CharField()


class ConfigView(APIView):
    @extend_schema(responses=ConfigSerializer, summary="Dashboard configuration")
    def get(self, request: Request) -> Response:
        return Response({"gateway_url": conf.gateway_url(request._request), "card_form": billing_conf.card_form(),
                         "stripe_publishable_key": billing_conf.stripe_publishable_key()})


class PlaygroundTokenView(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={201: PlaygroundTokenSerializer}, summary="Issue a short-lived key")
    def post(self, request: Request) -> Response:
        account = request_account(request)
        previous = request.session.get(_SESSION_KEY)
        if previous is not None:
            old = ApiKey.objects.for_account(account).filter(pk=previous, revoked_at__isnull=True).first()
            if old is not None:
                key_services.api_key_revoke(key=old)
        expires_at = timezone.now() + conf.playground_key_ttl()
        name = f"{PLAYGROUND_KEY_PREFIX} until {expires_at:%H:%M} UTC"
        # Inference only: the browser holds this secret, so it must not reach the control plane (nor mint keys).
        key, secret = key_services.api_key_create(account=account, name=name, expires_at=expires_at,
                                                  scopes=[SCOPE_INFERENCE], created_by=request.user)
        request.session[_SESSION_KEY] = key.pk
        body = {"id": key.pk, "name": key.name, "secret": secret, "expires_at": expires_at,
                "gateway_url": conf.gateway_url(request._request)}
        return Response(PlaygroundTokenSerializer(body).data, status=status.HTTP_201_CREATED)
