from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Account, Membership, User


def membership_list(*, account: Account) -> QuerySet[Membership]:
    return Membership.objects.for_account(account).select_related("user").order_by("created_at", "id")


def user_membership_list(*, user: User) -> QuerySet[Membership]:
    # Scoped by the person rather than the account: the accounts a user may act for.
    return user.memberships.select_related("account").order_by("created_at", "id")
