"""The customer's path through the dashboard in headless Chromium, against a running stack: sign up -> create a key
(the copied secret works with the openai SDK) -> the playground streams a reply from SmolLM2 -> upload a peft adapter
and see it become ready -> the usage page shows those requests' tokens and cost -> revoke the key and the gateway
refuses it. Every page is screenshotted to artifacts/screenshots/ at 1280 px, and again at 390 px."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow

MODEL = "accounts/hearth/models/smollm2-135m-instruct"
EMBEDDING_MODEL = "accounts/hearth/models/all-minilm-l6-v2"  # #16: make up's embedding worker serves it
PASSWORD = "amber-kettle-orbit-42"
PAGES = [("/", "Overview"), ("/keys", "API keys"), ("/models", "Models"), ("/playground", "Playground"),
         ("/adapters", "Adapters"), ("/routes", "Routes"), ("/usage", "Usage"), ("/billing", "Billing"), ("/account", "Account")]
SLOW = 180_000  # ms: the CPU worker shares 2 cores with everything else


def _shot(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def _go(page: Page, stack_url: str, path: str, heading: str) -> None:
    page.goto(stack_url + path)
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
    # Every page's data is loaded: no "Loading …" placeholder left.
    expect(page.get_by_role("status").filter(has_text="Loading")).to_have_count(0, timeout=30_000)


def _eventually(check, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    """Poll a condition on real state (the ledger, the key cache) until it holds."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def test_customer_journey(stack, browser, screenshots, peft_adapter):  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(30_000)
    page = context.new_page()
    email = f"ada-{secrets.token_hex(4)}@example.com"

    # Sign up: DRF's field error first, then the real thing.
    page.goto(stack.url + "/signup")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator(".field-error").first).to_be_visible()
    _shot(page, screenshots, "signup-errors")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    expect(page.get_by_test_id("key-count")).to_have_text("0")
    expect(page.get_by_test_id("base-url")).to_have_text(stack.gateway)
    _shot(page, screenshots, "overview-new")

    # Create a key; the copied secret works with the openai SDK.
    _go(page, stack.url, "/keys", "API keys")
    expect(page.get_by_text("No keys yet")).to_be_visible()
    page.get_by_label("New key name").fill("browser-test")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("secret").inner_text()
    assert re.fullmatch(r"hk_[0-9A-Za-z]{40}", secret), secret
    page.get_by_role("button", name="Copy secret").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == secret
    _shot(page, screenshots, "keys-created")
    client = openai.OpenAI(base_url=stack.gateway, api_key=copied, max_retries=0, timeout=120)
    sdk = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                         max_tokens=8, temperature=0)
    assert sdk.choices[0].message.content
    sdk_tokens = sdk.usage.prompt_tokens + sdk.usage.completion_tokens
    sdk_cost = Decimal(sdk.usage.model_extra["cost"])

    # Playground: a streamed reply with its token counts and cost. The dashboard (one origin) calls the gateway
    # (another origin), so the gateway must answer the browser's CORS preflight.
    assert _gateway_allows(stack, stack.url), f"the gateway answers no CORS preflight for {stack.url}"
    _go(page, stack.url, "/playground", "Playground")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Message").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    usage_line = page.get_by_test_id("turn-usage")
    turn_error = page.get_by_test_id("turn").get_by_role("alert")
    expect(usage_line.or_(turn_error)).to_be_visible(timeout=SLOW)  # the reply finished, or failed
    assert turn_error.count() == 0, turn_error.all_inner_texts()
    assert page.get_by_test_id("reply").inner_text().strip()
    m = re.search(r"(\d+) prompt \+ (\d+) completion tokens", usage_line.inner_text())
    assert m, usage_line.inner_text()
    play_tokens, play_cost, num_requests = int(m[1]) + int(m[2]), _playground_cost(page), 2
    expect(page.get_by_test_id("turn-cost")).to_have_text(re.compile(r"^\$0\.\d+$"))
    page.get_by_role("button", name="View code").click()
    expect(page.locator("pre")).to_contain_text("client.chat.completions.create(")
    expect(page.locator("pre")).to_contain_text(stack.gateway)
    _shot(page, screenshots, "playground")

    # Upload a peft adapter: progress, validation, ready.
    _go(page, stack.url, "/adapters", "Adapters")
    page.get_by_label("Name", exact=True).fill("browser-lora")
    page.get_by_label("Files").set_input_files([str(p) for p in peft_adapter])
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("[data-testid=upload-status][data-phase=ready]")).to_be_visible(timeout=SLOW)
    expect(page.get_by_test_id("adapter-browser-lora").get_by_test_id("adapter-status")).to_have_text("ready")
    _shot(page, screenshots, "adapters")
    _go(page, stack.url, "/models", "Models")
    expect(page.get_by_text("accounts/").filter(has_text="browser-lora")).to_be_visible()
    expect(page.get_by_text(EMBEDDING_MODEL)).to_be_visible()
    _shot(page, screenshots, "models")

    # The ready adapter is a model of this account on the gateway, served by the make-up worker from the shared store.
    adapter_model = next(m.id for m in client.models.list() if m.id.endswith("/models/browser-lora"))
    lora = client.chat.completions.create(model=adapter_model, messages=[{"role": "user", "content": "Say hi."}],
                                          max_tokens=8, temperature=0)
    assert lora.choices[0].message.content
    sdk_tokens += lora.usage.prompt_tokens + lora.usage.completion_tokens
    sdk_cost += Decimal(lora.usage.model_extra["cost"])
    num_requests += 1

    # The embedding model answers through the gateway (make up's embedding worker) and is billed like chat.
    emb = client.embeddings.create(model=EMBEDDING_MODEL, input="What is the capital of France?")
    assert len(emb.data[0].embedding) == 384 and emb.usage.prompt_tokens > 0
    sdk_tokens += emb.usage.prompt_tokens
    sdk_cost += Decimal(emb.usage.model_extra["cost"])
    num_requests += 1

    # Usage: the ledger has both requests (the playground's temporary key and the SDK's), tokens and cost.
    expected_cost = sdk_cost + play_cost
    _go(page, stack.url, "/usage", "Usage")

    def usage_shown() -> bool:
        with page.expect_response(lambda r: "/api/v1/usage" in r.url and "group_by=day" in r.url):
            page.get_by_role("button", name="Refresh").click()
        return page.get_by_test_id("usage-tokens").inner_text() == f"{sdk_tokens + play_tokens:,}"

    _eventually(usage_shown, 60, "the usage page to show both requests")
    expect(page.get_by_test_id("usage-requests")).to_have_text(str(num_requests))
    expect(page.get_by_role("cell", name=EMBEDDING_MODEL, exact=True).first).to_be_visible()  # by-model breakdown
    api_total = page.request.get(stack.url + "/api/v1/usage").json()["total"]
    assert Decimal(api_total["cost_usd"]) == expected_cost
    expect(page.get_by_test_id("usage-cost")).not_to_have_text("$0.00")
    expect(page.locator(".chart rect.bar[height]:not([height='0'])")).not_to_have_count(0)
    _shot(page, screenshots, "usage")

    for path, heading in [("/", "Overview"), ("/billing", "Billing"), ("/account", "Account")]:
        _go(page, stack.url, path, heading)
        _shot(page, screenshots, heading.lower())
    expect(page.get_by_role("cell", name=email)).to_be_visible()

    # Revoke (with confirmation); the gateway refuses the key.
    _go(page, stack.url, "/keys", "API keys")
    row = page.locator("tr", has_text="browser-test")
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(row.locator(".badge")).to_have_text("revoked")
    _shot(page, screenshots, "keys-revoked")

    def refused() -> bool:
        try:
            client.models.list()
        except openai.AuthenticationError:
            return True
        return False

    _eventually(refused, 15, "the gateway to refuse the revoked key")
    context.close()


