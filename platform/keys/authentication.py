"""`Authorization: Bearer hk_…` on the management API: only a key with the management scope is let in; it acts for its
account with its creator's role (tenancy.api.request_actor)."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from contracts import SCOPE_MANAGEMENT
from keys.models import SECRET_PREFIX, ApiKey
from keys.selectors import api_key_verify


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """Stands in for request.user when a request is authenticated by an API key (there is no person behind it)."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> None:
        return None

    id = pk

    def __str__(self) -> str:
        return f"api-key:{self.api_key.pk}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer hk_…'.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        if not secret.startswith(SECRET_PREFIX):
            raise exceptions.AuthenticationFailed("Invalid API key: Hearth keys start with 'hk_'.")
        found = api_key_verify(secret)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        key, _account = found
        if SCOPE_MANAGEMENT not in key.scopes:
            raise exceptions.PermissionDenied(
                "This API key has the inference scope only: it calls models through the gateway (/v1). Managing the "
                "account takes a key created with the management scope, or the dashboard."
            )
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="hearth"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "keys.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A Hearth API key, `hk_` + 40 characters."}
