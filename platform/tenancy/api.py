"""DRF side of the tenant scope: which account a request acts for, and the one base class for tenant-owned views."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from rest_framework import exceptions, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.models import Account, Membership
from hearth_platform.errors import ApplicationError, ForbiddenError
from tenancy.roles import Actor

ACCOUNT_HEADER = "X-Hearth-Account"  # optional: the slug of the account to act for, when a user has several


def request_actor(request: Request) -> Actor:
    """Who the request acts as. A person acts for the account they chose (ACCOUNT_HEADER) or their first one; an API
    key (authentication already required the management scope) for its own account, with the current role of the
    person who created it: a key whose creator left the account, or that no person created, manages nothing."""
    cached = getattr(request, "_hearth_actor", None)
    if cached is not None:
        return cached
    from keys.models import ApiKey  # keys depends on tenancy, not the other way round at import time

    if isinstance(request.auth, ApiKey):
        key = request.auth
        role = None
        if key.created_by_id is not None:
            role = Membership.objects.for_account(key.account).filter(user_id=key.created_by_id) \
                .values_list("role", flat=True).first()
        if role is None:
            raise exceptions.PermissionDenied(
                "This key's creator is no longer a member of the account, so the key can't manage it."
            )
        result = Actor(account=key.account, role=role, user_id=key.created_by_id, via_key=True)
    else:
        user = request.user
        if not user or not user.is_authenticated or user.pk is None:
            raise exceptions.NotAuthenticated()
        memberships = user.memberships.select_related("account").order_by("created_at", "id")
        slug = request.headers.get(ACCOUNT_HEADER)
        if slug:
            memberships = memberships.filter(account__slug=slug)
        membership = memberships.first()
        if membership is None:
            raise exceptions.PermissionDenied(
                f"You are not a member of account '{slug}'." if slug else "You are not a member of any account."
            )
        result = Actor(account=membership.account, role=membership.role, user_id=user.pk, via_key=False)
    request._hearth_actor = result  # type: ignore[attr-defined]
    return result


def request_membership(request: Request) -> tuple[Account, str]:
    """(account, role) the request acts for (see request_actor)."""
    actor = request_actor(request)
    return actor.account, actor.role


def request_account(request: Request) -> Account:
    return request_membership(request)[0]


class AccountScopedViewSet(viewsets.GenericViewSet):
    """The only base for tenant-owned endpoints. Subclasses say how to list rows *of one account*; they can't set
    `queryset` or override `get_queryset`, so a view that forgets the scope fails at import, not in production."""

    model: ClassVar[type[Model]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "queryset" in cls.__dict__ or "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: implement scoped_queryset(account); queryset/get_queryset are closed")

    def scoped_queryset(self, account: Account) -> QuerySet:
        raise NotImplementedError(f"{type(self).__name__} must implement scoped_queryset(account)")

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no account, no rows
            return self.model.dangerously_unscoped.none()  # type: ignore[attr-defined]
        return self.scoped_queryset(self.get_account())

    def get_account(self) -> Account:
        return request_account(self.request)

    def get_role(self) -> str:
        return request_membership(self.request)[1]

    def get_actor(self) -> Actor:
        return request_actor(self.request)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus typed service errors, Django ValidationErrors and Django's request-size refusals in DRF's
    shape."""
    if isinstance(exc, ForbiddenError):
        exc = exceptions.PermissionDenied(exc.message)
    elif isinstance(exc, ApplicationError):
        detail = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        exc = exceptions.ValidationError(detail, code=exc.code)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, RequestDataTooBig):  # Django's body bounds, hit while DRF parses: its HTML 400 otherwise
        exc = RequestTooLarge("The request body is larger than this endpoint accepts.")
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        what = "form fields" if isinstance(exc, TooManyFieldsSent) else "files"
        exc = exceptions.ParseError(f"The request has too many {what}.")
    return drf_exception_handler(exc, context)


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "too_large"
