"""Who may do what in an account: the role matrix of README's "Roles and scopes", as checks the views and services
call. A request acts as a person (session) or as an API key with the management scope, which acts with the current
role of the person who created it; anything that changes people or mints keys needs the person themself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from accounts.models import Membership
from hearth_platform.errors import ForbiddenError

if TYPE_CHECKING:
    from accounts.models import Account

MANAGER_ROLES = frozenset({Membership.Role.OWNER.value, Membership.Role.ADMIN.value})


@dataclass(frozen=True, slots=True)
class Actor:
    account: Account
    role: str
    user_id: int  # the person, or the person who created the key
    via_key: bool

    @property
    def is_manager(self) -> bool:
        return self.role in MANAGER_ROLES

    @property
    def is_owner(self) -> bool:
        return self.role == Membership.Role.OWNER


def require_manager(actor: Actor, what: str) -> None:
    if not actor.is_manager:
        raise ForbiddenError(f"Only owners and admins can {what}.")


def require_person(actor: Actor, what: str) -> None:
    if actor.via_key:
        raise ForbiddenError(f"API keys can't {what}; sign in to the dashboard (or use a session) to do it.")


def require_key_manager(actor: Actor, created_by_id: int | None) -> None:
    """Owners and admins revoke any key of the account; a member only the keys they created."""
    if not actor.is_manager and created_by_id != actor.user_id:
        raise ForbiddenError("Members can revoke only the keys they created; ask an owner or admin.")
