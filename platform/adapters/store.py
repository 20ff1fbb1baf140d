"""The adapter store through Django's storage API: `<store>/<uid>/` holds the validated adapter_config.json and
adapter_model.safetensors that workers load; `<store>/<uid>/upload/` holds the raw upload until it is validated.

Development uses a folder (HEARTH_ADAPTER_STORE, default .hearth/adapters); production names an S3-compatible
backend as `STORAGES["adapters"]` (django-storages) and points workers' --adapter-store at a synced copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages

from adapters.archive import CONFIG_NAME, WEIGHTS_NAME, AdapterFiles
from adapters.conf import store_root

UPLOAD_DIR = "upload"


def adapter_storage() -> Storage:
    if "adapters" in getattr(settings, "STORAGES", {}):
        return storages["adapters"]
    return FileSystemStorage(location=store_root())


def _replace(storage: Storage, name: str, content: File) -> None:
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, content)
    if saved != name:  # a backend that renames on clash would break the fixed layout workers rely on
        raise RuntimeError(f"adapter storage saved {name!r} as {saved!r}")


def save_upload(uid: str, filename: str, content: File) -> str:
    name = f"{uid}/{UPLOAD_DIR}/{Path(filename).name}"
    _replace(adapter_storage(), name, content)
    return name


def list_upload(uid: str) -> list[str]:
    storage = adapter_storage()
    folder = f"{uid}/{UPLOAD_DIR}"
    if not storage.exists(folder) and isinstance(storage, FileSystemStorage):
        return []
    _dirs, files = storage.listdir(folder)
    return sorted(files)


def open_upload(uid: str, filename: str) -> File:
    return adapter_storage().open(f"{uid}/{UPLOAD_DIR}/{filename}", "rb")


def save_validated(uid: str, files: AdapterFiles) -> None:
    storage = adapter_storage()
    _replace(storage, f"{uid}/{CONFIG_NAME}", ContentFile(files.config))
    _replace(storage, f"{uid}/{WEIGHTS_NAME}", ContentFile(files.weights))


def delete_upload(uid: str) -> None:
    _delete_tree(f"{uid}/{UPLOAD_DIR}")


def delete_adapter(uid: str) -> None:
    _delete_tree(uid)


def _delete_tree(folder: str) -> None:
    storage = adapter_storage()
    if isinstance(storage, FileSystemStorage):
        # A folder backend can't delete directories through the storage API; remove the tree itself.
        path = Path(storage.path(folder))
        if path.exists():
            shutil.rmtree(path)
        return
    dirs, files = storage.listdir(folder)
    for name in files:
        storage.delete(f"{folder}/{name}")
    for sub in dirs:
        _delete_tree(f"{folder}/{sub}")
