"""The billing guard wired into the gateway: an account over its spend limit is refused before anything else is
spent on it (no rate-limit charge, no worker), with OpenAI's insufficient_quota that the SDK does not retry. The
guard's own decisions (limits, credits, failed payments) are tested in tests/billing; usage.cost is checked against
the ledger formula in test_gateway_api.py (real worker) and test_gateway_adapters.py."""

import openai
import pytest
from conftest import STUB_MODEL
from gateway_testlib import sdk

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


def test_account_over_its_spend_limit_gets_insufficient_quota_without_retries(
        gateway, make_key, django_capture_on_commit_callbacks):
    from accounts.models import Account

    from billing.services import spend_limit_set

    key, secret = make_key()
    _other_key, other_secret = make_key()
    with django_capture_on_commit_callbacks(execute=True):  # published to Redis after commit
        spend_limit_set(account=Account.objects.get(pk=key.account_id), limit_usd="0")
    sent = []
    with pytest.raises(openai.RateLimitError) as info:
        sdk(gateway.url, secret, max_retries=2, sent=sent).chat.completions.create(model=STUB_MODEL,
                                                                                   messages=MESSAGES)
    assert info.value.status_code == 429 and info.value.code == "insufficient_quota"
    assert info.value.body["type"] == "insufficient_quota" and "monthly spend limit ($0.00)" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "x-ratelimit-remaining-requests" not in info.value.response.headers  # refused before admission
    assert len(sent) == 1  # max_retries=2, yet the SDK did not retry

    # Another account is not affected: it gets as far as routing (no stub worker runs here, hence 503).
    with pytest.raises(openai.InternalServerError) as info:
        sdk(gateway.url, other_secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES)
    assert info.value.status_code == 503
