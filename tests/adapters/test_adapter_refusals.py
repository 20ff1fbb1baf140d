"""Every refusal: a file built to trigger it ends as `failed` with a reason a person understands (or a 400 at
upload), and leaves nothing in the store."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from adapter_builders import adapter_files, lora_config, lora_tensors, tar_gz_bytes, zip_bytes
from django.core.files.uploadedfile import SimpleUploadedFile

from adapters.models import Adapter
from adapters.services import adapter_validate


class _Payload:
    """Unpickling this creates the marker file: proof that a loader ran code from the upload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _post(client, files: dict[str, bytes], name: str = "bot", base: str = "smollm2-135m-instruct"):
    body = {"name": name, "base_model": base, "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    return client.post("/api/v1/adapters", body, format="multipart")


def _validated(client, files: dict[str, bytes], adapter_store: Path) -> Adapter:
    response = _post(client, files)
    assert response.status_code == 202, response.content
    adapter = adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    assert not (adapter_store / adapter.uid).exists(), "a refused adapter left files in the store"
    shown = client.get(f"/api/v1/adapters/{adapter.uid}").json()
    assert shown["status"] == adapter.status and shown["failure_reason"] == adapter.failure_reason
    return adapter


def _assert_failed(adapter: Adapter, *words: str) -> None:
    assert adapter.status == "failed", adapter.failure_reason
    for word in words:
        assert word.lower() in adapter.failure_reason.lower(), adapter.failure_reason


def _pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": _Payload(marker)})


def test_the_pickle_payload_is_live(tmp_path: Path):
    # The payload used below really does run code when unpickled (so its absence later means something).
    marker = tmp_path / "proof"
    pickle.loads(_pickle_payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("pack", [None, zip_bytes, tar_gz_bytes], ids=["loose", "zip", "tar.gz"])
def test_pickled_bin_is_refused_and_never_unpickled(session_client, adapter_store: Path, tmp_path: Path, pack):
    marker = tmp_path / "pwned"
    files = {"adapter_config.json": adapter_files()["adapter_config.json"], "adapter_model.bin": _pickle_payload(marker)}
    client, _ = session_client()
    if pack is None:
        response = _post(client, files)
        assert response.status_code == 400
        assert "pickle" in response.json()["files"][0]
    else:
        _assert_failed(_validated(client, {"a.zip" if pack is zip_bytes else "a.tar.gz": pack(files)}, adapter_store),
                       "pickle", "safetensors")
    assert not marker.exists()


def test_zip_bomb_stops_at_the_unpacked_bound(session_client, adapter_store: Path, settings):
    settings.HEARTH_ADAPTER_MAX_UNPACKED_BYTES = 4 << 20
    files = adapter_files()
    files["adapter_model.safetensors"] = bytes(64 << 20)  # 64 MiB of zeros deflates to ~64 KiB
    archive = zip_bytes(files)
    assert len(archive) < 1 << 20
    client, _ = session_client()
    _assert_failed(_validated(client, {"bomb.zip": archive}, adapter_store), "more than 4 MiB")


def test_too_many_members(session_client, adapter_store: Path, settings):
    settings.HEARTH_ADAPTER_MAX_ARCHIVE_MEMBERS = 8
    members = adapter_files() | {f"junk/{i}.txt": b"x" for i in range(20)}
    client, _ = session_client()
    _assert_failed(_validated(client, {"a.tar.gz": tar_gz_bytes(members)}, adapter_store), "more than 8 members")


@pytest.mark.parametrize("pack", [zip_bytes, tar_gz_bytes], ids=["zip", "tar.gz"])
@pytest.mark.parametrize("bad_name", ["../adapter_config.json", "lora/../../etc/x", "/etc/adapter_config.json"])
def test_path_traversal_member(session_client, adapter_store: Path, tmp_path: Path, pack, bad_name):
    files = adapter_files() | {bad_name: b"{}"}
    client, _ = session_client()
    suffix = "zip" if pack is zip_bytes else "tar.gz"
    adapter = _validated(client, {f"a.{suffix}": pack(files)}, adapter_store)
    _assert_failed(adapter, bad_name)
    assert "outside" in adapter.failure_reason or "absolute" in adapter.failure_reason


@pytest.mark.parametrize("pack", [zip_bytes, tar_gz_bytes], ids=["zip", "tar.gz"])
def test_symlink_member(session_client, adapter_store: Path, pack):
    files = adapter_files()
    weights = files.pop("adapter_model.safetensors")
    del weights
    client, _ = session_client()
    suffix = "zip" if pack is zip_bytes else "tar.gz"
    archive = pack(files, symlinks={"adapter_model.safetensors": "/etc/passwd"})
    _assert_failed(_validated(client, {f"a.{suffix}": archive}, adapter_store), "link")


def _tensor_case(mutate) -> dict[str, bytes]:
    tensors = lora_tensors()
    mutate(tensors)
    return adapter_files(lora_config(), tensors)


def _nan(t: dict) -> None:
    t["base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"][5, 1] = float("nan")


def _inf(t: dict) -> None:
    t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"][0, 0] = float("inf")


def _wrong_shape(t: dict) -> None:
    t["base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 512)


def _missing_b(t: dict) -> None:
    del t["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]


def _extra_layer(t: dict) -> None:
    t["base_model.model.model.layers.30.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 576)
    t["base_model.model.model.layers.30.self_attn.q_proj.lora_B.weight"] = torch.zeros(576, 4)


def _int_dtype(t: dict) -> None:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    t[key] = t[key].to(torch.int32)


def _untargeted(t: dict) -> None:
    t["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"] = torch.zeros(4, 1536)
    t["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"] = torch.zeros(576, 4)


def _lm_head(t: dict) -> None:
    t["base_model.model.lm_head.lora_A.weight"] = torch.zeros(4, 576)


def _dora(t: dict) -> None:
    t["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = torch.ones(576)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_nan, ["nan or infinite", "layers.3.self_attn.v_proj"]),
        (_inf, ["nan or infinite"]),
        (_wrong_shape, ["shape [4, 512]", "[4, 576]"]),
        (_missing_b, ["not both lora_a and lora_b"]),
        (_extra_layer, ["30 layers"]),
        (_int_dtype, ["dtype I32"]),
        (_untargeted, ["down_proj", "not in target_modules"]),
        (_lm_head, ["lm_head"]),
        (_dora, ["dora"]),
    ],
    ids=["nan", "inf", "wrong-shape", "missing-B", "extra-layer", "int-dtype", "untargeted", "lm_head", "dora-vec"],
)
def test_bad_tensors(session_client, adapter_store: Path, mutate, words):
    client, _ = session_client()
    _assert_failed(_validated(client, _tensor_case(mutate), adapter_store), *words)


def test_adapter_for_another_base_model(session_client, adapter_store: Path):
    # A LoRA trained on a 2048-wide model (e.g. a 1B Llama): every shape is off by the hidden size.
    dims = {"q_proj": (2048, 2048), "v_proj": (2048, 512)}
    files = adapter_files(lora_config(r=8), lora_tensors(8, ["q_proj", "v_proj"], layers=16, dims=dims))
    client, _ = session_client()
    _assert_failed(_validated(client, files, adapter_store), "another base model")


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (lora_config(r=65), ["r=65", "1–64"]),
        (lora_config(r=0), ["r=0"]),
        (lora_config(peft_type="IA3"), ["only lora", "ia3"]),
        (lora_config(use_dora=True), ["dora"]),
        (lora_config(modules_to_save=["lm_head"]), ["modules_to_save"]),
        (lora_config(targets=["q_proj", "embed_tokens"]), ["embedding"]),
        (lora_config(targets=["lm_head"]), ["lm_head"]),
        (lora_config(targets=["fc1"]), ["fc1", "not supported"]),
        (lora_config(bias="all"), ["bias"]),
        (lora_config(rank_pattern={"q_proj": 8}), ["rank_pattern"]),
        (lora_config(lora_alpha=-1), ["lora_alpha"]),
    ],
    ids=["rank-65", "rank-0", "ia3", "dora", "modules_to_save", "embedding", "lm_head", "unknown-target", "bias",
         "rank_pattern", "negative-alpha"],
)
def test_bad_config(session_client, adapter_store: Path, config, words):
    tensors = lora_tensors(4, ["q_proj", "v_proj"])
    files = adapter_files(config, tensors)
    client, _ = session_client()
    _assert_failed(_validated(client, files, adapter_store), *words)


def test_config_not_json_and_weights_not_safetensors(session_client, adapter_store: Path):
    client, _ = session_client()
    files = adapter_files() | {"adapter_config.json": b"{not json"}
    _assert_failed(_validated(client, files, adapter_store), "not valid json")
    files = adapter_files() | {"adapter_model.safetensors": b"\xff" * 64}
    response = _post(client, files, name="bot2")
    adapter = adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    _assert_failed(adapter, "not a safetensors file")


def test_archive_without_adapter_and_corrupt_archive(session_client, adapter_store: Path):
    client, _ = session_client()
    _assert_failed(_validated(client, {"a.zip": zip_bytes({"notes.txt": b"hi"})}, adapter_store), "no adapter_config")
    response = _post(client, {"b.zip": b"PK\x03\x04 not really a zip"}, name="bot2")
    adapter = adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    _assert_failed(adapter, "can't be read")


# -- refused at upload time: 400 in DRF's shape, nothing stored ------------------------------------------------------


def test_empty_upload(session_client, adapter_store: Path):
    client, _ = session_client()
    response = client.post("/api/v1/adapters", {"name": "bot", "base_model": "smollm2-135m-instruct"},
                           format="multipart")
    assert response.status_code == 400 and "Upload adapter_config.json" in response.json()["files"][0]
    response = _post(client, adapter_files() | {"adapter_model.safetensors": b""})
    assert response.status_code == 400 and "empty" in response.json()["files"][0]
    assert not Adapter.dangerously_unscoped.exists()
    assert not adapter_store.exists() or not any(adapter_store.iterdir())


def test_duplicate_name(session_client, adapter_store: Path):
    client, _ = session_client()
    assert _post(client, adapter_files()).status_code == 202
    response = _post(client, adapter_files())
    assert response.status_code == 400
    assert "already have an adapter named 'bot'" in response.json()["name"][0]
    assert Adapter.dangerously_unscoped.count() == 1
    assert len(list(adapter_store.iterdir())) == 1


@pytest.mark.parametrize(
    ("name", "base", "field"),
    [("bot", "gpt-9", "base_model"), ("Bad Name!", "smollm2-135m-instruct", "name"), ("", "smollm2-135m-instruct",
                                                                                        "name")],
)
def test_bad_name_or_base(session_client, name, base, field):
    client, _ = session_client()
    response = _post(client, adapter_files(), name=name, base=base)
    assert response.status_code == 400 and field in response.json(), response.json()


def test_mixed_or_unknown_files(session_client):
    client, _ = session_client()
    files = adapter_files()
    assert _post(client, files | {"a.zip": zip_bytes(files)}).status_code == 400
    assert _post(client, files | {"run.sh": b"rm -rf /"}).status_code == 400
    response = _post(client, {"adapter_config.json": files["adapter_config.json"]})
    assert response.status_code == 400 and "adapter_model.safetensors" in response.json()["files"][0]


def test_upload_over_the_size_bound(session_client, settings):
    settings.HEARTH_ADAPTER_MAX_UPLOAD_BYTES = 1024
    client, _ = session_client()
    response = _post(client, adapter_files())
    # Refused while streaming (adapters.uploads), before the rest reaches disk: 413, still in DRF's field shape.
    assert response.status_code == 413 and "larger than 1024 bytes" in response.json()["files"][0]


def test_zip_member_sizes_are_counted_not_trusted(tmp_path: Path):
    # A member whose header understates its size still stops at the bound (we count decompressed bytes).
    from adapters.archive import AdapterFileError, read_archive

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("adapter_config.json", b"{}")
        z.writestr("adapter_model.safetensors", bytes(2 << 20))
    buf.seek(0)
    with pytest.raises(AdapterFileError, match="more than 1 MiB"):
        read_archive("x.zip", buf, max_bytes=1 << 20, max_members=8)
