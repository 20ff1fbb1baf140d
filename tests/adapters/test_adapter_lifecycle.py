"""The adapter lifecycle under deletes and crashes: a delete that lands before or during validation wins (the task
does not crash, the row is not inserted again, no files are left), and an adapter whose validation died before its
own error handling is retried by the sweep instead of staying `validating` forever."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from adapter_builders import adapter_files
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.utils import timezone

from adapters import services, tasks
from adapters.models import Adapter


def _upload(client) -> Adapter:
    files = [SimpleUploadedFile(n, d) for n, d in adapter_files().items()]
    response = client.post("/api/v1/adapters", {"name": "support-bot", "base_model": "smollm2-135m-instruct",
                                                "files": files}, format="multipart")
    assert response.status_code == 202, response.content
    return Adapter.dangerously_unscoped.get(uid=response.json()["uid"])


def _age(adapter: Adapter, seconds: float) -> None:
    Adapter.dangerously_unscoped.filter(pk=adapter.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_the_task_survives_an_adapter_deleted_before_it_ran(session_client, adapter_store: Path,
                                                            django_capture_on_commit_callbacks):
    client, _account = session_client()
    adapter = _upload(client)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/adapters/{adapter.uid}").status_code == 204
    assert tasks.adapter_validate_task(adapter.pk) == "deleted"  # what the Celery worker runs; it used to raise
    assert not Adapter.dangerously_unscoped.filter(pk=adapter.pk).exists()
    assert not (adapter_store / adapter.uid).exists()


def test_an_adapter_deleted_during_validation_stays_deleted(session_client, adapter_store: Path, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    client, _account = session_client()
    adapter = _upload(client)
    real_validate = services.validate

    def validate_while_the_owner_deletes(*args, **kwargs):
        summary = real_validate(*args, **kwargs)
        with django_capture_on_commit_callbacks(execute=True):  # the owner's DELETE, between check and write-back
            assert client.delete(f"/api/v1/adapters/{adapter.uid}").status_code == 204
        return summary

    monkeypatch.setattr(services, "validate", validate_while_the_owner_deletes)
    assert tasks.adapter_validate_task(adapter.pk) == "deleted"
    assert not Adapter.dangerously_unscoped.filter(pk=adapter.pk).exists()  # save() used to insert it as `ready`
    assert not Adapter.dangerously_unscoped.filter(uid=adapter.uid).exists()
    assert not (adapter_store / adapter.uid).exists()  # the validated files it stored after the delete are gone
    assert client.get(f"/api/v1/adapters/{adapter.uid}").status_code == 404


def test_a_validation_that_crashed_before_its_error_handling_is_retried(session_client, monkeypatch):
    client, _account = session_client()
    adapter = _upload(client)

    class DatabaseBlip:  # the shape lookup, before validation's own error handling, hits a dropped connection
        class objects:  # noqa: N801 - stands in for the model's manager
            @staticmethod
            def get(**kwargs):
                raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(services, "BaseModelShape", DatabaseBlip)
        with pytest.raises(OperationalError):  # Celery logs it; the row is left behind
            tasks.adapter_validate_task(adapter.pk)
    assert Adapter.dangerously_unscoped.get(pk=adapter.pk).status == "validating"

    queued: list[int] = []
    monkeypatch.setattr(tasks.adapter_validate_task, "delay", lambda adapter_id: queued.append(adapter_id))
    assert services.adapter_requeue_pending(older_than_s=0, validating_older_than_s=600) == 0  # may still be running
    _age(adapter, 601)
    assert services.adapter_requeue_pending(older_than_s=0, validating_older_than_s=600) == 1
    assert queued == [adapter.pk]
    assert tasks.adapter_validate_task(adapter.pk) == "ready"
    retried = Adapter.dangerously_unscoped.get(pk=adapter.pk)
    assert (retried.status, retried.validation_attempts) == ("ready", 2)
    assert client.get(f"/api/v1/adapters/{adapter.uid}").json()["status"] == "ready"


def test_a_validation_that_keeps_dying_fails_after_the_attempt_bound(session_client, settings, monkeypatch,
                                                                     adapter_store: Path):
    settings.HEARTH_ADAPTER_MAX_VALIDATION_ATTEMPTS = 2
    client, _account = session_client()
    adapter = _upload(client)
    queued: list[int] = []
    monkeypatch.setattr(tasks.adapter_validate_task, "delay", lambda adapter_id: queued.append(adapter_id))
    for attempt in (1, 2):  # each run dies after taking the row (a worker killed past the hard time limit)
        Adapter.dangerously_unscoped.filter(pk=adapter.pk).update(status="validating", validation_attempts=attempt)
        _age(adapter, 601)
        services.adapter_requeue_pending(older_than_s=0, validating_older_than_s=600)
    assert queued == [adapter.pk]  # retried once, then given up on
    failed = Adapter.dangerously_unscoped.get(pk=adapter.pk)
    assert failed.status == "failed" and "internal error" in failed.failure_reason
    assert not (adapter_store / adapter.uid).exists()
