"""The official openai SDK against a real worker process serving the real SmolLM2 (greedy, so runs repeat)."""

import httpx
import openai

from tests.workers.server._serve import MODEL, metric

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _chat(client: openai.OpenAI, **kw):
    kw.setdefault("messages", QUESTION)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, **kw)


def test_chat_greedy_is_repeatable_and_reports_cached_prompt_tokens(client):
    first = _chat(client, max_tokens=12)
    assert first.object == "chat.completion" and first.id.startswith("chatcmpl-")
    choice = first.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    u = first.usage
    assert u.prompt_tokens > 16 and 0 < u.completion_tokens <= 12
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    second = _chat(client, max_tokens=12)
    assert second.choices[0].message.content == choice.message.content
    # The same prompt again: its full blocks (16 tokens each) come from the prefix cache.
    assert second.usage.prompt_tokens_details.cached_tokens >= 16


def test_stream_with_usage_equals_the_whole_response(client):
    whole = _chat(client, max_tokens=16)
    chunks = list(_chat(client, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(_chat(client, max_tokens=4, stream=True))
    assert chunks and all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_continuous_usage_stats_puts_growing_usage_on_every_chunk(client):
    whole = _chat(client, max_tokens=8)
    options = {"include_usage": True, "continuous_usage_stats": True}
    chunks = list(_chat(client, max_tokens=8, stream=True, stream_options=options))
    assert chunks[-1].choices == [] and len(chunks) > 2
    assert all(c.usage is not None for c in chunks)
    assert all(c.usage.prompt_tokens == whole.usage.prompt_tokens for c in chunks)  # the role chunk's too
    completion = [c.usage.completion_tokens for c in chunks]
    assert completion == sorted(completion) and completion[0] == 0 and completion[-1] == whole.usage.completion_tokens
    assert all(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens for c in chunks)
    assert all(c.usage.prompt_tokens_details is not None for c in chunks)
    texts = list(client.completions.create(model=MODEL, prompt="The sea is", max_tokens=4, temperature=0, stream=True,
                                           stream_options={"continuous_usage_stats": True}))
    assert texts and all(c.choices for c in texts)  # no include_usage: no final usage chunk
    assert all(c.usage is not None and c.usage.prompt_tokens > 0 for c in texts)
    assert [c.usage.completion_tokens for c in texts] == sorted(c.usage.completion_tokens for c in texts)
    assert 1 <= texts[-1].usage.completion_tokens <= 4


def test_stop_string_and_list_cut_the_text(client):
    plain = _chat(client, max_tokens=16).choices[0].message.content
    words = plain.split()
    assert len(words) >= 3, plain
    stop_word = words[2]
    cut = plain[: plain.index(stop_word)]
    for stop in (stop_word, [stop_word, "\u2603never"]):
        r = _chat(client, max_tokens=16, stop=stop)
        assert r.choices[0].finish_reason == "stop"
        assert r.choices[0].message.content == cut


def test_n2_returns_two_choices_by_index(client):
    greedy = _chat(client, max_tokens=8, n=2)
    assert [c.index for c in greedy.choices] == [0, 1]
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    sampled = _chat(client, max_tokens=4, n=2, temperature=1.0, seed=7)
    assert [c.index for c in sampled.choices] == [0, 1]
    assert sampled.usage.completion_tokens <= 8
    streamed = list(_chat(client, max_tokens=4, n=2, stream=True, stream_options={"include_usage": True}))
    texts = {0: "", 1: ""}
    for c in streamed:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    single = _chat(client, max_tokens=4)
    assert texts[0] == texts[1] == single.choices[0].message.content
    assert streamed[-1].usage.completion_tokens == 2 * single.usage.completion_tokens


def test_logprobs_and_top_logprobs(client):
    r = _chat(client, max_tokens=6, logprobs=True, top_logprobs=3)
    choice = r.choices[0]
    assert choice.finish_reason == "length"
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens == 6
    for tok in content:
        assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
        assert [t.logprob for t in tok.top_logprobs] == sorted((t.logprob for t in tok.top_logprobs), reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert tok.top_logprobs[0].token == tok.token
        assert abs(tok.top_logprobs[0].logprob - tok.logprob) < 1e-5
    # The bytes of the tokens are exactly the text.
    assert b"".join(bytes(t.bytes) for t in content).decode() == choice.message.content
    plain = _chat(client, max_tokens=6)
    assert plain.choices[0].logprobs is None
    streamed = list(_chat(client, max_tokens=6, logprobs=True, top_logprobs=3, stream=True))
    tokens = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in tokens] == [t.token for t in content]
    # Same tokens; logprobs agree to float noise (this run reads its prompt from the prefix cache: ~1e-6 apart).
    assert all(abs(a.logprob - b.logprob) < 1e-3 for a, b in zip(tokens, content, strict=True))


def test_max_tokens_and_max_completion_tokens_stop_with_length(client):
    r = _chat(client, max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    r = _chat(client, max_completion_tokens=2, max_tokens=9)  # the newer name wins
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2


def test_completions_endpoint_whole_streamed_and_logprobs(client):
    kw = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    whole = client.completions.create(**kw, logprobs=2)
    assert whole.object == "text_completion"
    choice = whole.choices[0]
    assert choice.text and choice.finish_reason == "length" and whole.usage.completion_tokens == 6
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    assert all(1 <= len(top) <= 2 for top in lp.top_logprobs)
    streamed = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == choice.text
    assert streamed[-1].usage.completion_tokens == 6
    ids = client.completions.create(**{**kw, "prompt": [504, 3575, 282, 4649, 314]})  # token ids work too
    assert ids.usage.prompt_tokens == 5 and ids.choices[0].text


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_health_and_metrics(worker, client):
    _chat(client, max_tokens=2)
    health = httpx.get(f"{worker.base}/health").json()
    assert health["status"] == "ok" and health["num_total_blocks"] > 0
    labels = {"model_name": MODEL}
    for name in (
        "hearth_worker_num_running", "hearth_worker_num_waiting", "hearth_worker_kv_blocks_used",
        "hearth_worker_kv_blocks_free", "hearth_worker_prefix_cache_hit_rate",
    ):
        assert metric(worker.base, name, labels) is not None, name
    assert metric(worker.base, "hearth_worker_generation_tokens_total", labels) >= 2
    assert metric(worker.base, "hearth_worker_prompt_tokens_total", labels) > 0
    assert metric(worker.base, "hearth_worker_time_to_first_token_seconds_count", labels) >= 1
    assert metric(worker.base, "hearth_worker_inter_token_latency_seconds_count", labels) >= 1
    assert metric(worker.base, "hearth_worker_requests_finished_total", {**labels, "finish_reason": "length"}) >= 1
