from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from adapters import conf, store
from adapters.archive import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterFileError,
    AdapterFiles,
    is_archive,
    is_pickle,
    read_archive,
    read_loose_files,
    refusal_for,
    sniff,
)
from adapters.models import Adapter, BaseModelShape
from adapters.validation import validate
from catalog.models import BaseModel
from contracts import ADAPTERS_DELETED_CHANNEL
from hearth_platform.errors import ApplicationError, ConflictError
from hearth_platform.redis_client import get_redis

log = logging.getLogger("hearth.adapters")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_files(files: Sequence[UploadedFile]) -> None:
    if not files:
        raise ApplicationError(
            f"Upload {CONFIG_NAME} and {WEIGHTS_NAME}, or one .zip / .tar.gz of the adapter folder.", field="files",
            code="required",
        )
    total = 0
    for f in files:
        name = f.name or ""
        if not f.size:
            raise ApplicationError(f"The uploaded file '{name}' is empty.", field="files", code="empty")
        if is_pickle(name):  # say what it really is: a pickle, misnamed safetensors, or neither
            raise ApplicationError(refusal_for(name, sniff(f)), field="files", code="refused_file")
        total += f.size
    if total > conf.max_upload_bytes():
        raise ApplicationError(f"The upload is larger than {conf.max_upload_bytes() >> 20} MiB.", field="files")
    names = [f.name or "" for f in files]
    if len(files) == 1 and is_archive(names[0]):
        return
    if any(is_archive(n) for n in names):
        raise ApplicationError("Upload one archive on its own, or the loose files without an archive.", field="files")
    # peft's save_pretrained also writes a README.md; harmless text files ride along and are dropped.
    extra = [n for n in names if n not in (CONFIG_NAME, WEIGHTS_NAME) and not n.lower().endswith((".md", ".txt"))]
    if extra or not {CONFIG_NAME, WEIGHTS_NAME} <= set(names) or len(set(names)) != len(names):
        raise ApplicationError(
            f"Expected {CONFIG_NAME} and {WEIGHTS_NAME} once each (or one archive); got {', '.join(names)}.",
            field="files",
        )


def _base_model(slug: str) -> BaseModel:
    base = BaseModel.objects.filter(slug=slug, is_active=True).first()
    if base is None:
        raise ApplicationError(f"There is no base model '{slug}' in the catalog.", field="base_model", code="not_found")
    if not BaseModelShape.objects.filter(base_model=base).exists():
        raise ApplicationError(f"Base model '{slug}' does not accept adapters yet.", field="base_model")
    return base


def adapter_upload(*, account: Account, name: str, base_model: str, files: Sequence[UploadedFile]) -> Adapter:
    """Store an upload as a `pending` adapter and queue its validation. Cheap checks fail here as 400s."""
    name = (name or "").strip()
    if not _NAME_RE.match(name):
        raise ApplicationError(
            "Adapter names are 1–64 characters: lowercase letters, digits, '-' and '_', starting with a letter or "
            "digit.", field="name",
        )
    base = _base_model((base_model or "").strip())
    _check_files(files)
    if Adapter.objects.for_account(account).filter(name=name).exists():
        raise ConflictError(f"You already have an adapter named '{name}'; delete it or pick another name.",
                            field="name", code="duplicate")
    adapter = Adapter(account=account, name=name, base_model=base)
    try:
        with transaction.atomic():
            adapter.save(force_insert=True)
    except IntegrityError:  # a concurrent upload with the same name won the race
        raise ConflictError(f"You already have an adapter named '{name}'.", field="name", code="duplicate") from None
    try:
        for f in files:
            store.save_upload(adapter.uid, f.name or "upload", f)
    except Exception:
        store.delete_adapter(adapter.uid)
        adapter.delete()
        raise
    adapter_id = adapter.pk
    transaction.on_commit(lambda: _enqueue(adapter_id))
    log.info("adapter %s uploaded for account %s", adapter.uid, account.pk)
    return adapter


def _enqueue(adapter_id: int) -> None:
    from adapters.tasks import adapter_validate_task

    try:
        adapter_validate_task.delay(adapter_id)
    except Exception as exc:  # the broker is down: the row stays pending and adapters.requeue_pending picks it up
        log.warning("could not queue validation of adapter %s: %s", adapter_id, exc)


def adapter_requeue_pending(*, older_than_s: float = 60.0, validating_older_than_s: float | None = None) -> int:
    """Queue validation again for every adapter still `pending` after `older_than_s`, and for every adapter stuck in
    `validating` for longer than `validating_older_than_s` (its task died: it goes back to `pending`, or to `failed`
    after `max_validation_attempts` starts); -> how many were queued."""
    now = timezone.now()
    stuck_cutoff = now - timedelta(seconds=conf.validating_stale_s() if validating_older_than_s is None
                                   else validating_older_than_s)
    # Across accounts by design: a maintenance sweep that only passes ids on to the (idempotent) validation task.
    stuck = Adapter.dangerously_unscoped.filter(status=Adapter.Status.VALIDATING, updated_at__lt=stuck_cutoff)
    ids = [pk for pk in stuck.values_list("pk", flat=True) if _reset_stuck(pk, stuck_cutoff)]
    stale = Adapter.dangerously_unscoped.filter(status=Adapter.Status.PENDING,
                                                updated_at__lt=now - timedelta(seconds=older_than_s))
    ids += [pk for pk in stale.values_list("pk", flat=True) if pk not in ids]
    for adapter_id in ids:
        _enqueue(adapter_id)
    return len(ids)