def _gateway_allows(stack, origin: str) -> bool:  # noqa: ANN001
    """Does the gateway answer the browser's CORS preflight for a streamed chat completion from the dashboard?"""
    import httpx

    response = httpx.options(f"{stack.gateway}/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"}, timeout=10)
    allowed = response.headers.get("access-control-allow-origin")
    return response.status_code < 300 and allowed in (origin, "*")


def _playground_cost(page: Page) -> Decimal:
    # The exact Decimal string the gateway sent in the stream's usage (the visible text is rounded for display).
    text = page.get_by_test_id("turn-cost").get_attribute("data-cost")
    assert text is not None
    return Decimal(text)


def test_every_page_fits_a_phone(stack, browser, screenshots):  # noqa: ANN001
    """390 px wide: no page scrolls sideways, and every page renders its heading."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(stack.url + "/signup")
    page.get_by_label("E-mail").fill(f"phone-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    for path, heading in PAGES:
        _go(page, stack.url, path, heading)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        _shot(page, screenshots, f"390-{heading.lower().replace(' ', '-')}")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
    context.close()


def _signup(page: Page, stack, who: str) -> str:  # noqa: ANN001
    email = f"{who}-{secrets.token_hex(4)}@example.com"
    page.goto(stack.url + "/signup")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    return email


def _no_sideways_scroll(page: Page, what: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{what} scrolls sideways by {overflow}px"


def test_spend_limit_cards_credits_and_csv(stack, browser, screenshots, tmp_path):  # noqa: ANN001
    """Billing self-serve (#18): a limit set in the dashboard refuses the next request at the gateway once this
    month's spend is past it (and the banner says so); a test card added through the SetupIntent form buys
    credits on localstripe; the usage CSV export equals the usage API."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    _signup(page, stack, "payer")
    secret = page.request.post(stack.url + "/api/v1/keys", data={"name": "billing-test"}, headers={
        "X-CSRFToken": next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")}).json()["secret"]
    client = openai.OpenAI(base_url=stack.gateway, api_key=secret, max_retries=0, timeout=120)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}
    first = client.chat.completions.create(**chat)
    cost = Decimal(first.usage.model_extra["cost"])
    _eventually(lambda: Decimal(page.request.get(stack.url + "/api/v1/billing/spend-limit").json()
                                ["month_to_date_usd"]) == cost, 60, "the ledger to hold the first request")

    # Set the limit below this month's spend in the dashboard: the banner appears, the gateway refuses.
    _go(page, stack.url, "/billing", "Billing")
    expect(page.get_by_test_id("month-to-date")).to_have_text(re.compile(r"^\$0\.0"))
    page.get_by_label("New limit (USD)").fill("0.00")
    page.get_by_role("button", name="Save limit").click()
    expect(page.get_by_role("status").filter(has_text="Limit saved")).to_be_visible()
    _go(page, stack.url, "/usage", "Usage")  # the banner is re-checked on every page
    expect(page.get_by_test_id("spend-banner")).to_contain_text("reached your limit")

    def refused() -> bool:
        try:
            client.chat.completions.create(**chat)
        except openai.RateLimitError as exc:
            return exc.code == "insufficient_quota"
        return False

    _eventually(refused, 10, "the gateway to refuse a request past the new limit")
    _go(page, stack.url, "/billing", "Billing")
    page.get_by_label("New limit (USD)").fill("25.00")
    page.get_by_role("button", name="Save limit").click()
    expect(page.get_by_test_id("spend-limit")).to_have_text("$25.00")
    expect(page.get_by_test_id("spend-banner")).to_have_count(0)
    _eventually(lambda: not refused(), 10, "the gateway to serve again under the raised limit")

    # A test card through the SetupIntent form, then credits bought with it.
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Add card").click()
    expect(page.get_by_role("list", name="Cards on file")).to_contain_text("4242")
    page.get_by_label("Buy credits (USD)").fill("5.00")
    page.get_by_role("button", name="Buy", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Payment succeeded")).to_be_visible()
    expect(page.get_by_test_id("credit-balance")).to_have_text("$5.00")
    _no_sideways_scroll(page, "/billing at 1280 px")
    _shot(page, screenshots, "billing-controls")

    # CSV export of the selected period and grouping equals the usage API.
    _go(page, stack.url, "/usage", "Usage")
    page.get_by_label("Export grouped by").select_option("model")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "usage.csv"
    download.value.save_as(path)
    import csv

    rows = list(csv.DictReader(path.open()))
    href = page.get_by_role("link", name="Export CSV").get_attribute("href")
    api = page.request.get(stack.url + href.replace("/usage.csv", "/usage")).json()
    assert [r["cost_usd"] for r in rows[:-1]] == [d["cost_usd"] for d in api["data"]]
    assert rows[-1]["cost_usd"] == api["total"]["cost_usd"] and Decimal(rows[-1]["cost_usd"]) >= cost
    expect(page.get_by_test_id("model-daily-chart")).to_be_visible()
    _no_sideways_scroll(page, "/usage at 1280 px")
    _shot(page, screenshots, "usage-controls")
    page.set_viewport_size({"width": 390, "height": 844})
    for path_, heading in [("/billing", "Billing"), ("/usage", "Usage")]:
        _go(page, stack.url, path_, heading)
        _no_sideways_scroll(page, f"{path_} at 390 px")
        _shot(page, screenshots, f"390-{heading.lower()}-controls")
    context.close()


def test_routes_page_creates_a_route_and_shows_per_variant_figures(stack, browser, screenshots, peft_adapter):  # noqa: ANN001
    """#19: a route of the base model and an uploaded adapter, created on the Routes page; requests through the
    gateway name the variant that served them; the page's per-variant figures sum to the route's total."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    _signup(page, stack, "router")
    csrf = {"X-CSRFToken": next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")}
    slug = page.request.get(stack.url + "/api/v1/account").json()["slug"]
    files = {f"file{i}": {"name": p.name, "mimeType": "application/octet-stream", "buffer": p.read_bytes()}
             for i, p in enumerate(peft_adapter)}
    up = page.request.post(stack.url + "/api/v1/adapters", headers=csrf,
                           multipart={"name": "route-lora", "base_model": "smollm2-135m-instruct", **files})
    assert up.status == 202, up.text()
    uid = up.json()["uid"]
    _eventually(lambda: page.request.get(stack.url + f"/api/v1/adapters/{uid}").json()["status"] == "ready", 120,
                "the adapter to be ready")

    _go(page, stack.url, "/routes", "Routes")
    page.get_by_label("Route name").fill("ab")
    page.get_by_label("Variant 1 model").select_option(MODEL)
    page.get_by_label("Variant 1 weight").fill("50")
    page.get_by_label("Variant 2 model").select_option(f"accounts/{slug}/models/route-lora")
    page.get_by_label("Variant 2 weight").fill("50")
    page.get_by_role("button", name="Create route").click()
    card = page.get_by_test_id("route-ab")
    expect(card.get_by_role("list", name="Variants of ab")).to_contain_text("50.0%")

    secret = page.request.post(stack.url + "/api/v1/keys", data={"name": "routes"}, headers=csrf).json()["secret"]
    client = openai.OpenAI(base_url=stack.gateway, api_key=secret, max_retries=0, timeout=120)
    served = []
    for i in range(6):
        raw = client.chat.completions.with_raw_response.create(
            model=f"accounts/{slug}/models/ab", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
            temperature=0, user=f"user-{i}")
        assert raw.parse().model == f"accounts/{slug}/models/ab"
        served.append(raw.headers["x-hearth-variant"])
    assert set(served) <= {MODEL, f"accounts/{slug}/models/route-lora"}

    route_id = page.request.get(stack.url + "/api/v1/routes").json()[0]["id"]
    _eventually(lambda: page.request.get(stack.url + f"/api/v1/routes/{route_id}/stats").json()["total"]
                ["num_requests"] == 6, 60, "the ledger to hold the route's requests")
    card.get_by_role("button", name="Refresh figures").click()
    expect(card.get_by_test_id("route-total-requests")).to_have_text("6")
    rows = card.get_by_test_id("variant-row")
    expect(rows).to_have_count(2)
    per_variant = [int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(2)]
    assert sum(per_variant) == 6 and sorted(per_variant) == sorted(
        [served.count(MODEL), served.count(f"accounts/{slug}/models/route-lora")])
    _no_sideways_scroll(page, "/routes at 1280 px")
    _shot(page, screenshots, "routes")
    context.close()


def test_key_expiry_scope_limits_and_team_management(stack, browser, screenshots):  # noqa: ANN001
    """#18: a key made with an expiry, the management scope and its own RPM limit (shown in the list, enforced by
    scope on the control plane); a teammate added, promoted and removed on the Account page."""
    import httpx

    mate = browser.new_context()
    mate_page = mate.new_page()
    mate_email = _signup(mate_page, stack, "mate")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    _signup(page, stack, "lead")
    slug = page.request.get(stack.url + "/api/v1/account").json()["slug"]

    _go(page, stack.url, "/keys", "API keys")
    page.get_by_label("New key name").fill("ops")
    page.get_by_label("Expires").select_option("7")
    page.get_by_label("Requests per minute").fill("30")
    page.get_by_label("Also the management API").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("secret").inner_text()
    row = page.locator("tr", has_text="ops")
    expect(row.get_by_test_id("key-scopes")).to_have_text("inference, management")
    expect(row).to_contain_text("30 RPM")
    expect(row.get_by_test_id("key-expires")).not_to_have_text("never")
    key = next(k for k in page.request.get(stack.url + "/api/v1/keys").json() if k["name"] == "ops")
    days = (datetime.fromisoformat(key["expires_at"]) - datetime.now(UTC)).total_seconds() / 86400
    assert 6.9 < days <= 7.0 and key["rpm_limit"] == 30
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(stack.url + "/api/v1/account", headers=bearer).status_code == 200  # management scope
    page.get_by_label("New key name").fill("app-only")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-secret")).to_contain_text("app-only")  # not the first key's secret still
    app_only = page.get_by_test_id("secret").inner_text()
    assert app_only != secret
    assert httpx.get(stack.url + "/api/v1/account", headers={"Authorization": f"Bearer {app_only}"}
                     ).status_code == 403  # inference keys call models, not the control plane
    # #19: a key's default budget per request, set here, holds at the gateway when a request names no max_cost.
    page.get_by_label("New key name").fill("capped")
    page.get_by_label("Budget per request (USD)").fill("0.0001")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-secret")).to_contain_text("capped")
    capped = page.get_by_test_id("secret").inner_text()
    expect(page.locator("tr", has_text="capped")).to_contain_text("$0.0001 a request")
    sdk = openai.OpenAI(base_url=stack.gateway, api_key=capped, max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as refused:  # the prompt alone could cost more than the cap
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 2000}])
    assert refused.value.code == "budget_exceeded" and refused.value.param == "max_cost"
    ok = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert Decimal(ok.usage.model_extra["cost"]) <= Decimal("0.0001")
    _no_sideways_scroll(page, "/keys at 1280 px")
    _shot(page, screenshots, "keys-options")

    _go(page, stack.url, "/account", "Account")
    expect(page.get_by_test_id("limit-requests")).to_contain_text("per minute")
    page.get_by_label("E-mail of someone who has signed up").fill(mate_email)
    page.get_by_role("button", name="Add member").click()
    member = page.get_by_test_id(f"member-{mate_email}")
    expect(member).to_be_visible()
    member.get_by_label(f"Role of {mate_email}").select_option("admin")
    expect(member.get_by_label(f"Role of {mate_email}")).to_have_value("admin")
    headers = {"X-Hearth-Account": slug}
    assert mate_page.request.get(stack.url + "/api/v1/account", headers=headers).status == 200
    member.get_by_role("button", name="Remove").click()
    member.get_by_role("button", name="Yes, remove").click()
    expect(page.get_by_test_id(f"member-{mate_email}")).to_have_count(0)
    assert mate_page.request.get(stack.url + "/api/v1/account", headers=headers).status == 403
    _no_sideways_scroll(page, "/account at 1280 px")
    _shot(page, screenshots, "account-team")
    mate.close()
    context.close()
