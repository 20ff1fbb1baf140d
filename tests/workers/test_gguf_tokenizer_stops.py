"""A GGUF's tokenizer metadata: its chat template renders every role an OpenAI conversation has, and its stop tokens
include the end-of-turn ids llama.cpp records beside EOS (Llama 3's <|eot_id|> and <|eom_id|>, Gemma's
<end_of_turn>), so an instruct model stops at the end of its turn. The file carries SmolLM2's vocabulary, written
with the gguf package's own writer."""

from pathlib import Path

import pytest

from workers.loader.gguf_file import field, open_gguf
from workers.tokenizer import Tokenizer

gguf = pytest.importorskip("gguf")

# A Llama-3.1-shaped template (roles in headers, tool results as ipython, calls as JSON), written for this test
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'ipython' if m['role'] == 'tool' else m['role'] %}"
    "<|start|>{{ role }}<|sep|>"
    "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}{{ c['function'] | tojson }}{% endfor %}"
    "{% else %}{{ m['content'] }}{% endif %}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant<|sep|>{% endif %}"
)


def test_gguf_stop_tokens_and_template(smollm2_gguf_path: Path, tmp_path: Path) -> None:
    src = open_gguf(smollm2_gguf_path)
    tokens = field(src, "tokenizer.ggml.tokens")
    path = tmp_path / "tok.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(field(src, "tokenizer.ggml.token_type"))
    w.add_token_merges(field(src, "tokenizer.ggml.merges"))
    w.add_bos_token_id(1)
    w.add_eos_token_id(0)  # <|endoftext|>
    w.add_eot_token_id(2)  # <|im_end|>: the end of a chat turn
    w.add_eom_token_id(2)  # the same id twice is one stop token
    w.add_chat_template(TEMPLATE)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tok = Tokenizer.from_gguf(path)
    assert tok.eos_token_ids == [0, 2]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C, sunny"},
    ]
    text = tok.apply_chat_template(messages)
    bos = tokens[1]
    assert text == (f"{bos}<|start|>system<|sep|>Be brief.<|eot|><|start|>user<|sep|>Weather in Paris?<|eot|>"
                    '<|start|>assistant<|sep|>{"name": "weather", "arguments": {"city": "Paris"}}<|eot|>'
                    "<|start|>ipython<|sep|>18C, sunny<|eot|><|start|>assistant<|sep|>")
