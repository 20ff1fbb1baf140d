"""Upload, list, get and delete through the API, with a session and with a Bearer key; tenant scope (404s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_builders import adapter_files, lora_config, lora_tensors, tar_gz_bytes, zip_bytes
from django.core.files.uploadedfile import SimpleUploadedFile

from adapters.models import Adapter
from adapters.services import adapter_validate


def _post(client, files: dict[str, bytes], name: str = "support-bot", base: str = "smollm2-135m-instruct"):
    body = {"name": name, "base_model": base, "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    return client.post("/api/v1/adapters", body, format="multipart")


def _upload_ready(client, files: dict[str, bytes] | None = None, name: str = "support-bot") -> dict:
    response = _post(client, files or adapter_files(), name=name)
    assert response.status_code == 202, response.content
    adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    return client.get(f"/api/v1/adapters/{response.json()['uid']}").json()


def test_session_upload_validates_to_ready_and_lands_in_the_store(session_client, adapter_store: Path):
    client, account = session_client()
    response = _post(client, adapter_files(lora_config(r=8, alpha=16, targets=["q_proj", "down_proj"],
                                                       use_rslora=True)))
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "pending"
    assert created["model"] == f"accounts/{account.slug}/models/support-bot"
    uid = created["uid"]
    assert (adapter_store / uid / "upload").is_dir()

    adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=uid).pk)
    detail = client.get(f"/api/v1/adapters/{uid}").json()
    assert detail["status"] == "ready", detail["failure_reason"]
    assert (detail["rank"], detail["lora_alpha"], detail["use_rslora"]) == (8, 16.0, True)
    assert detail["target_modules"] == ["q_proj", "down_proj"]
    assert detail["base_model"] == "smollm2-135m-instruct"
    assert sorted(p.name for p in (adapter_store / uid).iterdir()) == ["adapter_config.json",
                                                                      "adapter_model.safetensors"]
    assert json.loads((adapter_store / uid / "adapter_config.json").read_text())["r"] == 8


def test_bearer_key_upload_list_and_delete(key_client, adapter_store: Path, django_capture_on_commit_callbacks):
    client, _account = key_client()
    ready = _upload_ready(client)
    assert ready["status"] == "ready"
    listing = client.get("/api/v1/adapters").json()
    assert [a["uid"] for a in listing] == [ready["uid"]]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/adapters/{ready['uid']}").status_code == 204
    assert client.get(f"/api/v1/adapters/{ready['uid']}").status_code == 404
    assert not (adapter_store / ready["uid"]).exists()


def test_unauthenticated_gets_401(db):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/adapters").status_code == 401


def test_other_accounts_get_404(session_client, key_client, adapter_store: Path):
    owner, _ = session_client("owner@example.com")
    ready = _upload_ready(owner)
    for other in (session_client("eve@example.com")[0], key_client("mallory@example.com")[0]):
        assert other.get(f"/api/v1/adapters/{ready['uid']}").status_code == 404
        assert other.delete(f"/api/v1/adapters/{ready['uid']}").status_code == 404
        assert other.get("/api/v1/adapters").json() == []
    assert (adapter_store / ready["uid"] / "adapter_model.safetensors").exists()
    assert owner.get(f"/api/v1/adapters/{ready['uid']}").json()["status"] == "ready"


def test_same_name_in_two_accounts_is_fine(session_client):
    a, _ = session_client("a@example.com")
    b, _ = session_client("b@example.com")
    assert _upload_ready(a)["status"] == "ready"
    assert _upload_ready(b)["status"] == "ready"


@pytest.mark.parametrize("pack", [zip_bytes, tar_gz_bytes], ids=["zip", "tar.gz"])
def test_archives_with_a_folder_inside(session_client, pack):
    client, _ = session_client()
    files = adapter_files(lora_config(r=2, targets=["gate_proj", "up_proj", "o_proj"]),
                          lora_tensors(2, ["gate_proj", "up_proj", "o_proj"], dtype=torch.bfloat16))
    archive = pack({f"my-lora/{n}": d for n, d in files.items()} | {"my-lora/README.md": b"# hi"})
    suffix = "zip" if pack is zip_bytes else "tar.gz"
    ready = _upload_ready(client, {f"my-lora.{suffix}": archive})
    assert ready["status"] == "ready", ready["failure_reason"]
    assert ready["target_modules"] == ["o_proj", "gate_proj", "up_proj"]


def test_a_real_peft_adapter_is_accepted(session_client, tmp_path: Path):
    import peft
    import transformers

    # SmolLM2's dims with 2 layers: an adapter for it is an adapter for layers 0-1 of SmolLM2.
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                                   num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    model = transformers.LlamaForCausalLM(cfg)
    lora = peft.LoraConfig(r=6, lora_alpha=12, target_modules=["k_proj", "up_proj"], init_lora_weights=False)
    peft.get_peft_model(model, lora).save_pretrained(tmp_path / "peft")
    files = {p.name: p.read_bytes() for p in (tmp_path / "peft").iterdir()}
    client, _ = session_client()
    ready = _upload_ready(client, files)
    assert ready["status"] == "ready", ready["failure_reason"]
    assert (ready["rank"], ready["lora_alpha"]) == (6, 12.0)


def test_an_upload_whose_validation_never_reached_the_broker_is_requeued(
    session_client, monkeypatch, django_capture_on_commit_callbacks
):
    from adapters import tasks
    from adapters.services import adapter_requeue_pending

    client, _account = session_client()

    def broker_down(*args, **kwargs):  # the boundary that can't fail on demand here: Celery's publish to Redis
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.adapter_validate_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        uid = _post(client, adapter_files()).json()["uid"]
    assert client.get(f"/api/v1/adapters/{uid}").json()["status"] == "pending"

    queued: list[int] = []
    monkeypatch.setattr(tasks.adapter_validate_task, "delay", lambda adapter_id: queued.append(adapter_id))
    assert adapter_requeue_pending(older_than_s=3600) == 0  # too fresh: its own task may still be on the way
    assert adapter_requeue_pending(older_than_s=0) == 1
    for adapter_id in queued:
        tasks.adapter_validate_task(adapter_id)  # what the worker would run
    assert client.get(f"/api/v1/adapters/{uid}").json()["status"] == "ready"
    assert adapter_requeue_pending(older_than_s=0) == 0  # nothing left pending