def _reset_stuck(adapter_id: int, cutoff: datetime) -> bool:
    """validating -> pending (True: queue it again) or, past the attempt bound, -> failed."""
    with transaction.atomic():
        adapter = (Adapter.dangerously_unscoped.select_for_update()
                   .filter(pk=adapter_id, status=Adapter.Status.VALIDATING, updated_at__lt=cutoff).first())
        if adapter is None:  # finished, deleted or restarted since the sweep listed it
            return False
        if adapter.validation_attempts >= conf.max_validation_attempts():
            log.warning("adapter %s: validation died %d times, giving up", adapter.uid, adapter.validation_attempts)
            store.delete_adapter(adapter.uid)
            adapter.status = Adapter.Status.FAILED
            adapter.failure_reason = "Validation failed because of an internal error; please upload it again."
            adapter.save(update_fields=["status", "failure_reason", "updated_at"])
            return False
        log.warning("adapter %s: validation started %s ago and never finished, retrying", adapter.uid,
                    adapter.updated_at)
        adapter.status = Adapter.Status.PENDING
        adapter.save(update_fields=["status", "updated_at"])
    return True


def _read_upload(uid: str) -> AdapterFiles:
    names = store.list_upload(uid)
    if not names:
        raise AdapterFileError("The uploaded files are gone; upload the adapter again.")
    if len(names) == 1 and is_archive(names[0]):
        with store.open_upload(uid, names[0]) as f:
            return read_archive(
                names[0], f, max_bytes=conf.max_unpacked_bytes(), max_members=conf.max_archive_members()
            )
    opened = {n: store.open_upload(uid, n) for n in names}
    try:
        return read_loose_files(opened, max_bytes=conf.max_upload_bytes())
    finally:
        for f in opened.values():
            f.close()


def adapter_validate(*, adapter_id: int) -> Adapter | None:
    """pending -> validating -> ready | failed (with a reason meant for a person); None if the adapter is gone.
    Idempotent: a retried task that finds the adapter past `pending` does nothing. A delete that lands meanwhile
    wins: nothing is written back and the files validation stored are removed."""
    with transaction.atomic():
        # The task only has the id; the row names its own account.
        adapter = Adapter.dangerously_unscoped.select_for_update().filter(pk=adapter_id).first()
        if adapter is None or adapter.status != Adapter.Status.PENDING:
            return adapter  # deleted meanwhile, or already handled
        adapter.status = Adapter.Status.VALIDATING
        adapter.validation_attempts += 1
        adapter.save(update_fields=["status", "validation_attempts", "updated_at"])
    # From here an exception that escapes (or a killed worker) leaves it `validating`: adapters.requeue_pending
    # retries it once it is older than conf.validating_stale_s().
    shape = BaseModelShape.objects.get(base_model_id=adapter.base_model_id)
    try:
        files = _read_upload(adapter.uid)
        summary = validate(files, dims=shape.module_dims(), num_layers=shape.num_layers, max_rank=conf.max_rank())
        store.save_validated(adapter.uid, files)
    except AdapterFileError as exc:
        return _finish_failed(adapter, str(exc))
    except SoftTimeLimitExceeded:
        return _finish_failed(adapter, f"Validation took longer than {conf.validation_time_limit_s()} s; check that "
                                       "the upload is a LoRA adapter of a supported size.")
    except Exception:
        log.exception("validating adapter %s failed unexpectedly", adapter.uid)
        return _finish_failed(adapter, "Validation failed because of an internal error; please upload it again.")
    finally:
        store.delete_upload(adapter.uid)
    done = _finish(adapter, status=Adapter.Status.READY, rank=summary.rank, lora_alpha=summary.lora_alpha,
                   use_rslora=summary.use_rslora, target_modules=summary.target_modules,
                   size_bytes=len(files.weights) + len(files.config), failure_reason="")
    if done is not None and done.status == Adapter.Status.READY:
        log.info("adapter %s ready (r=%d, %d tensors)", adapter.uid, summary.rank, summary.num_tensors)
    return done


def _finish_failed(adapter: Adapter, reason: str) -> Adapter | None:
    done = _finish(adapter, status=Adapter.Status.FAILED, failure_reason=reason)
    if done is not None and done.status == Adapter.Status.FAILED:
        store.delete_adapter(adapter.uid)  # a failed adapter leaves no files behind
        log.info("adapter %s failed validation: %s", adapter.uid, reason)
    return done


def _finish(adapter: Adapter, **fields: object) -> Adapter | None:
    """Write validation's outcome onto the row, only while it is still this run's `validating` row. A row deleted
    meanwhile stays deleted (save() would insert it again) and loses the files this run stored."""
    with transaction.atomic():
        current = Adapter.dangerously_unscoped.select_for_update().filter(pk=adapter.pk).first()
        if current is None:
            store.delete_adapter(adapter.uid)
            log.info("adapter %s was deleted during validation", adapter.uid)
            return None
        if current.status != Adapter.Status.VALIDATING:  # the sweep handed it to a newer run, which owns it now
            return current
        for name, value in fields.items():
            setattr(current, name, value)
        current.save(update_fields=[*fields, "updated_at"])
    return current


def _publish_deleted(uid: str) -> None:
    try:
        get_redis().publish(ADAPTERS_DELETED_CHANNEL, uid)  # workers drop it from caches and prefix cache
    except redis.RedisError as exc:
        # uids are never reused, so a worker that misses this only keeps some cold cache entries until LRU drops them
        log.warning("could not publish adapter deletion to Redis: %s", exc)


@transaction.atomic
def adapter_delete(*, adapter: Adapter) -> None:
    uid = adapter.uid
    adapter.delete()
    transaction.on_commit(lambda: (store.delete_adapter(uid), _publish_deleted(uid)))
    log.info("adapter %s deleted", uid)
