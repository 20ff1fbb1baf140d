"""Tokenizer: HF `tokenizers` built from a GGUF vocabulary or a tokenizer.json, the model's jinja chat template,
and incremental detokenization that never emits half a UTF-8 character."""

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders as hf_decoders
from tokenizers import models as hf_models

from workers.detokenizer import IncrementalDetokenizer as IncrementalDetokenizer  # re-exported
from workers.loader.gguf_file import field, open_gguf
from workers.loader.hf_folder import read_json

# llama.cpp's tokenizer.ggml.pre -> how text is split before BPE. SmolLM's merges were learned on single digits.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


class TokenizerError(ValueError):
    """The tokenizer files can't be used."""


class ChatTemplateError(ValueError):
    """The conversation can't be rendered (the template raised, or the model has no template)."""


class Tokenizer:
    def __init__(
        self,
        backend: HFTokenizer,
        *,
        bos_token_id: int | None,
        eos_token_ids: list[int],
        add_bos: bool,
        chat_template: str | None,
        special_tokens: dict[str, str],
    ) -> None:
        self._tok = backend
        self.bos_token_id = bos_token_id
        self.eos_token_ids = eos_token_ids
        self.add_bos = add_bos  # prepend BOS ourselves (GGUF); tokenizer.json post-processors add their own
        self.chat_template = chat_template
        self.special_tokens = special_tokens  # bos_token / eos_token / unk_token / pad_token strings for templates
        self._template: jinja2.Template | None = None

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # Chat prompts rendered by the template already hold their BOS: encode them with add_special_tokens=False.
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self.add_bos and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    def backend_json(self) -> str:
        """The HF tokenizer.json of the backend (constrained decoding reads its decoder's byte encoding)."""
        return self._tok.to_str()

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        if self.chat_template is None:
            raise ChatTemplateError("this model has no chat template")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, tools=tools,
                **self.special_tokens, **kwargs,
            )
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template: {e}") from e

    @classmethod
    def from_path(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if path.is_file() and path.suffix == ".gguf":
            return cls.from_gguf(path)
        if (path / "tokenizer.json").exists():
            return cls.from_hf_folder(path)
        raise TokenizerError(f"{path}: neither a .gguf file nor a folder with tokenizer.json")

    @classmethod
    def from_gguf(cls, path: str | Path) -> "Tokenizer":
        reader = open_gguf(path)
        kind = field(reader, "tokenizer.ggml.model")
        if kind != "gpt2":
            raise TokenizerError(f"GGUF tokenizer {kind!r} is not supported (byte-level BPE 'gpt2' is)")
        tokens: list[str] = field(reader, "tokenizer.ggml.tokens")
        merges: list[str] = field(reader, "tokenizer.ggml.merges", [])
        types: list[int] = field(reader, "tokenizer.ggml.token_type", None) or [1] * len(tokens)  # 1 = normal
        backend = HFTokenizer(
            hf_models.BPE(
                vocab={t: i for i, t in enumerate(tokens)},
                merges=[tuple(m.split(" ", 1)) for m in merges],
                fuse_unk=False, byte_fallback=False,
            )
        )
        split = _SPLITS.get(field(reader, "tokenizer.ggml.pre", ""))
        if split is not None:
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Split(Regex(split), behavior="isolated"),
                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
            )
        elif field(reader, "tokenizer.ggml.pre", "") == "smollm":
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
            )
        else:
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = hf_decoders.ByteLevel()
        # Control tokens (<|im_start|>...) match whole and are special; user-defined ones match whole, not special.
        backend.add_special_tokens(
            [AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types, strict=True) if k == _CONTROL]
        )
        backend.add_tokens(
            [AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types, strict=True) if k == _USER_DEFINED]
        )

        def token_of(key: str) -> tuple[int | None, str | None]:
            tid = field(reader, f"tokenizer.ggml.{key}")
            return (None, None) if tid is None or not 0 <= tid < len(tokens) else (int(tid), tokens[tid])

        bos_id, bos = token_of("bos_token_id")
        eos_id, eos = token_of("eos_token_id")
        specials = {"bos_token": bos, "eos_token": eos, "unk_token": token_of("unknown_token_id")[1],
                    "pad_token": token_of("padding_token_id")[1]}
        # Instruct GGUFs also name their end-of-turn tokens (Llama 3's <|eot_id|> / <|eom_id|>, Gemma's <end_of_turn>)
        stops = [eos_id, token_of("eot_token_id")[0], token_of("eom_token_id")[0]]
        return cls(
            backend, bos_token_id=bos_id, eos_token_ids=list(dict.fromkeys(i for i in stops if i is not None)),
            add_bos=bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
            chat_template=field(reader, "tokenizer.chat_template"),
            special_tokens={k: v for k, v in specials.items() if v is not None},
        )

    @classmethod
    def from_hf_folder(cls, folder: str | Path) -> "Tokenizer":
        folder = Path(folder)
        try:
            backend = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise TokenizerError(f"{folder}/tokenizer.json: {e}") from e
        cfg = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").exists() else {}
        specials = {k: _token_str(cfg.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        specials = {k: v for k, v in specials.items() if v is not None}
        bos_id = backend.token_to_id(specials["bos_token"]) if "bos_token" in specials else None
        eos_ids = [backend.token_to_id(specials["eos_token"])] if "eos_token" in specials else []
        for name in ("generation_config.json", "config.json"):  # extra stop ids live here (e.g. <|eot_id|>)
            if (folder / name).exists():
                eos = read_json(folder / name).get("eos_token_id")
                eos_ids += [eos] if isinstance(eos, int) else list(eos or [])
        template = cfg.get("chat_template")
        if (folder / "chat_template.jinja").exists():  # transformers >= 4.43 saves it beside the config
            template = (folder / "chat_template.jinja").read_text()
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return cls(
            backend, bos_token_id=bos_id, eos_token_ids=list(dict.fromkeys(i for i in eos_ids if i is not None)),
            add_bos=False, chat_template=template, special_tokens=specials,
        )


def _token_str(value: Any) -> str | None:
    if isinstance(value, dict):  # serialized AddedToken
        return value.get("content")
    return value if isinstance(value, str) else None


def _compile_template(source: str) -> jinja2.Template:
    # Chat templates are untrusted code: a sandbox, and the same helpers transformers gives them.
    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template does not compile: {e}") from e
