"""The data module's SQL against the schema Django's migrations build: a migration that renames or drops a column
the gateway reads fails here."""

import pytest

from contracts import api_key_hash as hash_key
from gateway.db import Database

pytestmark = pytest.mark.django_db(transaction=True)


async def _with_db(dsn: str, fn):
    db = Database(dsn, min_size=1, max_size=1)
    await db.open()
    try:
        return await fn(db)
    finally:
        await db.close()


def test_key_lookup_reads_key_and_account(gateway_dsn, make_key):
    import asyncio

    from accounts.models import Account

    key, secret = make_key(rpm_limit=7, tpm_limit=900)
    record = asyncio.run(_with_db(gateway_dsn, lambda db: db.key_by_hash(hash_key(secret))))
    account = Account.objects.get(pk=key.account_id)
    assert record is not None
    assert (record.key_id, record.account_id, record.account_slug) == (key.pk, account.pk, account.slug)
    assert (record.account_status, record.rpm_limit, record.tpm_limit) == ("active", 7, 900)
    assert record.expires_at is None and record.revoked_at is None
    missing = asyncio.run(_with_db(gateway_dsn, lambda db: db.key_by_hash(hash_key(secret + "x"))))
    assert missing is None


def test_base_models_lists_active_models_only(gateway_dsn, catalog):
    import asyncio

    from catalog.models import BaseModel

    BaseModel.objects.filter(slug="stub-model").update(is_active=False)
    entries = asyncio.run(_with_db(gateway_dsn, lambda db: db.base_models()))
    by_slug = {e.base_slug: e for e in entries}
    assert "stub-model" not in by_slug
    smol = by_slug["smollm2-135m-instruct"]
    assert smol.public_name == "accounts/hearth/models/smollm2-135m-instruct"
    assert smol.base_model_id == catalog["smollm2-135m-instruct"].pk
    assert smol.context_length == 8192 and smol.worker_model == "smollm2-135m-instruct"


def test_adapters_for_account_lists_its_ready_adapters_only(gateway_dsn, make_key, catalog):
    import asyncio

    from accounts.models import Account
    from adapters.models import Adapter

    key, _ = make_key()
    other_key, _ = make_key()
    account, other = Account.objects.get(pk=key.account_id), Account.objects.get(pk=other_key.account_id)
    base = catalog["stub-model"]
    ready = Adapter.objects.for_account(account).create(account=account, name="bot", base_model=base, status="ready")
    for name, status in (("queued", "pending"), ("broken", "failed")):
        Adapter.objects.for_account(account).create(account=account, name=name, base_model=base, status=status)
    Adapter.objects.for_account(other).create(account=other, name="theirs", base_model=base, status="ready")

    entries = asyncio.run(_with_db(gateway_dsn, lambda db: db.adapters_for_account(account.pk)))
    assert [(e.public_name, e.adapter_id, e.adapter_uid) for e in entries] == [
        (f"accounts/{account.slug}/models/bot", ready.pk, ready.uid)]
    entry = entries[0]
    assert (entry.base_model_id, entry.base_slug, entry.owned_by) == (base.pk, "stub-model", account.slug)
    assert entry.worker_model == f"stub-model:{ready.uid}"
