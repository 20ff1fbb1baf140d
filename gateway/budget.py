"""`max_cost`: a hard cost cap per request (issue 19, part 1), USD as a decimal string in the body (`max_cost`, also
`extra_body` in the SDKs) or the `x-hearth-max-cost` header.

Before admission the gateway bounds the request's cost from the catalog price: the prompt at most
`InferenceRequest.prompt_token_bound()` tokens, all at the dearer of the input and cached prices, plus every choice's
completion. If that prompt bound alone is over the budget the request is refused (400 `budget_exceeded`, param
`max_cost`); otherwise each choice's completion limit is lowered so the worst case fits, and the worker stops there
with `finish_reason: "length"`. The worker's real counts are at most those bounds, so `usage.cost` (and the ledger's
cost, the same formula) is at most `max_cost`, streamed or not, cancelled or not, for any `n`. All arithmetic is
Decimal, exact at the ledger's 12 places.

The prompt bound is conservative: the gateway has no tokenizer, so it counts a token per UTF-8 byte of the text
(byte-level BPE never makes a token of less than a byte) plus a fixed allowance for the chat template's own tokens.
"""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from billing.pricing import MILLION, Prices, cost_usd
from gateway.errors import InvalidRequest

MAX_COST_HEADER = "x-hearth-max-cost"
MAX_BUDGET_USD = Decimal(1_000_000)


class BudgetExceeded(InvalidRequest):
    code = "budget_exceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="max_cost")


def parse_max_cost(value: str | None, *, source: str) -> Decimal | None:
    """A positive decimal string ("0.0025"); anything else is a 400 naming max_cost."""
    if value is None:
        return None
    text = value.strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount <= 0 or amount > MAX_BUDGET_USD or "e" in text.lower():
        raise InvalidRequest(f"Invalid value for 'max_cost' ({source}): expected a positive decimal string in USD "
                             f"such as \"0.01\", at most {MAX_BUDGET_USD}; got {value[:40]!r}.", param="max_cost")
    return amount


@dataclass(frozen=True, slots=True)
class Budget:
    max_cost: Decimal

    def completion_limit(self, prices: Prices, *, prompt_token_bound: int, num_choices: int) -> int | None:
        """The most completion tokens each choice may have so the worst case costs at most max_cost; None when
        completions are free. Raises BudgetExceeded when the prompt bound alone is over the budget."""
        dearest_input = max(prices.input_per_mtok, prices.cached_input_per_mtok)
        worst_prompt = cost_usd(Prices(dearest_input, dearest_input, prices.output_per_mtok),
                                prompt_tokens=prompt_token_bound, cached_prompt_tokens=0, completion_tokens=0)
        left = self.max_cost - worst_prompt
        if left < 0 or (left == 0 and prices.output_per_mtok > 0):
            raise BudgetExceeded(
                f"The prompt alone may cost up to ${worst_prompt.normalize():f} (up to {prompt_token_bound} tokens at "
                f"${dearest_input.normalize():f} per million), over max_cost ${self.max_cost.normalize():f}. Raise "
                "max_cost or shorten the prompt.")
        if prices.output_per_mtok == 0:
            return None
        total = (left * MILLION / prices.output_per_mtok).to_integral_value(rounding=ROUND_FLOOR)
        per_choice = int(total) // max(1, num_choices)
        if per_choice < 1:
            raise BudgetExceeded(
                f"max_cost ${self.max_cost.normalize():f} leaves room for {int(total)} completion tokens after the "
                f"prompt (up to ${worst_prompt.normalize():f}), fewer than one per choice ({num_choices}).")
        return per_choice
