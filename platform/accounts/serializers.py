from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account, Membership, User


class SignupSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"})
    account_name = serializers.CharField(max_length=100, required=False, help_text="Defaults to the e-mail's name part.")


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"})


class CsrfTokenSerializer(serializers.Serializer):
    csrf_token = serializers.CharField(help_text="Send it back in the X-CSRFToken header on unsafe requests.")


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "date_joined"]
        read_only_fields = fields


class AccountSerializer(serializers.ModelSerializer):
    class Meta:
        model = Account
        fields = ["id", "slug", "name", "status", "rpm_limit", "tpm_limit", "created_at"]
        read_only_fields = ["id", "slug", "status", "rpm_limit", "tpm_limit", "created_at"]


class RateLimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField(help_text="per minute (the account's own, or the platform default)")
    remaining = serializers.IntegerField(allow_null=True, help_text="left in the gateway's bucket now; null if unknown")


class RateLimitsSerializer(serializers.Serializer):
    rpm = RateLimitSerializer()
    tpm = RateLimitSerializer()


class AccountDetailSerializer(AccountSerializer):
    rate_limits = serializers.SerializerMethodField()

    class Meta(AccountSerializer.Meta):
        fields = [*AccountSerializer.Meta.fields, "rate_limits"]
        read_only_fields = [*AccountSerializer.Meta.read_only_fields, "rate_limits"]

    @extend_schema_field(RateLimitsSerializer)
    def get_rate_limits(self, account: Account) -> dict:
        from accounts.rate_limits import rate_limit_state

        return rate_limit_state(account)


class AccountUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class MyMembershipSerializer(serializers.ModelSerializer):
    account = AccountSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["account", "role"]
        read_only_fields = fields


class MeSerializer(serializers.Serializer):
    user = UserSerializer()
    memberships = MyMembershipSerializer(many=True)


class SignupResultSerializer(serializers.Serializer):
    user = UserSerializer()
    account = AccountSerializer()


class LoginResultSerializer(serializers.Serializer):
    user = UserSerializer()
    csrf_token = serializers.CharField(help_text="Logging in rotates the CSRF token; use this one from now on.")


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = fields


class MemberAddSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)
