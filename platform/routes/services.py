"""Routes: create, change (weights apply live: gateways re-read on contracts.ROUTES_CHANGED_CHANNEL within a second), delete.
Variants name a catalog model (`accounts/hearth/models/<slug>`) or one of the account's own adapters
(`accounts/<account>/models/<adapter>`); only `ready` adapters are ever served."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TypedDict

import redis
from django.db import IntegrityError, transaction

from accounts.models import Account
from adapters.models import Adapter
from catalog.models import BaseModel
from contracts import ROUTES_CHANGED_CHANNEL
from contracts.model_kinds import MODEL_KIND_CHAT
from hearth_platform.errors import ApplicationError, ConflictError
from hearth_platform.redis_client import get_redis
from routes.models import Route, RouteVariant

log = logging.getLogger("hearth.routes")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MODEL_RE = re.compile(r"^accounts/(?P<account>[a-z0-9][a-z0-9_-]*)/models/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)$")
MAX_VARIANTS = 16
MAX_WEIGHT = 10000


class VariantIn(TypedDict):
    model: str
    weight: int


def _publish_changed(account_id: int) -> None:
    try:
        get_redis().publish(ROUTES_CHANGED_CHANNEL, str(account_id))
    except redis.RedisError as exc:  # gateways also re-read routes every few seconds
        log.warning("could not publish a route change to Redis: %s", exc)


def _resolve(account: Account, model: str, index: int) -> tuple[BaseModel, Adapter | None]:
    field = f"variants[{index}].model"
    m = _MODEL_RE.match(model or "")
    if m is None:
        raise ApplicationError("Name a model as accounts/<account>/models/<model>.", field=field)
    if m["account"] == "hearth":
        base = BaseModel.objects.filter(slug=m["name"], is_active=True).first()
        if base is None:
            raise ApplicationError(f"There is no catalog model '{model}'.", field=field, code="model_not_found")
        if base.kind != MODEL_KIND_CHAT:
            raise ApplicationError(f"'{model}' is an {base.kind} model; routes split chat and completion traffic.",
                                   field=field)
        return base, None
    if m["account"] != account.slug:
        raise ApplicationError(f"'{model}' is not a model of this account.", field=field, code="model_not_found")
    adapter = Adapter.objects.for_account(account).select_related("base_model").filter(name=m["name"]).first()
    if adapter is None or adapter.status == Adapter.Status.FAILED:
        raise ApplicationError(f"You have no usable adapter named '{m['name']}'.", field=field, code="model_not_found")
    return adapter.base_model, adapter


def _clean_name(account: Account, name: str) -> str:
    name = (name or "").strip()
    if not _NAME_RE.match(name):
        raise ApplicationError("Route names are 1–64 characters: lowercase letters, digits, '-' and '_', starting "
                               "with a letter or digit.", field="name")
    if Adapter.objects.for_account(account).filter(name=name).exists():
        raise ConflictError(f"An adapter of yours is already called '{name}'; a route needs a name of its own.",
                            field="name", code="duplicate")
    return name


def _set_variants(route: Route, variants: Sequence[VariantIn]) -> None:
    if not variants:
        raise ApplicationError("A route needs at least one variant.", field="variants")
    if len(variants) > MAX_VARIANTS:
        raise ApplicationError(f"A route has at most {MAX_VARIANTS} variants.", field="variants")
    rows, seen = [], set()
    for i, variant in enumerate(variants):
        weight = variant.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise ApplicationError(f"Weights are whole numbers from 1 to {MAX_WEIGHT} (relative to each other).",
                                   field=f"variants[{i}].weight")
        base, adapter = _resolve(route.account, variant.get("model", ""), i)
        key = (base.pk, adapter.pk if adapter else None)
        if key in seen:
            raise ApplicationError("Each model appears once in a route.", field=f"variants[{i}].model")
        seen.add(key)
        rows.append(RouteVariant(account=route.account, route=route, base_model=base, adapter=adapter, weight=weight))
    RouteVariant.objects.for_account(route.account).filter(route=route).delete()
    RouteVariant.dangerously_unscoped.bulk_create(rows)  # rows built for route.account above


@transaction.atomic
def route_create(*, account: Account, name: str, variants: Sequence[VariantIn]) -> Route:
    route = Route(account=account, name=_clean_name(account, name))
    try:
        with transaction.atomic():
            route.save(force_insert=True)
    except IntegrityError:
        raise ConflictError(f"You already have a route named '{route.name}'.", field="name", code="duplicate") from None
    _set_variants(route, variants)
    transaction.on_commit(lambda: _publish_changed(account.pk))
    log.info("route %s created for account %s", route.pk, account.pk)
    return route


@transaction.atomic
def route_update(*, route: Route, variants: Sequence[VariantIn]) -> Route:
    route = Route.objects.for_account(route.account).select_for_update().get(pk=route.pk)
    _set_variants(route, variants)
    route.save(update_fields=["updated_at"])
    account_id = route.account_id
    transaction.on_commit(lambda: _publish_changed(account_id))
    return route


@transaction.atomic
def route_delete(*, route: Route) -> None:
    account_id = route.account_id
    route.delete()
    transaction.on_commit(lambda: _publish_changed(account_id))
