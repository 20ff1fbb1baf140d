"""The gateway's read-only view of the Django-owned tables: plain SQL through one psycopg async pool.

Only SELECTs live here; every write (last use, usage) goes to Redis for control-plane tasks to batch into Postgres.
Column names are pinned in docs/contracts.md; tests/gateway/test_gateway_db.py runs each query against the migrated schema.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from contracts import SCOPE_INFERENCE, worker_model_name
from contracts.model_kinds import MODEL_KIND_CHAT

KEY_SQL = """
SELECT k.id, k.account_id, k.expires_at, k.revoked_at, a.slug, a.status, a.rpm_limit, a.tpm_limit, k.scopes,
       k.rpm_limit, k.tpm_limit, k.max_cost_per_request
FROM keys_apikey k JOIN accounts_account a ON a.id = k.account_id
WHERE k.hashed_key = %s
"""

BASE_MODELS_SQL = """
SELECT id, slug, public_name, context_length, created_at, kind
FROM catalog_basemodel
WHERE is_active
ORDER BY public_name
"""

# An account's servable adapters: `ready` ones on an active base model. Public name accounts/<account slug>/models/<name>.
ADAPTERS_SQL = """
SELECT ad.id, ad.uid, ad.name, ad.created_at, a.slug, b.id, b.slug, b.context_length, b.kind
FROM adapters_adapter ad
JOIN accounts_account a ON a.id = ad.account_id
JOIN catalog_basemodel b ON b.id = ad.base_model_id
WHERE ad.account_id = %s AND ad.status = 'ready' AND b.is_active
ORDER BY ad.name
"""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: int
    account_id: int
    account_slug: str
    account_status: str
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    scopes: tuple[str, ...] = (SCOPE_INFERENCE,)  # contracts.API_KEY_SCOPES
    key_rpm_limit: int | None = None  # the key's own limits (keys_apikey), at most the account's
    key_tpm_limit: int | None = None
    max_cost_per_request: Decimal | None = None  # the key's default budget cap (gateway/budget.py)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One name a key may call: a catalog base model, or an account's adapter served on its base."""

    public_name: str  # accounts/hearth/models/<slug> or accounts/<account>/models/<adapter>
    base_model_id: int
    base_slug: str  # the worker pool's model name
    context_length: int
    created: int  # unix seconds, as OpenAI's Model.created
    owned_by: str
    adapter_id: int | None = None
    adapter_uid: str | None = None
    kind: str = MODEL_KIND_CHAT  # catalog_basemodel.kind (contracts.model_kinds); an adapter serves its base's kind

    @property
    def worker_model(self) -> str:
        # What the worker is asked for: the base slug, or base:adapter_uid (docs/contracts.md, worker HTTP).
        return worker_model_name(self.base_slug, self.adapter_uid)


class Database:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 30.0) -> None:
        # timeout_s: how long a query waits for a pooled connection; while Postgres is down that is how long a
        # request waits before the gateway serves from its caches or answers 503 (gateway/outages.py).
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False, timeout=timeout_s, kwargs={"autocommit": True}
        )

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[TupleRow]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def key_by_hash(self, hashed_key: str) -> KeyRecord | None:
        rows = await self.fetch(KEY_SQL, (hashed_key,))
        if not rows:
            return None
        key_id, account_id, expires_at, revoked_at, slug, status, rpm, tpm, scopes, key_rpm, key_tpm, max_cost = rows[0]
        return KeyRecord(key_id, account_id, slug, status, rpm, tpm, expires_at, revoked_at, tuple(scopes), key_rpm,
                         key_tpm, max_cost)

    async def base_models(self) -> list[ModelEntry]:
        rows = await self.fetch(BASE_MODELS_SQL)
        return [
            ModelEntry(public_name, model_id, slug, context_length, int(created_at.timestamp()), "hearth", kind=kind)
            for model_id, slug, public_name, context_length, created_at, kind in rows
        ]

    async def adapters_for_account(self, account_id: int) -> list[ModelEntry]:
        rows = await self.fetch(ADAPTERS_SQL, (account_id,))
        return [
            ModelEntry(f"accounts/{account_slug}/models/{name}", base_id, base_slug, context_length,
                       int(created_at.timestamp()), account_slug, adapter_id=adapter_id, adapter_uid=uid, kind=kind)
            for adapter_id, uid, name, created_at, account_slug, base_id, base_slug, context_length, kind in rows
        ]
