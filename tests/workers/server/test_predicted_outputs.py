"""OpenAI's predicted outputs (`prediction`) against the real worker process with the openai SDK: the answer is the
one without a prediction (greedy), usage reports accepted/rejected prediction tokens, whole and streamed, and
completion_tokens counts the rejected ones as OpenAI does."""

import openai
import pytest

from tests.workers.server._serve import MODEL

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Write a Python function that returns the largest of three numbers."}]


def _chat(client: openai.OpenAI, **kw):
    return client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=48, **kw)


def test_prediction_keeps_the_answer_and_reports_its_tokens(client: openai.OpenAI) -> None:
    plain = _chat(client)
    text = plain.choices[0].message.content
    assert plain.usage.completion_tokens == 48 or plain.choices[0].finish_reason == "stop"
    assert plain.usage.completion_tokens_details.accepted_prediction_tokens == 0
    # The answer with a few words changed in its middle: most of it is kept, the changed part rejected
    cut = len(text) // 2
    predicted = text[:cut] + " totally different words here " + text[cut + 12 :]
    reply = _chat(client, prediction={"type": "content", "content": predicted})
    assert reply.choices[0].message.content == text
    details = reply.usage.completion_tokens_details
    assert details.accepted_prediction_tokens >= 15 and details.rejected_prediction_tokens >= 1
    rejected = details.rejected_prediction_tokens
    assert reply.usage.completion_tokens == plain.usage.completion_tokens + rejected
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    # Streamed, the prediction as text parts: the same text, the same counts in the final usage chunk
    parts = [{"type": "text", "text": predicted[:20]}, {"type": "text", "text": predicted[20:]}]
    chunks = list(_chat(client, prediction={"type": "content", "content": parts}, stream=True,
                        stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    usage = chunks[-1].usage
    assert usage.completion_tokens_details.accepted_prediction_tokens == details.accepted_prediction_tokens
    assert usage.completion_tokens_details.rejected_prediction_tokens == rejected
    assert usage.completion_tokens == reply.usage.completion_tokens


def test_a_malformed_prediction_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        _chat(client, prediction={"type": "diff", "content": "x"})
    assert exc.value.status_code == 400 and "prediction" in str(exc.value.body.get("param"))
