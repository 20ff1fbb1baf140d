"""Every kind of caller the control plane knows, for one account: people in each role (sessions) and API keys of
each scope. Role and scope tests take a row of README's "Roles and scopes" matrix and try it with each of these."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from rest_framework.test import APIClient

PASSWORD = "amber-kettle-orbit-42"
# Who -> how they authenticate: a person's session in a role, or a key (its scopes, and whose role it carries).
PEOPLE = ("owner", "admin", "member")
KEYS = ("owner_management_key", "member_management_key", "owner_inference_key")
EVERYONE = (*PEOPLE, *KEYS)


@dataclass
class Principal:
    name: str
    client: APIClient
    user: object  # the person (a key's creator)
    key: object | None = None  # the ApiKey, for key principals


def _person(account: object, role: str) -> object:
    from accounts.services import account_signup, membership_add

    if role == "owner":
        from accounts.models import Membership

        return Membership.objects.for_account(account).select_related("user").get(role="owner").user
    user, _own = account_signup(email=f"{role}-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD,
                                account_name=f"{role}-own")
    membership_add(account=account, acting_role="owner", email=user.email, role=role)
    return user


def new_account(name: str = "ada") -> object:
    from accounts.services import account_signup

    _user, account = account_signup(email=f"{name}-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD,
                                    account_name=name)
    return account


def principals(account: object) -> dict[str, Principal]:
    """owner/admin/member sessions (acting for `account` via X-Hearth-Account) and three keys of `account`."""
    from keys.services import api_key_create

    found: dict[str, Principal] = {}
    for role in PEOPLE:
        user = _person(account, role)
        client = APIClient()
        client.force_login(user)
        client.credentials(HTTP_X_HEARTH_ACCOUNT=account.slug)
        found[role] = Principal(role, client, user)
    for name, creator, scopes in (("owner_management_key", "owner", ["management"]),
                                  ("member_management_key", "member", ["management"]),
                                  ("owner_inference_key", "owner", ["inference"])):
        user = found[creator].user
        key, secret = api_key_create(account=account, name=name, scopes=scopes, created_by=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        found[name] = Principal(name, client, user, key)
    return found
