"""Tokenizer built from the GGUF vocabulary, against transformers' own GGUF tokenizer conversion as the reference."""

from pathlib import Path

import pytest

from workers.tokenizer import ChatTemplateError, IncrementalDetokenizer, Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

CORPUS = [
    "Hello, world!",
    "",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\r\nmixed",
    "Numbers: 3.14159, 2024-11-26, 1,000,000 and 0x1F",
    "def fibonacci(n: int) -> int:\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    '{"key": [1, 2, {"nested": null}], "url": "https://example.com/a?b=c&d=e"}',
    "Emoji: 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ❤️‍🔥",
    "中文测试：我们今天去公园散步。日本語のテキストです。한국어 문장입니다.",
    "Café naïve façade — “quotes” ‘single’ … Ünïcödé",
    "العربية نص من اليمين إلى اليسار",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text with <|endoftext|> inside and <file_sep> too",
    "don't won't it's we'll they're I'm you've",
    "\u0000 control \u0007 chars \x7f",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    [
        {"role": "user", "content": "Hi 👋"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Translate 猫 to English."},
    ],
]


@pytest.fixture(scope="module")
def hf_tokenizer(smollm2_gguf_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf_path.parent), gguf_file=smollm2_gguf_path.name)


def test_encode_decode_match_transformers(smollm2_tokenizer: Tokenizer, hf_tokenizer) -> None:
    for text in CORPUS:
        ids = smollm2_tokenizer.encode(text)
        assert ids == hf_tokenizer(text)["input_ids"], text
        assert smollm2_tokenizer.decode(ids, skip_special_tokens=False) == hf_tokenizer.decode(ids), text
        assert smollm2_tokenizer.decode(ids) == hf_tokenizer.decode(ids, skip_special_tokens=True), text
    assert smollm2_tokenizer.encode("<|im_start|>") == [1]  # control tokens match whole


def test_vocab_and_special_ids(smollm2_tokenizer: Tokenizer, hf_tokenizer) -> None:
    assert smollm2_tokenizer.vocab_size == len(hf_tokenizer) == 49152
    assert smollm2_tokenizer.eos_token_ids == [hf_tokenizer.eos_token_id] == [2]
    assert smollm2_tokenizer.bos_token_id == hf_tokenizer.bos_token_id == 1
    assert not smollm2_tokenizer.add_bos  # the GGUF says add_bos_token = false; the chat template writes its own


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(
    smollm2_tokenizer: Tokenizer, hf_tokenizer, add_generation_prompt: bool
) -> None:
    for chat in CHATS:
        ours = smollm2_tokenizer.apply_chat_template(chat, add_generation_prompt=add_generation_prompt)
        ref = hf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert ours == ref
    assert ours.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_hf_folder_tokenizer_matches_gguf(smollm2_tokenizer: Tokenizer, hf_tokenizer, tmp_path: Path) -> None:
    hf_tokenizer.save_pretrained(tmp_path)
    folder = Tokenizer.from_path(tmp_path)
    for text in CORPUS:
        assert folder.encode(text) == smollm2_tokenizer.encode(text), text
    assert folder.apply_chat_template(CHATS[2]) == smollm2_tokenizer.apply_chat_template(CHATS[2])
    assert (folder.bos_token_id, folder.eos_token_ids) == (1, [2])


def test_incremental_detokenizer_never_splits_a_character(smollm2_tokenizer: Tokenizer) -> None:
    text = "Emoji 😀👍🏽 and 中文测试，日本語 👨‍👩‍👧 done."
    ids = smollm2_tokenizer.encode(text)
    # The test means something only if some characters really are split across byte tokens.
    assert any("\ufffd" in smollm2_tokenizer.decode([i]) for i in ids)
    detok = IncrementalDetokenizer(smollm2_tokenizer)
    deltas = [detok.add(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == detok.text == text
    assert "" in deltas  # held back at least once while a character was incomplete


def test_incremental_detokenizer_with_prompt_context(smollm2_tokenizer: Tokenizer) -> None:
    prompt = smollm2_tokenizer.encode("<|im_start|>assistant\nSure,")
    output = smollm2_tokenizer.encode(" here it is: 猫 means cat.") + [2]  # ends with <|im_end|>
    detok = IncrementalDetokenizer(smollm2_tokenizer, prompt_ids=prompt)
    deltas = [detok.add(i) for i in output]
    assert deltas[-1] == ""  # special tokens are skipped
    assert "".join(deltas) + detok.flush() == " here it is: 猫 means cat."


def test_incremental_detokenizer_flushes_an_incomplete_tail(smollm2_tokenizer: Tokenizer) -> None:
    ids = smollm2_tokenizer.encode("ok 😀")
    detok = IncrementalDetokenizer(smollm2_tokenizer)
    emitted = "".join(detok.add(i) for i in ids[:-1])
    assert emitted == "ok" and "\ufffd" in detok.flush()  # the emoji's last byte never came


def _with_template(tok: Tokenizer, template: str | None) -> Tokenizer:
    return Tokenizer(tok._tok, bos_token_id=1, eos_token_ids=[2], add_bos=False, chat_template=template,
                     special_tokens={"bos_token": "<|im_start|>"})


def test_chat_template_errors_are_typed(smollm2_tokenizer: Tokenizer) -> None:
    strict = "{% for m in messages %}{% if m['role'] not in ['user'] %}{{ raise_exception('bad role ' + m['role']) }}" \
             "{% endif %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="bad role robot"):
        _with_template(smollm2_tokenizer, strict).apply_chat_template([{"role": "robot", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="compile"):
        _with_template(smollm2_tokenizer, "{% for %}").apply_chat_template(CHATS[0])
    with pytest.raises(ChatTemplateError):  # the sandbox refuses Python internals
        _with_template(smollm2_tokenizer, "{{ messages.__class__.__mro__ }}").apply_chat_template(CHATS[0])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        _with_template(smollm2_tokenizer, None).apply_chat_template(CHATS[0])


def test_chat_template_sees_tools_and_special_tokens(smollm2_tokenizer: Tokenizer) -> None:
    tools = [{"type": "function", "function": {"name": "météo", "parameters": {}}}]
    tok = _with_template(smollm2_tokenizer, "{{ bos_token }}{{ tools | tojson }}{% if add_generation_prompt %}>{% endif %}")
    assert tok.apply_chat_template(CHATS[0], tools=tools) == '<|im_start|>[{"type": "function", "function": ' \
                                                             '{"name": "météo", "parameters": {}}}]>'
