"""Adapter limits and the store root. Each can be set in Django settings or, failing that, in the environment."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

# Every projection name of the families the engine runs; a base model accepts those of its own family
ALLOWED_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "gate_proj", "up_proj", "gate_up_proj",
                          "down_proj")


def _int(name: str, default: int) -> int:
    return int(getattr(settings, name, os.environ.get(name, default)))


def store_root() -> Path:
    default = Path(getattr(settings, "HEARTH_HOME", Path(".hearth"))) / "adapters"
    return Path(getattr(settings, "HEARTH_ADAPTER_STORE", os.environ.get("HEARTH_ADAPTER_STORE", default)))


def max_rank() -> int:
    return _int("HEARTH_ADAPTER_MAX_RANK", 64)


def max_upload_bytes() -> int:
    # What a client may send (archive or files); 256 MiB holds a rank-64 adapter on all projections of an 8B model.
    return _int("HEARTH_ADAPTER_MAX_UPLOAD_BYTES", 256 << 20)


def max_unpacked_bytes() -> int:
    # What an archive may unpack to, all members together (zip-bomb bound); read, never trusted from headers.
    return _int("HEARTH_ADAPTER_MAX_UNPACKED_BYTES", 512 << 20)


def max_archive_members() -> int:
    return _int("HEARTH_ADAPTER_MAX_ARCHIVE_MEMBERS", 64)


def validation_time_limit_s() -> int:
    # Celery's soft limit on one validation task (the hard limit, a kill, is a little later); a 256 MiB adapter
    # validates in a few seconds on one CPU core.
    return _int("HEARTH_ADAPTER_VALIDATION_TIME_LIMIT_S", 300)


def validating_stale_s() -> int:
    # An adapter `validating` for longer than this has lost its task (worker killed past the hard limit, or an
    # exception before the task's own error handling): the sweep sends it back to `pending`.
    return _int("HEARTH_ADAPTER_VALIDATING_STALE_S", 2 * validation_time_limit_s())


def max_validation_attempts() -> int:
    return _int("HEARTH_ADAPTER_MAX_VALIDATION_ATTEMPTS", 3)
