"""A stand-in engine for protocol edge cases the real one can't be made to hit on demand (a step that raises).

It follows the Engine contract in docs/contracts.md: each step emits one token per live choice, cycling through
the prompt's tokens, with block accounting like a paged cache (16 tokens per block).
"""

import itertools
import math
from collections.abc import Mapping

from workers.engine.outputs import CompletionDelta, TokenLogprob
from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.engine.sequence import Sequence
from workers.engine.validation import check_request

BLOCK = 16


class FakeTokenizer:
    """Bytes as tokens (id = byte + 1; 0 is EOS) and a plain-text chat template: enough for protocol tests."""

    vocab_size = 257
    eos_token_ids = [0]
    chat_template = None  # no tool layout of its own

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [b + 1 for b in text.encode()]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i - 1 for i in ids if i > 0).decode(errors="replace")

    def id_to_token(self, token_id: int) -> str | None:
        return None

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        turns = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return turns + ("assistant: " if add_generation_prompt else "")


class FakeEngine:
    serves_adapters = False

    def __init__(self, tokenizer=None, num_blocks: int = 64, max_model_len: int = 256):
        self.tokenizer = tokenizer or FakeTokenizer()
        self.vocab_size = self.tokenizer.vocab_size
        self.num_blocks = num_blocks
        self.max_model_len = max_model_len
        self.fail_next_step = False
        self._live: dict[tuple[str, int], dict] = {}
        self._ids = itertools.count()

    def new_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, adapter_id=None,
                    *, param_names: Mapping[str, str] | None = None,
                    account_id: str | None = None) -> list[Sequence]:
        max_tokens = check_request(prompt_token_ids, params, vocab_size=self.vocab_size,
                                   max_model_len=self.max_model_len, param_names=param_names)
        return [Sequence(next(self._ids), request_id, i, prompt_token_ids, params, max_tokens, adapter_id)
                for i in range(params.n)]

    def add(self, seqs: list[Sequence]) -> None:
        if any(k[0] == seqs[0].request_id for k in self._live):
            raise InvalidRequestError("duplicate request id", code="duplicate_id")
        for seq in seqs:
            self._live[(seq.request_id, seq.index)] = {"prompt": seq.token_ids, "out": [], "params": seq.params}

    def abort_request(self, request_id: str) -> list[CompletionDelta]:
        for key in [k for k in self._live if k[0] == request_id]:
            del self._live[key]
        return []

    def resident_adapters(self) -> list[str]:
        return []

    def drop_adapter(self, uid: str) -> int:
        return 0

    def has_unfinished_requests(self) -> bool:
        return bool(self._live)

    def step(self) -> list[CompletionDelta]:
        if self.fail_next_step:
            self.fail_next_step = False
            raise RuntimeError("injected engine failure")
        deltas = []
        for (rid, i), seq in list(self._live.items()):
            tok = seq["prompt"][len(seq["out"]) % len(seq["prompt"])]
            seq["out"].append(tok)
            p: SamplingParams = seq["params"]
            done = p.max_tokens is not None and len(seq["out"]) >= p.max_tokens
            lps = [TokenLogprob(tok, -0.5, [(tok, -0.5)] * p.top_logprobs)] if p.logprobs else None
            deltas.append(CompletionDelta(rid, i, [tok], self.tokenizer.decode([tok]), lps, done,
                                          "length" if done else None, len(seq["prompt"]), 0, len(seq["out"])))
            if done:
                del self._live[(rid, i)]
        return deltas

    def stats(self) -> dict[str, int]:
        used = sum(math.ceil((len(s["prompt"]) + len(s["out"])) / BLOCK) for s in self._live.values())
        return {"num_running": len(self._live), "num_waiting": 0, "num_free_blocks": self.num_blocks - used,
                "num_total_blocks": self.num_blocks, "prefix_cache_hits": 0, "prefix_cache_queries": 0}
