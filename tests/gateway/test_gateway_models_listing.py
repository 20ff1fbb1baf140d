"""`/v1/models` tells a developer what each model costs and how long a context it takes: beside OpenAI's fields,
context_length and the three catalog prices (USD per million tokens, decimal strings, never floats), the same
numbers the control plane's /api/v1/models shows. An adapter lists its base model's context and prices."""

from decimal import Decimal

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_models_carry_context_length_and_prices(gateway, make_key, catalog):
    from accounts.models import Account
    from adapters.models import Adapter
    from catalog.models import BaseModel

    base = next(iter(catalog.values()))
    BaseModel.objects.filter(pk=base.pk).update(context_length=131072, price_input_per_mtok=Decimal("0.123456"),
                                                price_cached_input_per_mtok=Decimal("0.01"),
                                                price_output_per_mtok=Decimal("2.5"))  # fmt: skip
    key, secret = make_key()
    account = Account.objects.get(pk=key.account_id)
    Adapter.objects.for_account(account).create(account=account, name="bot", base_model=base, status="ready")
    header = {"Authorization": f"Bearer {secret}"}
    listing = httpx.get(f"{gateway.url}/v1/models", headers=header).json()["data"]
    by_id = {m["id"]: m for m in listing}
    entry = by_id[base.public_name]
    assert {"id", "object", "created", "owned_by"} <= entry.keys() and entry["object"] == "model"
    assert entry["context_length"] == 131072
    assert (Decimal(entry["price_input_per_mtok"]), Decimal(entry["price_cached_input_per_mtok"]),
            Decimal(entry["price_output_per_mtok"])) == (Decimal("0.123456"), Decimal("0.01"), Decimal("2.5"))
    assert all(isinstance(entry[k], str) for k in entry if k.startswith("price_"))  # money is never a float
    adapter = by_id[f"accounts/{account.slug}/models/bot"]
    assert adapter["context_length"] == 131072 and adapter["price_output_per_mtok"] == entry["price_output_per_mtok"]
    one = httpx.get(f"{gateway.url}/v1/models/{base.public_name}", headers=header).json()
    assert one["context_length"] == 131072 and Decimal(one["price_input_per_mtok"]) == Decimal("0.123456")
