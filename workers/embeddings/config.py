"""What an encoder checkpoint folder says about itself: the BERT shape (config.json) and the sentence-transformers
head (modules.json, <pooling>/config.json, sentence_bert_config.json). Torch-free."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURES = ("bert",)
# sentence-transformers concatenates the enabled modes in this order (models/Pooling.py).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"


class EncoderConfigError(ValueError):
    """The folder is not an encoder we can run exactly."""


@dataclass(slots=True, frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    max_position_embeddings: int
    type_vocab_size: int
    pad_token_id: int
    max_seq_len: int  # longest input served: sentence-transformers' max_seq_length, capped by the positions
    pooling_modes: tuple[str, ...]  # a subset of POOLING_MODES, in that order
    normalize: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def dimensions(self) -> int:
        return self.hidden_size * len(self.pooling_modes)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EncoderConfigError(f"{path}: unreadable JSON: {exc}") from exc


def load_encoder_config(folder: Path) -> EncoderConfig:
    cfg = _read(folder / "config.json")
    if cfg.get("model_type") not in SUPPORTED_ARCHITECTURES:
        raise EncoderConfigError(f"{folder}: model_type {cfg.get('model_type')!r} is not one of {SUPPORTED_ARCHITECTURES}")
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise EncoderConfigError(f"{folder}: only exact GELU and absolute positions are implemented")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise EncoderConfigError(f"{folder}: hidden_size is not a multiple of num_attention_heads")
    modes, normalize = _sentence_transformers_head(folder)
    max_pos = int(cfg["max_position_embeddings"])
    st_cfg = folder / "sentence_bert_config.json"
    max_seq = int(_read(st_cfg).get("max_seq_length") or max_pos) if st_cfg.exists() else max_pos
    return EncoderConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        max_position_embeddings=max_pos,
        type_vocab_size=int(cfg.get("type_vocab_size", 2)),
        pad_token_id=int(cfg.get("pad_token_id", 0)),
        max_seq_len=min(max_seq, max_pos),
        pooling_modes=modes,
        normalize=normalize,
    )


def _sentence_transformers_head(folder: Path) -> tuple[tuple[str, ...], bool]:
    """(pooling modes, normalize) from modules.json; a plain HF folder gets mean pooling without normalisation."""
    modules_path = folder / "modules.json"
    if not modules_path.exists():
        return ("mean",), False
    modules = _read(modules_path)
    types = [m.get("type") for m in modules]
    pooling = next((m for m in modules if m.get("type") == _ST_POOLING), None)
    if pooling is None:
        raise EncoderConfigError(f"{folder}: modules.json has no {_ST_POOLING}")
    unknown = [t for t in types if t not in (_ST_POOLING, _ST_NORMALIZE, "sentence_transformers.models.Transformer")]
    if unknown:
        raise EncoderConfigError(f"{folder}: unsupported sentence-transformers modules {unknown}")
    pcfg = _read(folder / pooling.get("path", "1_Pooling") / "config.json")
    if pcfg.get("pooling_mode_weightedmean_tokens") or pcfg.get("pooling_mode_lasttoken"):
        raise EncoderConfigError(f"{folder}: weighted-mean and last-token pooling are not implemented")
    keys = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
            "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
    modes = tuple(m for m in POOLING_MODES if pcfg.get(keys[m]))
    if not modes:
        raise EncoderConfigError(f"{folder}: the pooling config enables no mode")
    return modes, _ST_NORMALIZE in types
