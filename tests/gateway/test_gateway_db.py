"""The data module's SQL against the schema Django's migrations build: a migration that renames or drops a column
the gateway reads fails here."""

import pytest

from gateway.auth import hash_key
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
