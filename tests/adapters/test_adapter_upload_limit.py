"""Uploads stop at the adapter size limit while they stream in: nothing past the limit reaches Django's temporary
files (what is written to disk while the body is read), no adapter row or store folder is made, and the answer is
413 in DRF's shape. Django's own temporary-file handler is the real one; only its byte count is observed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from adapter_builders import adapter_files
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from adapters.models import Adapter
from adapters.uploads import MULTIPART_SLACK_BYTES

LIMIT = 1 << 20


@pytest.fixture
def written_to_disk(settings, tmp_path: Path, monkeypatch) -> list[int]:
    """Bytes Django's TemporaryFileUploadHandler wrote, per chunk (every upload in these tests spools to disk)."""
    settings.HEARTH_ADAPTER_MAX_UPLOAD_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # always the temporary-file handler, as for a real adapter's size
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    os.makedirs(settings.FILE_UPLOAD_TEMP_DIR)
    chunks: list[int] = []
    real = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data: bytes, start: int) -> None:
        chunks.append(len(raw_data))
        return real(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    return chunks


def _post(client, files: dict[str, bytes]):
    body = {"name": "big-bot", "base_model": "smollm2-135m-instruct",
            "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    return client.post("/api/v1/adapters", body, format="multipart")


def _assert_refused(response, adapter_store: Path, tmp_path: Path) -> None:
    assert response.status_code == 413, response.content
    assert response.json() == {"files": ["The upload is larger than 1 MiB."]}
    assert not Adapter.dangerously_unscoped.exists()
    assert not adapter_store.exists() or not any(adapter_store.iterdir())
    assert not any((tmp_path / "upload-tmp").iterdir())  # the partial temporary file is gone too


@pytest.mark.parametrize("login", ["session", "key"])
def test_an_upload_over_the_limit_stops_at_the_limit(login, session_client, key_client, written_to_disk,
                                                     adapter_store: Path, tmp_path: Path):
    # Content-Length within limit + slack, so the body is read: the cap must stop it mid-stream.
    client, _account = session_client() if login == "session" else key_client()
    files = adapter_files()
    files["adapter_model.safetensors"] = os.urandom(LIMIT + MULTIPART_SLACK_BYTES // 2)
    response = _post(client, files)
    _assert_refused(response, adapter_store, tmp_path)
    assert 0 < sum(written_to_disk) <= LIMIT


def test_the_dashboards_csrf_checked_session_path_is_capped_too(signup, written_to_disk, adapter_store: Path,
                                                               tmp_path: Path):
    # With CSRF enforced, DRF's session authentication reads the form (for csrfmiddlewaretoken) before the view runs:
    # the cap must already be in place then.
    from rest_framework.test import APIClient

    user, _account = signup(email="csrf@example.com")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    token = client.get("/api/v1/auth/csrf").json()["csrf_token"]
    files = adapter_files()
    files["adapter_model.safetensors"] = os.urandom(LIMIT + MULTIPART_SLACK_BYTES // 2)
    body = {"name": "big-bot", "base_model": "smollm2-135m-instruct",
            "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    response = client.post("/api/v1/adapters", body, format="multipart", HTTP_X_CSRFTOKEN=token)
    _assert_refused(response, adapter_store, tmp_path)
    assert 0 < sum(written_to_disk) <= LIMIT


def test_a_content_length_far_over_the_limit_is_refused_before_reading(session_client, written_to_disk,
                                                                      adapter_store: Path, tmp_path: Path):
    client, _account = session_client()
    files = adapter_files()
    files["adapter_model.safetensors"] = os.urandom(3 * LIMIT)
    _assert_refused(_post(client, files), adapter_store, tmp_path)
    assert written_to_disk == []


def test_an_upload_under_the_limit_is_untouched(session_client, written_to_disk):
    client, _account = session_client()
    response = _post(client, adapter_files())
    assert response.status_code == 202, response.content
    assert sum(written_to_disk) == sum(len(d) for d in adapter_files().values())
