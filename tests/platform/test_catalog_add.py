"""`manage.py catalog_add` and the admin's add form: a checkpoint the engine can load enters the catalog with its
architecture, context length and adapter shape; one it can't is refused with the reason and changes nothing.
Checkpoints are tiny random models saved by transformers itself (no downloads); adapters are made by peft on them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from adapters.archive import AdapterFiles
from adapters.models import BaseModelShape
from adapters.validation import validate
from catalog.models import BaseModel

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0)
PRICES = ["--price-input", "0.30", "--price-output", "0.60", "--price-cached", "0.15"]


def _save(model_cls: type, config: object, folder: Path) -> object:
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    model = model_cls(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # A worker needs a tokenizer beside the weights: a word-level one over the tiny vocabulary will do
    Tokenizer(models.WordLevel({f"t{i}": i for i in range(128)}, unk_token="t0")).save(str(folder / "tokenizer.json"))
    return model


@pytest.fixture
def phi3_folder(tmp_path: Path) -> tuple[Path, object]:
    config = transformers.Phi3Config(**TINY, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                             "partial_rotary_factor": 0.5})
    folder = tmp_path / "phi3"
    return folder, _save(transformers.Phi3ForCausalLM, config, folder)


def _counts() -> tuple[int, int]:
    return BaseModel.objects.count(), BaseModelShape.objects.count()


@pytest.mark.django_db
def test_catalog_add_records_architecture_context_and_adapter_shape(phi3_folder, tmp_path: Path, capsys) -> None:
    folder, hf = phi3_folder
    call_command("catalog_add", str(folder), "--slug", "phi-tiny", *PRICES)
    model = BaseModel.objects.get(slug="phi-tiny")
    assert model.public_name == "accounts/hearth/models/phi-tiny" and model.is_active
    assert (model.architecture, model.context_length) == ("phi3", 4096)
    assert model.weights_uri == str(folder.resolve())
    assert (model.price_input_per_mtok, model.price_output_per_mtok, model.price_cached_input_per_mtok) == (
        Decimal("0.30"), Decimal("0.60"), Decimal("0.15"))
    assert "--served-model-name phi-tiny" in capsys.readouterr().out  # how to start its worker
    shape = BaseModelShape.objects.get(base_model=model)
    dims = shape.module_dims()
    assert dims == {"qkv_proj": (32, 32 + 2 * 16), "o_proj": (32, 32), "gate_up_proj": (32, 96), "down_proj": (48, 32)}
    # An adapter peft makes on this model validates against the recorded shape; one with Llama names does not.
    lora = peft.LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, target_modules=list(dims))
    peft.get_peft_model(hf, lora).save_pretrained(tmp_path / "adapter")
    files = AdapterFiles((tmp_path / "adapter" / "adapter_config.json").read_bytes(),
                         (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes())
    summary = validate(files, dims=dims, num_layers=shape.num_layers, max_rank=64)
    assert set(summary.target_modules) == set(dims) and summary.num_tensors == 2 * 4 * 2
    llama_names = json.loads(files.config) | {"target_modules": ["q_proj", "v_proj"]}
    with pytest.raises(ValueError, match="not projections of this base model"):
        validate(AdapterFiles(json.dumps(llama_names).encode(), files.weights), dims=dims, num_layers=2, max_rank=64)


@pytest.mark.django_db
def test_catalog_add_refuses_what_the_engine_cant_load_and_changes_nothing(tmp_path: Path) -> None:
    before = _counts()
    neox = tmp_path / "neox"
    _save(transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig(
        vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4), neox)
    with pytest.raises(CommandError, match="gpt_neox"):
        call_command("catalog_add", str(neox), "--slug", "neox", *PRICES)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "llama", **TINY}))
    with pytest.raises(CommandError, match="safetensors"):
        call_command("catalog_add", str(no_weights), "--slug", "no-weights", *PRICES)
    with pytest.raises(CommandError, match="no such file"):
        call_command("catalog_add", str(tmp_path / "nowhere"), "--slug", "nowhere", *PRICES)
    no_tokenizer = tmp_path / "no-tokenizer"
    _save(transformers.Qwen3ForCausalLM, transformers.Qwen3Config(**TINY, head_dim=8), no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(CommandError, match="tokenizer.json"):
        call_command("catalog_add", str(no_tokenizer), "--slug", "no-tokenizer", *PRICES)
    slugs = ["neox", "no-weights", "nowhere", "no-tokenizer"]
    assert _counts() == before and not BaseModel.objects.filter(slug__in=slugs).exists()


@pytest.mark.django_db
def test_catalog_add_refuses_a_missing_tensor_a_bad_price_and_a_taken_slug(phi3_folder, tmp_path: Path) -> None:
    folder, _ = phi3_folder
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, broken / "model.safetensors")
    before = _counts()
    with pytest.raises(CommandError, match="lacks 1 tensors"):
        call_command("catalog_add", str(broken), "--slug", "broken", *PRICES)
    with pytest.raises(CommandError, match="non-negative"):
        call_command("catalog_add", str(folder), "--slug", "phi-neg", "--price-input", "-1", "--price-output", "1",
                     "--price-cached", "0")
    with pytest.raises(CommandError, match="already has"):
        call_command("catalog_add", str(folder), "--slug", "smollm2-135m-instruct", *PRICES)
    assert _counts() == before


@pytest.mark.django_db
def test_admin_add_form_runs_the_same_checks(phi3_folder, client, django_user_model, tmp_path: Path) -> None:
    folder, _ = phi3_folder
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="x-Very-long-42")
    client.force_login(admin)
    form = {"slug": "phi-admin", "display_name": "Phi tiny", "price_input_per_mtok": "0.3",
            "price_cached_input_per_mtok": "0.1", "price_output_per_mtok": "0.6"}
    before = _counts()
    refused = client.post("/admin/catalog/basemodel/add/", form | {"path": str(tmp_path / "nowhere")})
    assert refused.status_code == 200 and b"no such file" in refused.content and _counts() == before
    added = client.post("/admin/catalog/basemodel/add/", form | {"path": str(folder)})
    assert added.status_code == 302, added.content[:2000]
    model = BaseModel.objects.get(slug="phi-admin")
    assert (model.architecture, model.context_length, model.display_name) == ("phi3", 4096, "Phi tiny")
    assert BaseModelShape.objects.get(base_model=model).num_heads == 4


@pytest.mark.django_db
def test_catalog_add_gemma3_multimodal_and_its_language_model_adapters(tmp_path: Path) -> None:
    # Gemma 3 4B+ ship multimodal: the catalog records its language model, and peft adapters on it (keys under
    # model.language_model) validate against that shape
    text = {k: v for k, v in TINY.items() if k != "pad_token_id"} | {"head_dim": 8, "query_pre_attn_scalar": 8}
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)  # fmt: skip
    folder = tmp_path / "gemma3mm"
    hf = _save(transformers.Gemma3ForConditionalGeneration,
               transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4), folder)
    call_command("catalog_add", str(folder), "--slug", "gemma-tiny", *PRICES)
    model = BaseModel.objects.get(slug="gemma-tiny")
    assert (model.architecture, model.context_length) == ("gemma3_text", 4096)
    shape = BaseModelShape.objects.get(base_model=model)
    targets = r".*language_model.*\.(q_proj|v_proj|down_proj)"
    peft.get_peft_model(hf, peft.LoraConfig(r=2, init_lora_weights=False, target_modules=targets)).save_pretrained(
        tmp_path / "adapter")
    files = AdapterFiles((tmp_path / "adapter" / "adapter_config.json").read_bytes(),
                         (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes())
    summary = validate(files, dims=shape.module_dims(), num_layers=shape.num_layers, max_rank=64)
    assert summary.num_tensors == 2 * 3 * 2 and {p for _, p in summary.modules} == {"q_proj", "v_proj", "down_proj"}
    assert summary.target_modules == ["q_proj", "v_proj", "down_proj"]  # from the tensors: the config held a regex
    bad = json.loads(files.config) | {"target_modules": ".*(q_proj"}
    with pytest.raises(ValueError, match="valid regex"):
        validate(AdapterFiles(json.dumps(bad).encode(), files.weights), dims=shape.module_dims(), num_layers=2,
                 max_rank=64)
