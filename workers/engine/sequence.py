from enum import Enum, auto

import torch

from workers.engine.drafting import SpecState
from workers.engine.outputs import TokenLogprob
from workers.engine.sampling_params import SamplingParams
from workers.structured.matcher import GrammarState

DEFAULT_ACCOUNT = "anon"  # the prefix-cache namespace of requests that name no account (a worker tried alone)


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    """One choice of one request: its tokens, its place in the paged KV cache and its sampling state.

    Invariant: the KV of token_ids[:num_computed_tokens] is in the blocks of block_table.
    """

    __slots__ = (
        "seq_id", "request_id", "index", "token_ids", "num_prompt_tokens", "num_computed_tokens",
        "num_cached_tokens", "block_table", "block_hashes", "status", "params", "adapter_id", "max_tokens",
        "generator", "output_logprobs", "finish_reason", "leader", "detok", "arrival", "account_id", "grammar",
        "spec", "num_step_tokens",
    )  # fmt: skip

    def __init__(
        self,
        seq_id: int,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        adapter_id: str | None = None,
        arrival: float = 0.0,
        account_id: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.seq_id = seq_id
        self.request_id = request_id
        self.index = index  # choice index within the request, 0..n-1
        self.token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        self.num_cached_tokens = -1  # prompt tokens served from the prefix cache; set on first admission
        self.block_table: list[int] = []
        self.block_hashes: list[bytes] = []  # chained hashes of the full, computed blocks (prefix caching)
        self.status = SequenceStatus.WAITING
        self.params = params
        self.adapter_id = adapter_id
        self.max_tokens = max_tokens  # resolved: never None here
        # Seeded requests own their RNG so their samples don't depend on what else is in the batch.
        # Choice i of a seeded request draws from seed + i, so n > 1 choices differ but each is reproducible.
        self.generator: torch.Generator | None = None
        if params.seed is not None and params.temperature > 0:
            self.generator = torch.Generator().manual_seed(params.seed + index)
        self.output_logprobs: list[TokenLogprob] | None = [] if params.logprobs else None
        self.finish_reason: str | None = None
        self.leader: Sequence | None = None  # choice 0 of an n > 1 request, until this choice is forked from it
        self.detok: object | None = None  # the engine's incremental detokenizer state
        self.arrival = arrival
        self.account_id = account_id  # the prefix cache's hash chain starts from it: accounts never share blocks
        # This choice's own grammar matcher (constrained decoding); advanced by the scheduler as tokens are appended.
        self.grammar = GrammarState(params.grammar) if params.grammar is not None else None
        self.spec: SpecState | None = None  # speculative decoding: draft sources and counts (set by the engine)
        self.num_step_tokens = 0  # tokens the last step appended (more than 1 when it kept draft tokens)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def last_token_id(self) -> int:
        return self.token_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def draft_token_ids(self) -> list[int]:
        """Draft tokens the step in flight verifies after the last token (not in token_ids)."""
        return self.spec.draft if self.spec is not None else []

    @property
    def is_prefilling(self) -> bool:
        return self.num_tokens - self.num_computed_tokens > 1

    def __repr__(self) -> str:
        return (
            f"Sequence({self.request_id}#{self.index}, {self.status.name}, tokens={self.num_tokens}, "
            f"computed={self.num_computed_tokens}, blocks={self.block_table})"
        )
