"""Sign-up, log-in/out (session + CSRF), me, the current account and its members. Views stay thin."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, serializers, services
from accounts.models import Membership
from hearth_platform.throttling import LoginThrottle, SignupThrottle
from tenancy.api import AccountScopedViewSet, request_membership
from tenancy.roles import require_person


class CsrfEnforced(permissions.BasePermission):
    """DRF checks CSRF only for session-authenticated users; sign-up and log-in need it too (login CSRF)."""

    message = "CSRF Failed."

    def has_permission(self, request: Request, view: APIView) -> bool:
        SessionAuthentication().enforce_csrf(request)  # raises PermissionDenied with the reason
        return True


class IsPerson(permissions.BasePermission):
    """A logged-in person, not an API key: keys can't act on the session or the person's profile."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.pk is not None)


class CsrfView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=serializers.CsrfTokenSerializer, summary="Get a CSRF token (also set as a cookie)")
    def get(self, request: Request) -> Response:
        # get_token() also makes the CSRF middleware set the csrftoken cookie on this response.
        return Response({"csrf_token": get_token(request._request)})


class SignupView(APIView):
    permission_classes = [CsrfEnforced]
    throttle_classes = [SignupThrottle]

    @extend_schema(request=serializers.SignupSerializer, responses={201: serializers.SignupResultSerializer})
    def post(self, request: Request) -> Response:
        data = serializers.SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user, account = services.account_signup(**data.validated_data)
        body = serializers.SignupResultSerializer({"user": user, "account": account}).data
        return Response(body, status=status.HTTP_201_CREATED)


class LoginView(APIView):
    permission_classes = [CsrfEnforced]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=serializers.LoginSerializer, responses=serializers.LoginResultSerializer)
    def post(self, request: Request) -> Response:
        data = serializers.LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request._request, email=data.validated_data["email"].lower(),
                            password=data.validated_data["password"])
        if user is None:
            return Response({"detail": "E-mail or password is incorrect."}, status=status.HTTP_400_BAD_REQUEST)
        login(request._request, user)
        token = get_token(request._request)
        return Response(serializers.LoginResultSerializer({"user": user, "csrf_token": token}).data)


class LogoutView(APIView):
    permission_classes = [IsPerson]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsPerson]

    @extend_schema(responses=serializers.MeSerializer)
    def get(self, request: Request) -> Response:
        memberships = selectors.user_membership_list(user=request.user)
        return Response(serializers.MeSerializer({"user": request.user, "memberships": memberships}).data)


class AccountView(APIView):
    @extend_schema(responses=serializers.AccountDetailSerializer)
    def get(self, request: Request) -> Response:
        account, _role = request_membership(request)
        return Response(serializers.AccountDetailSerializer(account).data)

    @extend_schema(request=serializers.AccountUpdateSerializer, responses=serializers.AccountDetailSerializer)
    def patch(self, request: Request) -> Response:
        account, role = request_membership(request)
        data = serializers.AccountUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.account_update(account=account, acting_role=role, **data.validated_data)
        return Response(serializers.AccountDetailSerializer(account).data)


class MemberViewSet(mixins.ListModelMixin, AccountScopedViewSet):
    """People of the account. Adding, removing and changing roles need a person (a session), never an API key."""

    model = Membership
    serializer_class = serializers.MemberSerializer
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def scoped_queryset(self, account):  # type: ignore[no-untyped-def]
        return selectors.membership_list(account=account)

    @extend_schema(request=serializers.MemberAddSerializer, responses={201: serializers.MemberSerializer})
    def create(self, request: Request) -> Response:
        require_person(self.get_actor(), "add members")
        data = serializers.MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_add(account=self.get_account(), acting_role=self.get_role(),
                                             **data.validated_data)
        return Response(serializers.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=serializers.MemberRoleSerializer, responses=serializers.MemberSerializer,
                   summary="Change a member's role (owners only; the last owner stays an owner)")
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        actor = self.get_actor()
        require_person(actor, "change roles")
        membership = self.get_object()  # another account's member is a 404 before any role check
        data = serializers.MemberRoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_role_set(account=actor.account, membership=membership, acting_role=actor.role,
                                                  **data.validated_data)
        return Response(serializers.MemberSerializer(membership).data)

    @extend_schema(request=None, responses={204: None},
                   summary="Remove a member, or leave (their keys here are revoked; the last owner can't go)")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        actor = self.get_actor()
        require_person(actor, "remove members")
        membership = self.get_object()
        services.membership_remove(account=actor.account, membership=membership, acting_role=actor.role,
                                   acting_user_id=actor.user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
