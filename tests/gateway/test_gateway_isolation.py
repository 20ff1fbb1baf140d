"""Issue 12, item 3 through the gateway: the prefix cache is per account. The reproduction: account B sent a prompt,
account A sent the same text and saw cached_tokens 96 of 108 (and paid less). Now the gateway names the caller's
account to the worker (contracts.ACCOUNT_ID_HEADER) and the worker's block hash chain starts from it: another
account's identical prompt is a full miss, while the same account's repeat still hits."""

import pytest
from conftest import SMOLLM2
from gateway_testlib import sdk, wait_for_workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PUBLIC = f"accounts/hearth/models/{SMOLLM2}"
# Long enough for several full KV blocks; a per-test nonce keeps earlier runs' cached blocks out of the way.
PROMPT = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. " * 4


def _cached(client, prompt: str) -> tuple[int, int]:
    out = client.completions.create(model=PUBLIC, prompt=prompt, max_tokens=1, temperature=0)
    details = out.usage.prompt_tokens_details
    return (details.cached_tokens or 0) if details else 0, out.usage.prompt_tokens


def test_identical_prompts_from_two_accounts_share_no_cached_blocks(gateway, real_worker, make_key):
    import time

    wait_for_workers(gateway, SMOLLM2)
    _b, secret_b = make_key()
    _a, secret_a = make_key()
    prompt = f"{time.time_ns()} {PROMPT}"
    account_b, account_a = sdk(gateway.url, secret_b), sdk(gateway.url, secret_a)

    assert _cached(account_b, prompt)[0] == 0  # first sight of this text anywhere
    warm, total = _cached(account_b, prompt)
    assert warm >= 32 and warm < total  # within one account caching is unchanged
    assert _cached(account_a, prompt)[0] == 0  # another account: nothing cached, nothing revealed, full price
    assert _cached(account_a, prompt)[0] == warm  # and its own repeat hits its own blocks
