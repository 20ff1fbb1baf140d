"""The cost formula, shared by the ledger (billing.ingest) and the gateway (gateway.billing_guard). Pure Decimal, no
Django, so the gateway may import it: one formula, so `usage.cost` in a response equals the ledger's cost.

Prices are USD per million tokens with 6 decimal places (catalog_basemodel numeric(12,6)); a cost is therefore exact
at 12 decimal places (tokens * price / 10^6), and that is what the ledger stores. Cached prompt tokens are a part of
`prompt_tokens` (OpenAI's `prompt_tokens_details.cached_tokens`), charged at the cached price instead of the input one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000000000001")  # 1e-12 USD: exact for integer tokens times 6-decimal prices
MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    output_per_mtok: Decimal


class InvalidUsage(ValueError):
    """Token counts that can't be rated (negative, or more cached tokens than prompt tokens)."""


def cost_usd(prices: Prices, *, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> Decimal:
    if prompt_tokens < 0 or cached_prompt_tokens < 0 or completion_tokens < 0:
        raise InvalidUsage("token counts must be non-negative")
    if cached_prompt_tokens > prompt_tokens:
        raise InvalidUsage("cached_prompt_tokens exceeds prompt_tokens")
    uncached = prompt_tokens - cached_prompt_tokens
    total = (
        uncached * prices.input_per_mtok
        + cached_prompt_tokens * prices.cached_input_per_mtok
        + completion_tokens * prices.output_per_mtok
    ) / MILLION
    return total.quantize(COST_QUANTUM)


def format_usd(amount: Decimal) -> str:
    """The wire form of a cost: a plain decimal string, no exponent, trailing zeros kept to 12 places removed."""
    text = format(amount.quantize(COST_QUANTUM), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_micros_ceil(amount: Decimal) -> int:
    """USD -> integer micro-dollars, rounded up: the Redis spend counter never under-reports the ledger."""
    return int(amount.quantize(MICRO, rounding=ROUND_CEILING) * 1_000_000)
