"""A new model callable through the gateway with one command plus starting its worker (issue 15, done-when 2).

A tiny random Qwen 3 saved by transformers (SmolLM2's tokenizer and chat template beside it, so its 49152-token
vocabulary has a real tokenizer) is added with `manage.py catalog_add`, served by `python -m workers.server
--served-model-name <slug>`, and called with the openai client through a gateway process: the answer is HF's own
greedy continuation of the same prompt, the listing shows the recorded context length and prices, and the cost is
the catalog price of the metered tokens."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
import torch
import transformers
from django.core.management import call_command

from billing.pricing import Prices, cost_usd, format_usd
from tests.e2e.conftest import start_worker, stop_worker, wait_for_worker
from tests.gateway.gateway_testlib import sdk
from workers.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SLUG = "tiny-qwen3"
PRICES = ("0.40", "1.20", "0.10")  # input, output, cached input: USD per million tokens


@pytest.fixture(scope="module")
def tiny_qwen3(smollm2_gguf_path: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny-qwen3")
    tokenizer = Tokenizer.from_gguf(smollm2_gguf_path)
    config = transformers.Qwen3Config(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                      max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_ids[0],
                                      bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.Qwen3ForCausalLM(config).eval()
    hf.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_text(tokenizer.backend_json())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": tokenizer.chat_template, **tokenizer.special_tokens}))
    return folder, hf, Tokenizer.from_path(folder)


def test_catalog_add_then_worker_then_gateway(tiny_qwen3, gateway_factory, e2e_account) -> None:
    folder, hf, tokenizer = tiny_qwen3
    call_command("catalog_add", str(folder), "--slug", SLUG, "--price-input", PRICES[0], "--price-output", PRICES[1],
                 "--price-cached", PRICES[2])
    worker = start_worker(folder, "--served-model-name", SLUG, "--dtype", "float32")
    try:
        gateway = gateway_factory(region=worker.region)
        wait_for_worker(gateway.url, worker)
        client = sdk(gateway.url, e2e_account("catalog").secret)
        name = f"accounts/hearth/models/{SLUG}"
        listed = {m.id: m for m in client.models.list()}[name]
        assert (listed.context_length, listed.price_output_per_mtok) == (2048, "1.200000")  # type: ignore[attr-defined]
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        reply = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0)
        prompt = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None)
        expected = tokenizer.decode(out[0, len(prompt) :].tolist())
        assert len(expected) > 5 and reply.choices[0].message.content == expected and reply.model == name
        usage = reply.usage
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (len(prompt), 12)
        cost = cost_usd(Prices(*(Decimal(p) for p in (PRICES[0], PRICES[2], PRICES[1]))),
                        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                        cached_prompt_tokens=0)  # fmt: skip
        assert reply.usage.cost == format_usd(cost)  # type: ignore[attr-defined]
    finally:
        stop_worker(worker)
