"""Our encoder + pooling against sentence-transformers' encode on the same all-MiniLM-L6-v2: cosine >= 0.9999 per
input, alone and packed in one mixed-length batch; plus the config parsing that picks pooling and normalisation."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.workers.embeddings._embed_testlib import TEXTS, cosine
from workers.embeddings.config import EncoderConfigError, load_encoder_config
from workers.embeddings.encoder import PackedBatch
from workers.embeddings.pooling import pool

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _ours(minilm, texts: list[str]) -> torch.Tensor:
    seqs = [minilm.tokenizer.truncate(s, minilm.max_seq_len) for s in minilm.tokenizer.encode_batch(texts)]
    return minilm.embed(seqs)


def test_config_reads_the_sentence_transformers_head(minilm):
    c = minilm.config
    assert (c.hidden_size, c.num_layers, c.num_heads, c.max_seq_len) == (384, 6, 12, 256)
    assert c.pooling_modes == ("mean",) and c.normalize and c.dimensions == 384


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_single_input_matches_sentence_transformers(minilm, st_minilm, text):
    ref = st_minilm.encode([text], convert_to_tensor=True)
    assert cosine(_ours(minilm, [text]), ref).item() >= 0.9999


def test_mixed_length_batch_matches_and_equals_each_input_alone(minilm, st_minilm):
    texts = TEXTS + ["word " * 300]  # over the context: truncated like sentence-transformers does
    lens = [len(s) for s in minilm.tokenizer.encode_batch(texts)]
    assert min(lens) <= 4 and max(lens) > 256
    ours = _ours(minilm, texts)
    ref = st_minilm.encode(texts, convert_to_tensor=True)
    assert ours.shape == ref.shape
    assert (cosine(ours, ref) >= 0.9999).all(), cosine(ours, ref)
    alone = torch.cat([_ours(minilm, [t]) for t in texts])
    torch.testing.assert_close(ours, alone, atol=2e-5, rtol=0)  # packing must not leak between sequences


@pytest.mark.parametrize("mode", ["cls", "max", "mean_sqrt_len"])
def test_other_pooling_modes_match_sentence_transformers_pooling(minilm, mode):
    from sentence_transformers.models import Pooling

    seqs = minilm.tokenizer.encode_batch(TEXTS[:4])
    batch = PackedBatch.from_sequences(seqs)
    hidden = minilm.encoder.forward(batch)
    config = minilm.config.__class__(**{**_fields(minilm.config), "pooling_modes": (mode,), "normalize": False})
    ours = pool(hidden, batch, config)
    # sentence-transformers' Pooling on the same token embeddings, padded with its attention mask
    width = max(batch.seq_lens)
    tokens = torch.zeros(len(seqs), width, 384)
    mask = torch.zeros(len(seqs), width, dtype=torch.int64)
    for i, (start, n) in enumerate(zip(batch.cu_seqlens[:-1].tolist(), batch.seq_lens, strict=True)):
        tokens[i, :n] = hidden[start:start + n]
        mask[i, :n] = 1
    st = Pooling(384, pooling_mode={"mean_sqrt_len": "mean_sqrt_len_tokens"}.get(mode, mode))({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(ours, st, atol=1e-5, rtol=1e-5)


def _fields(config) -> dict:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def test_config_refuses_what_it_cannot_run_exactly(minilm_path: Path, tmp_path: Path):
    for name in ("config.json", "modules.json"):
        shutil.copy(minilm_path / name, tmp_path / name)
    (tmp_path / "1_Pooling").mkdir()
    pooling = json.loads((minilm_path / "1_Pooling" / "config.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_lasttoken": True}))
    with pytest.raises(EncoderConfigError, match="last-token"):
        load_encoder_config(tmp_path)
    cfg = json.loads((minilm_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(EncoderConfigError, match="roberta"):
        load_encoder_config(tmp_path)
