from __future__ import annotations

import secrets

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from accounts.models import Account, Membership, User
from hearth_platform.errors import ApplicationError, ConflictError, ForbiddenError

NAME_MAX_LENGTH = Account._meta.get_field("name").max_length
EMAIL_MAX_LENGTH = User._meta.get_field("email").max_length
_SLUG_BASE_LENGTH = 40


def _clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not email:
        raise ApplicationError("Enter your e-mail address.", field="email", code="required")
    if len(email) > EMAIL_MAX_LENGTH:
        raise ApplicationError(f"E-mail addresses are at most {EMAIL_MAX_LENGTH} characters.", field="email")
    try:
        validate_email(email)
    except ValidationError:
        raise ApplicationError("Enter a valid e-mail address.", field="email") from None
    return email


def _clean_account_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the account a name.", field="account_name", code="required")
    if len(name) > NAME_MAX_LENGTH:
        raise ApplicationError(f"Account names are at most {NAME_MAX_LENGTH} characters.", field="account_name")
    return name


def _unique_slug(source: str) -> str:
    base = slugify(source)[:_SLUG_BASE_LENGTH].strip("-") or "account"
    if base == "hearth":  # `accounts/hearth/...` names the public catalog
        base = "hearth-user"
    slug = base
    while Account.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def account_signup(*, email: str, password: str, account_name: str | None = None) -> tuple[User, Account]:
    """A new person with their own account (the tenant), whose owner they are."""
    email = _clean_email(email)
    name = _clean_account_name(account_name if account_name is not None else email.split("@")[0])
    if not password:
        raise ApplicationError("Choose a password.", field="password", code="required")
    if User.objects.filter(email__iexact=email).exists():
        raise ConflictError("An account with this e-mail address already exists. Log in instead.", field="email")
    user = User(email=email)
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        raise ApplicationError(" ".join(exc.messages), field="password", code="weak_password") from None
    user.set_password(password)
    try:
        with transaction.atomic():  # a savepoint: a concurrent sign-up with the same e-mail loses cleanly
            user.save(force_insert=True)
    except IntegrityError:
        raise ConflictError("An account with this e-mail address already exists. Log in instead.", field="email") from None
    account = Account.objects.create(slug=_unique_slug(name), name=name)
    Membership(account=account, user=user, role=Membership.Role.OWNER).save(force_insert=True)
    return user, account


@transaction.atomic
def account_update(*, account: Account, acting_role: str, name: str) -> Account:
    if acting_role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise ForbiddenError("Only owners and admins can change the account.")
    account.name = _clean_account_name(name)
    account.save(update_fields=["name"])
    return account


@transaction.atomic
def membership_add(*, account: Account, acting_role: str, email: str, role: str) -> Membership:
    """Add a person who has already signed up to the account."""
    if acting_role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise ForbiddenError("Only owners and admins can add members.")
    if role not in Membership.Role.values:
        raise ApplicationError(f"Role must be one of: {', '.join(Membership.Role.values)}.", field="role")
    if role == Membership.Role.OWNER and acting_role != Membership.Role.OWNER:
        raise ForbiddenError("Only an owner can add another owner.")
    email = _clean_email(email)
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        raise ApplicationError("Nobody has signed up with this e-mail address yet.", field="email", code="not_found")
    if Membership.objects.for_account(account).filter(user=user).exists():
        raise ConflictError("This person is already a member of the account.", field="email")
    membership = Membership(account=account, user=user, role=role)
    try:
        with transaction.atomic():
            membership.save(force_insert=True)
    except IntegrityError:
        raise ConflictError("This person is already a member of the account.", field="email") from None
    return membership


def _owner_count_locked(account: Account) -> int:
    # Row locks on the owners: two owners removing or demoting each other at once can't both succeed.
    return len(Membership.objects.for_account(account).select_for_update().filter(role=Membership.Role.OWNER))


@transaction.atomic
def membership_remove(*, account: Account, membership: Membership, acting_role: str, acting_user_id: int) -> None:
    """Remove a person from the account (anyone may leave it). The keys they created there are revoked: they were
    made under their role, which is gone."""
    from keys.services import api_key_revoke_created_by  # keys imports accounts.models; no cycle at import time

    leaving = membership.user_id == acting_user_id
    if not leaving:
        if acting_role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
            raise ForbiddenError("Only owners and admins can remove members.")
        if membership.role == Membership.Role.OWNER and acting_role != Membership.Role.OWNER:
            raise ForbiddenError("Only an owner can remove an owner.")
    if membership.role == Membership.Role.OWNER and _owner_count_locked(account) <= 1:
        raise ConflictError("An account needs an owner: make someone else owner before the last one leaves.",
                            field="role", code="last_owner")
    api_key_revoke_created_by(account=account, user_id=membership.user_id)
    membership.delete()


@transaction.atomic
def membership_role_set(*, account: Account, membership: Membership, acting_role: str, role: str) -> Membership:
    if acting_role != Membership.Role.OWNER:
        raise ForbiddenError("Only an owner can change roles.")
    if role not in Membership.Role.values:
        raise ApplicationError(f"Role must be one of: {', '.join(Membership.Role.values)}.", field="role")
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER and _owner_count_locked(account) <= 1:
        raise ConflictError("An account needs an owner: make someone else owner before changing this role.",
                            field="role", code="last_owner")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership
